//! Multi-factor authentication: time-based one-time codes (RFC 6238, SHA-1, 6 digits, 30 s)
//! from the person's authenticator app.
//!
//! `cordon mfa enroll` makes a secret, shows it as an `otpauth://` URI and a QR code, and
//! keeps it only once a first code checks. It lives in `~/.config/cordon/mfa.json` (mode
//! 0600, in cordon's configuration directory, which every sandbox hides), with the last step
//! a code was accepted for, so that no code is ever accepted twice, and when the person last
//! proved themselves (an `mfa` obligation with `max_age_s` accepts that instead of a new
//! code while it is young enough).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use totp_rs::{Builder, Secret, Totp};

/// What is kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Enrolled {
    /// The shared secret, base32.
    secret: String,
    /// The account name shown by the authenticator.
    account: String,
    /// When it was enrolled, RFC 3339.
    enrolled: String,
    /// The last 30-second step a code was accepted for.
    last_step: u64,
    /// When a code was last accepted, seconds since the epoch.
    verified_at: u64,
}

/// A new secret, not yet confirmed by a code.
#[derive(Debug)]
pub struct Enrollment {
    totp: Totp,
    account: String,
}

impl Enrollment {
    /// A new random 160-bit secret for `account`.
    ///
    /// # Errors
    ///
    /// No randomness, or an account name the URI cannot hold (a colon).
    pub fn new(account: &str) -> Result<Self, String> {
        let mut secret = [0u8; 20];
        getrandom::fill(&mut secret).map_err(|e| format!("no randomness for a secret: {e}"))?;
        Ok(Self {
            totp: totp(Secret::from(secret), account)?,
            account: account.to_owned(),
        })
    }

    /// The `otpauth://totp/...` URI an authenticator app reads.
    ///
    /// # Errors
    ///
    /// When the URI cannot be made.
    pub fn uri(&self) -> Result<String, String> {
        self.totp.to_url().map_err(|e| e.to_string())
    }

    /// The secret, base32, for apps that take it typed in.
    pub fn secret(&self) -> String {
        self.totp.secret().to_base32()
    }
}

fn totp(secret: Secret, account: &str) -> Result<Totp, String> {
    Builder::new()
        .with_secret(secret)
        .with_skew(1)
        .with_issuer(Some("cordon"))
        .with_account_name(account)
        .build()
        .map_err(|e| format!("cannot make a one-time code generator: {e}"))
}

/// Why a code was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No authenticator is enrolled.
    NotEnrolled,
    /// The code is not the one for now (or the step before or after).
    Wrong,
    /// The code was right, for a step already used.
    Replayed,
    /// The store could not be read or written.
    Store(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NotEnrolled => {
                f.write_str("no authenticator is enrolled; run `cordon mfa enroll` first")
            }
            Refused::Wrong => f.write_str("wrong code"),
            Refused::Replayed => f.write_str("that code was already used; wait for the next one"),
            Refused::Store(why) => f.write_str(why),
        }
    }
}

/// The enrolled secret and its state, in a file.
#[derive(Debug, Clone)]
pub struct MfaStore {
    path: PathBuf,
}

impl MfaStore {
    /// The store at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an authenticator is enrolled (a store that cannot be read is not).
    pub fn enrolled(&self) -> bool {
        matches!(self.read(), Ok(Some(_)))
    }

    /// The enrolled account and when, if any.
    ///
    /// # Errors
    ///
    /// Why the store cannot be read.
    pub fn status(&self) -> Result<Option<(String, String, u64)>, String> {
        Ok(self.read()?.map(|e| (e.account, e.enrolled, e.verified_at)))
    }

    /// Keeps `enrollment` once `code` checks against it (replacing any earlier one).
    ///
    /// # Errors
    ///
    /// A wrong code, or why the store cannot be written.
    pub fn confirm(&self, enrollment: &Enrollment, code: &str, now: u64) -> Result<(), Refused> {
        let step = enrollment
            .totp
            .check(code.trim(), now)
            .ok_or(Refused::Wrong)?;
        let enrolled = Enrolled {
            secret: enrollment.secret(),
            account: enrollment.account.clone(),
            enrolled: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            last_step: step,
            // Enrolling proves nothing about an action: no `max_age_s` counts from it.
            verified_at: 0,
        };
        let _lock = self.lock().map_err(Refused::Store)?;
        self.write(&enrolled).map_err(Refused::Store)
    }

    /// Accepts `code` if it is the code for now (a step of skew either way) and its step is
    /// later than every step accepted before; returns the step.
    ///
    /// # Errors
    ///
    /// [`Refused`]: not enrolled, wrong, replayed, or the store failing (which refuses).
    pub fn verify(&self, code: &str, now: u64) -> Result<u64, Refused> {
        let _lock = self.lock().map_err(Refused::Store)?;
        let mut enrolled = self
            .read()
            .map_err(Refused::Store)?
            .ok_or(Refused::NotEnrolled)?;
        let secret = Secret::try_from_base32(&enrolled.secret)
            .map_err(|e| Refused::Store(format!("the enrolled secret is malformed: {e}")))?;
        let totp = totp(secret, &enrolled.account).map_err(Refused::Store)?;
        let step = totp.check(code.trim(), now).ok_or(Refused::Wrong)?;
        if step <= enrolled.last_step {
            return Err(Refused::Replayed);
        }
        enrolled.last_step = step;
        enrolled.verified_at = now;
        self.write(&enrolled).map_err(Refused::Store)?;
        Ok(step)
    }

    /// Whether a code was accepted within the last `max_age_s` seconds.
    pub fn fresh(&self, max_age_s: u64, now: u64) -> bool {
        matches!(self.read(), Ok(Some(e)) if e.verified_at > 0 && e.verified_at <= now && now - e.verified_at <= max_age_s)
    }

    /// Removes the enrolled secret; whether there was one.
    ///
    /// # Errors
    ///
    /// Why it cannot be removed.
    pub fn remove(&self) -> Result<bool, String> {
        match fs_err::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err.to_string()),
        }
    }

    fn read(&self) -> Result<Option<Enrolled>, String> {
        let Some(text) = super::private::read(&self.path, 64 * 1024, true)
            .map_err(|why| format!("{why}; re-enroll with `cordon mfa enroll`"))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| format!("`{}` is malformed: {e}", self.path.display()))
    }

    fn lock(&self) -> Result<std::fs::File, String> {
        super::private::lock(&self.path)
    }

    fn write(&self, enrolled: &Enrolled) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(enrolled).map_err(|e| e.to_string())?;
        super::private::replace(&self.path, &text)
    }
}

/// The code for `secret` (base32) at `time`: what an authenticator shows.
///
/// # Errors
///
/// A malformed secret.
pub fn code_at(secret: &str, time: u64) -> Result<String, String> {
    let secret = Secret::try_from_base32(secret).map_err(|e| e.to_string())?;
    Ok(totp(secret, "cordon")?.generate(time).to_string())
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, appendix B: the SHA-1 key `12345678901234567890` gives 94287082 at 59 s
    /// and 07081804 at 1111111109 s (8 digits; 6 digits are the last six).
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        assert_eq!(code_at(&secret, 59).unwrap(), "287082");
        assert_eq!(code_at(&secret, 1_111_111_109).unwrap(), "081804");
        assert_eq!(code_at(&secret, 2_000_000_000).unwrap(), "279037");
    }

    #[test]
    fn a_code_is_accepted_once_and_wrong_codes_never() {
        let dir = tempfile::tempdir().unwrap();
        let store = MfaStore::at(dir.path().join("cordon/mfa.json"));
        assert_eq!(store.verify("123456", 1000), Err(Refused::NotEnrolled));
        let enrollment = Enrollment::new("alice").unwrap();
        assert!(enrollment
            .uri()
            .unwrap()
            .starts_with("otpauth://totp/cordon:alice?"));
        let now = 1_800_000_000;
        let code = code_at(&enrollment.secret(), now).unwrap();
        assert_eq!(
            store.confirm(&enrollment, "000000", now),
            Err(Refused::Wrong)
        );
        assert!(!store.enrolled());
        store.confirm(&enrollment, &code, now).unwrap();
        assert!(store.enrolled());
        // Enrolling is not a verification a policy's `max_age_s` counts from.
        assert!(!store.fresh(3600, now));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs_err::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The enrolment code was used: not again.
        assert_eq!(store.verify(&code, now), Err(Refused::Replayed));
        // The next step's code, once.
        let next = code_at(&enrollment.secret(), now + 30).unwrap();
        assert_eq!(store.verify(&next, now + 30), Ok((now + 30) / 30));
        assert_eq!(store.verify(&next, now + 31), Err(Refused::Replayed));
        let wrong = if next == "111111" { "222222" } else { "111111" };
        assert_eq!(store.verify(wrong, now + 60), Err(Refused::Wrong));
        // A code from long ago is wrong now.
        let old = code_at(&enrollment.secret(), now - 3600).unwrap();
        assert_eq!(store.verify(&old, now + 90), Err(Refused::Wrong));
        assert!(store.fresh(60, now + 60));
        assert!(!store.fresh(10, now + 60));
        assert!(store.remove().unwrap());
        assert!(!store.enrolled());
    }
}
