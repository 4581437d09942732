//! What an agent asks for.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Sensitivity;

/// One action an agent wants to take, before the orchestrator enriches it.
///
/// Unknown fields inside `subject`, `resource` and `context` are kept and passed to the
/// policy unchanged, so organisations can add their own attributes; unknown top-level fields
/// are an error because they would otherwise be silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The policy package that decides, e.g. `file` for `data.cordon.file`. May be left out
    /// when the caller names it separately (`cordon eval --capability`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    /// What is done to the resource, e.g. `read`, `write`, `connect`.
    #[serde(default)]
    pub action: String,
    /// Who asks.
    #[serde(default)]
    pub subject: Subject,
    /// What is asked for.
    #[serde(default)]
    pub resource: Resource,
    /// The circumstances.
    #[serde(default)]
    pub context: Context,
}

/// Who asks: the person, the device, the agent and the skill acting for them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The person the agent works for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The device identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The agent's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The skill making the request, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skill: Option<Skill>,
    /// The model driving the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Attributes cordon does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A skill and the digest of its code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skill {
    /// The skill's name.
    pub name: String,
    /// SHA-256 of the skill's component, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The name of the trusted key whose signature of the component verified, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

/// What is asked for: a file, a host, a tool.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// A file path; `~` and relative paths are resolved by the input builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A host name or address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// A port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The sensitivity label; unlabelled resources are `internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<Sensitivity>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the content, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Attributes cordon does not interpret.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The circumstances of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// When, as RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The workspace roots the user chose; the orchestrator's own setting takes precedence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspace: Vec<String>,
    /// Attributes cordon does not interpret (network state, MFA freshness, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
