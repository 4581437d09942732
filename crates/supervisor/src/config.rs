//! `config.toml`: settings a person sets once, each overridable by a command-line flag.

use std::path::{Path, PathBuf};

use cordon_policy::{EngineKind, Limits, PolicyOptions};
use serde::Deserialize;

use crate::{Result, SetupError};

/// The whole configuration file. Every section and key is optional.
///
/// ```toml
/// [policy]
/// path = "~/.config/cordon/policy"   # a policy directory; absent: the built-in default
/// # bundle = "https://policy.example.com/cordon.tar.gz"   # or a bundle file, instead of path
/// # public_key = "~/.config/cordon/team.pem.pub"           # bundles must be signed with it
/// engine = "rvm"                      # or "interpreter"
/// time_limit_ms = 100
/// memory_limit_mib = 64
/// max_input_bytes = 1048576
///
/// [workspace]
/// roots = ["~/src/project"]          # absent: the current directory
///
/// [audit]
/// enabled = true
/// format = "sqlite"                   # or "jsonl"
/// path = "~/.local/share/cordon/audit.db"
///
/// [consent]
/// backend = "auto"                    # terminal, socket, notify (comma-separated), deny, allow
/// timeout_s = 60
/// remembered = "~/.config/cordon/remembered.json"
///
/// [subject]
/// user = "alice"
/// device = "laptop-42"
/// agent = "my-agent"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CordonConfig {
    /// Which policy decides and how it is bounded.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The directories the person lets agents work in.
    #[serde(default)]
    pub workspace: WorkspaceConfig,
    /// Where decisions are recorded.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Who is asked when the policy asks a person.
    #[serde(default)]
    pub consent: ConsentConfig,
    /// Who is asking, when requests do not say.
    #[serde(default)]
    pub subject: SubjectConfig,
    /// What sessions change, kept so it can be undone.
    #[serde(default)]
    pub journal: JournalConfig,
}

/// `[journal]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Whether sessions' writable trees are taken at the start and the end, and what
    /// changed journaled (default true).
    pub enabled: Option<bool>,
    /// The journal's directory; `$XDG_DATA_HOME/cordon/journal` when absent.
    pub path: Option<PathBuf>,
    /// Leave out what `.gitignore` ignores (default true).
    pub gitignore: Option<bool>,
    /// Files larger than this many MiB are not kept (default 1024).
    pub max_file_mib: Option<u64>,
}

/// `[consent]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// `auto` (default: the terminal when cordon holds one, else `deny`), `terminal`,
    /// `socket`, `notify` (comma-separated), `deny` or `allow`.
    pub backend: Option<String>,
    /// How long to wait for an answer when the policy does not say, in seconds (default 60).
    pub timeout_s: Option<u64>,
    /// Where answers "for always" are kept (default `$XDG_CONFIG_HOME/cordon/remembered.json`);
    /// the policy reads them as `data.cordon.remembered`.
    pub remembered: Option<PathBuf>,
}

/// `[policy]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A policy directory or file; the built-in default policy when absent.
    pub path: Option<PathBuf>,
    /// `rvm` (default) or `interpreter`.
    pub engine: Option<String>,
    /// Time limit of one decision, in milliseconds (default 100).
    pub time_limit_ms: Option<u64>,
    /// Memory budget of one decision, in MiB (default 64).
    pub memory_limit_mib: Option<u64>,
    /// Largest request accepted, in bytes (default 1 MiB).
    pub max_input_bytes: Option<usize>,
    /// Keep the compiled decisions in `$XDG_CACHE_HOME/cordon/policy` for the next start
    /// (default true).
    pub cache: Option<bool>,
    /// A policy bundle (OPA's format) to run instead of `path`: a file, or an `https://`
    /// URL that `cordon policy pull` polls. The active bundle is kept in
    /// `$XDG_DATA_HOME/cordon/bundles`.
    pub bundle: Option<String>,
    /// The public key bundles must be signed with (PEM); when set, an unsigned bundle is
    /// refused.
    pub public_key: Option<PathBuf>,
    /// The key id to verify with whatever a signature names (OPA's `--verification-key-id`).
    pub key_id: Option<String>,
    /// The scope signatures must carry.
    pub scope: Option<String>,
    /// Let a bundle with an older revision replace the active one (default false).
    pub allow_downgrade: Option<bool>,
    /// How often `cordon policy pull --watch` checks the URL, in seconds (default 300).
    pub poll_interval_s: Option<u64>,
}

/// `[workspace]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Workspace roots; the current directory when empty.
    #[serde(default)]
    pub roots: Vec<PathBuf>,
}

/// `[audit]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Whether decisions are recorded (default true).
    pub enabled: Option<bool>,
    /// `sqlite` (default: the tamper-evident store) or `jsonl` (a plain file).
    pub format: Option<AuditFormat>,
    /// The database or file; `$XDG_DATA_HOME/cordon/audit.db` (or `audit.jsonl`) when absent.
    pub path: Option<PathBuf>,
}

/// How decisions are recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// The hash-chained SQLite store.
    #[default]
    Sqlite,
    /// One JSON object per line, not tamper-evident.
    Jsonl,
}

/// `[subject]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectConfig {
    /// The person; `$USER` when absent.
    pub user: Option<String>,
    /// The device.
    pub device: Option<String>,
    /// The agent.
    pub agent: Option<String>,
}

/// The default largest request: 1 MiB.
pub const DEFAULT_MAX_INPUT_BYTES: usize = 1 << 20;

impl CordonConfig {
    /// `$XDG_CONFIG_HOME/cordon/config.toml` (`~/.config/cordon/config.toml`).
    pub fn default_path() -> Option<PathBuf> {
        dirs::config_dir().map(|dir| dir.join("cordon").join("config.toml"))
    }

    /// Reads the configuration: `explicit` when given (it must exist), otherwise the default
    /// path if a file is there, otherwise the built-in defaults. Returns the file read, if any.
    ///
    /// # Errors
    ///
    /// [`SetupError::ReadConfig`] or [`SetupError::ParseConfig`] naming the file.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>)> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => match Self::default_path() {
                Some(path) if path.exists() => path,
                _ => return Ok((Self::default(), None)),
            },
        };
        let text = fs_err::read_to_string(&path).map_err(|source| SetupError::ReadConfig {
            path: path.clone(),
            source,
        })?;
        let config = Self::parse(&text).map_err(|source| SetupError::ParseConfig {
            path: path.clone(),
            source,
        })?;
        Ok((config, Some(path)))
    }

    /// Parses a configuration file's text.
    ///
    /// # Errors
    ///
    /// The TOML error, with line and column.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The policy options these settings ask for.
    ///
    /// # Errors
    ///
    /// [`SetupError::ConfigValue`] for an unknown engine or a zero limit.
    pub fn policy_options(&self) -> Result<PolicyOptions> {
        let defaults = Limits::default();
        let engine = match &self.policy.engine {
            Some(name) => {
                name.parse::<EngineKind>()
                    .map_err(|message| SetupError::ConfigValue {
                        key: "policy.engine",
                        message,
                    })?
            }
            None => EngineKind::default(),
        };
        let time = match self.policy.time_limit_ms {
            Some(0) => return Err(zero("policy.time_limit_ms")),
            Some(ms) => std::time::Duration::from_millis(ms),
            None => defaults.time,
        };
        let memory_bytes = match self.policy.memory_limit_mib {
            Some(mib) => mib
                .checked_mul(1 << 20)
                .and_then(std::num::NonZeroU64::new)
                .ok_or_else(|| zero("policy.memory_limit_mib"))?,
            None => defaults.memory_bytes,
        };
        Ok(PolicyOptions {
            engine,
            limits: Limits {
                time,
                memory_bytes,
                ..defaults
            },
            only: None,
        })
    }

    /// Where answers "for always" are kept.
    pub fn remembered_path(&self) -> Option<PathBuf> {
        match &self.consent.remembered {
            Some(path) => Some(crate::expand_home(path)),
            None => dirs::config_dir().map(|dir| dir.join("cordon").join("remembered.json")),
        }
    }

    /// Where the enrolled authenticator's secret is kept (`$XDG_CONFIG_HOME/cordon/mfa.json`).
    pub fn mfa_path(&self) -> Option<PathBuf> {
        dirs::config_dir().map(|dir| dir.join("cordon").join("mfa.json"))
    }

    /// The largest request accepted, in bytes.
    pub fn max_input_bytes(&self) -> usize {
        self.policy
            .max_input_bytes
            .unwrap_or(DEFAULT_MAX_INPUT_BYTES)
    }

    /// The journal's directory, when journaling is on.
    pub fn journal_dir(&self) -> Option<PathBuf> {
        if self.journal.enabled == Some(false) {
            return None;
        }
        self.journal
            .path
            .clone()
            .or_else(|| dirs::data_dir().map(|dir| dir.join("cordon").join("journal")))
            .map(|path| expand_home(&path))
    }

    /// How the journal takes trees.
    pub fn journal_options(&self) -> cordon_journal::Options {
        let mut options = cordon_journal::Options::default();
        if let Some(gitignore) = self.journal.gitignore {
            options.gitignore = gitignore;
        }
        if let Some(mib) = self.journal.max_file_mib {
            options.max_file = mib.saturating_mul(1 << 20);
        }
        options
    }

    /// The audit log and its format, when auditing is on.
    pub fn audit_target(&self) -> Option<(PathBuf, AuditFormat)> {
        if self.audit.enabled == Some(false) {
            return None;
        }
        let format = self.audit.format.unwrap_or_default();
        let default_name = match format {
            AuditFormat::Sqlite => "audit.db",
            AuditFormat::Jsonl => "audit.jsonl",
        };
        let path = self
            .audit
            .path
            .clone()
            .or_else(|| dirs::data_dir().map(|dir| dir.join("cordon").join(default_name)))?;
        Some((expand_home(&path), format))
    }
}

fn zero(key: &'static str) -> SetupError {
    SetupError::ConfigValue {
        key,
        message: "must be a positive number".to_owned(),
    }
}

/// Expands a leading `~` to the home directory.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), dirs::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;

    #[test]
    fn parses_every_section() {
        let config = CordonConfig::parse(
            r#"
[policy]
path = "/etc/cordon/policy"
engine = "interpreter"
time_limit_ms = 20

[workspace]
roots = ["/srv/a", "/srv/b"]

[audit]
enabled = false

[subject]
agent = "claude"
"#,
        )
        .unwrap();
        assert_eq!(
            config.policy.path,
            Some(PathBuf::from("/etc/cordon/policy"))
        );
        assert_eq!(config.workspace.roots.len(), 2);
        assert_eq!(config.audit_target(), None);
        let options = config.policy_options().unwrap();
        assert_eq!(options.engine, EngineKind::Interpreter);
        assert_eq!(options.limits.time, std::time::Duration::from_millis(20));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = CordonConfig::parse("[policy]\nengin = \"rvm\"\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `engin`"), "{err}");
        let config = CordonConfig::parse("[policy]\nengine = \"jit\"\n").unwrap();
        assert_eq!(
            config.policy_options().unwrap_err().to_string(),
            "invalid configuration value `policy.engine`: unknown engine `jit`: expected `rvm` or `interpreter`"
        );
        let config = CordonConfig::parse("[policy]\ntime_limit_ms = 0\n").unwrap();
        assert!(config.policy_options().is_err());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err = CordonConfig::load(Some(Path::new("/nonexistent/cordon.toml"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read configuration `/nonexistent/cordon.toml`"
        );
    }
}
