//! The standard rules, in the order they are tried at one position.
//!
//! Patterns are byte-oriented (no Unicode classes; `\b` and `(?i)` are ASCII). A group named
//! `s` marks the secret inside a longer match (the value of an assignment); without one the
//! whole match is the finding. Counted repetitions are kept small, and lengths bounded in the
//! checks instead, so the combined automaton stays small.

use crate::check;
use crate::{Confidence, Kind};

/// What a check says about a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The finding's span in the haystack.
    pub start: usize,
    pub end: usize,
    pub confidence: Confidence,
}

/// A match as a check sees it: the haystack, the whole match and the secret's span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'h> {
    pub hay: &'h [u8],
    pub start: usize,
    pub end: usize,
    pub secret: (usize, usize),
}

impl<'h> Hit<'h> {
    /// The secret's bytes.
    pub fn value(&self) -> &'h [u8] {
        &self.hay[self.secret.0..self.secret.1]
    }

    /// The secret's span with `confidence`.
    pub fn keep(&self, confidence: Confidence) -> Option<Verdict> {
        Some(Verdict {
            start: self.secret.0,
            end: self.secret.1,
            confidence,
        })
    }
}

/// Validates a match: `None` rejects it.
pub(crate) type Check = fn(&Hit<'_>, Confidence) -> Option<Verdict>;

#[derive(Debug)]
pub(crate) struct Rule {
    pub id: &'static str,
    pub kind: Kind,
    pub pattern: &'static str,
    pub confidence: Confidence,
    pub check: Check,
    /// How many leading bytes of a finding a masked excerpt may show (a public prefix
    /// such as `AKIA` or `ghp_`).
    pub visible: usize,
}

const fn rule(
    id: &'static str,
    kind: Kind,
    pattern: &'static str,
    confidence: Confidence,
    check: Check,
    visible: usize,
) -> Rule {
    Rule {
        id,
        kind,
        pattern,
        confidence,
        check,
        visible,
    }
}

use Confidence::{High, Low, Medium};

pub(crate) static RULES: &[Rule] = &[
    rule(
        "private-key",
        Kind::PrivateKey,
        r"(?i:-----BEGIN[ A-Z0-9]{0,40}PRIVATE {1,4}KEY(?: BLOCK)?-----)",
        High,
        check::private_key,
        0,
    ),
    rule(
        "aws-access-key-id",
        Kind::CloudKey,
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z2-7]{16}\b",
        High,
        check::not_example,
        4,
    ),
    rule(
        "aws-secret-access-key",
        Kind::CloudKey,
        r#"(?i:aws)[A-Za-z0-9_.-]{0,20}(?i:secret)[A-Za-z0-9_.-]{0,20}["']?[ \t]{0,4}(?::=|=>|[:=])[ \t]{0,4}["']?(?P<s>[A-Za-z0-9/+]{40})"#,
        High,
        check::aws_secret,
        0,
    ),
    rule(
        "gcp-service-account",
        Kind::CloudKey,
        r#""type"\s{0,4}:\s{0,4}"service_account""#,
        High,
        check::gcp_service_account,
        0,
    ),
    rule(
        "gcp-api-key",
        Kind::Token,
        r"\bAIza[0-9A-Za-z_-]{35}",
        High,
        check::token_end,
        4,
    ),
    rule(
        "azure-storage-key",
        Kind::CloudKey,
        r"(?i:AccountKey)=(?P<s>[A-Za-z0-9+/]{86}==)",
        High,
        check::azure_storage,
        0,
    ),
    rule(
        "azure-shared-access-key",
        Kind::CloudKey,
        r"(?i:SharedAccessKey)=(?P<s>[A-Za-z0-9+/]{42,43}=)",
        High,
        check::azure_sas,
        0,
    ),
    rule(
        "github-token",
        Kind::Token,
        r"\bgh[pousr]_[A-Za-z0-9]{36}\b",
        High,
        check::github,
        4,
    ),
    rule(
        "github-fine-grained-token",
        Kind::Token,
        r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b",
        High,
        check::not_example,
        11,
    ),
    rule(
        "gitlab-token",
        Kind::Token,
        r"\bgl(?:pat|dt|ptt|rt)-[0-9A-Za-z_.-]{20,}",
        High,
        check::gitlab,
        6,
    ),
    rule(
        "slack-token",
        Kind::Token,
        r"\bxox[baprse]-[0-9A-Za-z-]{10,}",
        High,
        check::slack,
        5,
    ),
    rule(
        "slack-webhook",
        Kind::Token,
        r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9_/]{30,}",
        High,
        check::not_example,
        23,
    ),
    rule(
        "stripe-key",
        Kind::Token,
        r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{20,}\b",
        High,
        check::stripe,
        8,
    ),
    rule(
        "anthropic-key",
        Kind::Token,
        r"\bsk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{80,}",
        High,
        check::anthropic,
        7,
    ),
    rule(
        "openai-key",
        Kind::Token,
        r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}",
        High,
        check::token_end,
        3,
    ),
    rule(
        "sendgrid-key",
        Kind::Token,
        r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b",
        High,
        check::not_example,
        3,
    ),
    rule(
        "twilio-api-key",
        Kind::Token,
        r"\bSK[0-9a-f]{32}\b",
        Medium,
        check::random,
        2,
    ),
    rule(
        "mailchimp-key",
        Kind::Token,
        r"\b[0-9a-f]{32}-us[0-9]{1,2}\b",
        High,
        check::random,
        0,
    ),
    rule(
        "square-secret",
        Kind::Token,
        r"\bsq0csp-[0-9A-Za-z_-]{43}",
        High,
        check::token_end,
        7,
    ),
    rule(
        "telegram-bot-token",
        Kind::Token,
        r"\b[0-9]{8,10}:AA[0-9A-Za-z_-]{33}",
        High,
        check::token_end,
        0,
    ),
    rule(
        "npm-token",
        Kind::Token,
        r"\bnpm_[A-Za-z0-9]{36}\b",
        High,
        check::not_example,
        4,
    ),
    rule(
        "pypi-token",
        Kind::Token,
        r"\bpypi-AgE[A-Za-z0-9_-]{50,}",
        High,
        check::token_end,
        8,
    ),
    rule(
        "discord-bot-token",
        Kind::Token,
        r"\b[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}\b",
        Medium,
        check::random,
        0,
    ),
    rule(
        "jwt",
        Kind::Jwt,
        r"\beyJ[A-Za-z0-9_-]{4,2048}\.eyJ[A-Za-z0-9_-]{2,8192}\.[A-Za-z0-9_-]{0,1024}",
        High,
        check::jwt,
        3,
    ),
    rule(
        "url-credentials",
        Kind::UrlCredentials,
        r#"\b[A-Za-z][A-Za-z0-9+.-]{1,15}://(?P<s>[^\s:/?#@"'<>`]+:[^\s/?#@"'<>`]+)@[A-Za-z0-9.\[-]"#,
        High,
        check::url_credentials,
        0,
    ),
    rule(
        "generic-secret",
        Kind::GenericSecret,
        r#"(?i:secret|token|passwd|password|pwd|api[_-]?key|access[_-]?key|auth[_-]?key|private[_-]?key|credential)(?i:s)?[A-Za-z0-9_.-]{0,30}["']?\s{0,4}(?::=|=>|[:=])\s{0,4}["'`]?(?P<s>[A-Za-z0-9+/_.~!@#$%^*-]{12,200}={0,2})"#,
        Medium,
        check::generic,
        0,
    ),
    rule(
        "basic-auth",
        Kind::UrlCredentials,
        r"(?i:basic)[ \t]{1,4}(?P<s>[A-Za-z0-9+/]{8,1024}={0,2})",
        High,
        check::basic_auth,
        0,
    ),
    rule(
        "bearer-token",
        Kind::GenericSecret,
        r"(?i:bearer)[ \t]{1,4}(?P<s>[A-Za-z0-9._~+/-]{16,}=*)",
        Medium,
        check::bearer,
        0,
    ),
    rule(
        "email",
        Kind::Email,
        r"\b[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}\b",
        Medium,
        check::email,
        0,
    ),
    rule(
        "iban",
        Kind::Iban,
        r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
        High,
        check::iban,
        2,
    ),
    rule(
        "cn-resident-id",
        Kind::NationalId,
        r"\b[1-9][0-9]{16}[0-9X]\b",
        High,
        check::cn_resident_id,
        0,
    ),
    rule(
        "fr-nir",
        Kind::NationalId,
        r"\b[12] ?[0-9]{2} ?(?:0[1-9]|1[0-2]) ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}\b",
        High,
        check::fr_nir,
        0,
    ),
    rule(
        "payment-card",
        Kind::PaymentCard,
        r"\b(?:[0-9]{4}[ -]){3}[0-9]{1,7}\b|\b[0-9]{4}[ -][0-9]{6}[ -][0-9]{5}\b|\b[0-9]{13,19}\b",
        High,
        check::payment_card,
        0,
    ),
    rule(
        "es-dni",
        Kind::NationalId,
        r"\b[0-9]{8}-?[A-HJ-NP-TV-Z]\b",
        Medium,
        check::es_dni,
        0,
    ),
    rule(
        "se-personnummer",
        Kind::NationalId,
        r"\b(?:19|20)?[0-9]{6}[-+][0-9]{4}\b",
        Medium,
        check::se_personnummer,
        0,
    ),
    rule(
        "phone",
        Kind::Phone,
        r"\+[1-9][0-9]{0,2}[ .-]?(?:\([0-9]{1,4}\)[ .-]?)?[0-9]{1,4}(?:[ .-]?[0-9]{2,4}){1,5}\b|\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .-][0-9]{4}\b|\b[2-9][0-9]{2}[.-][2-9][0-9]{2}[.-][0-9]{4}\b",
        Low,
        check::phone,
        0,
    ),
];
