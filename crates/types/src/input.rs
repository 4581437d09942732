//! The input document: what a policy sees as `input`.

use std::path::{Component, Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::{Capability, InputError, Request};

/// What the orchestrator knows about the machine and the person, used to fill in and resolve
/// a [`Request`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputEnv {
    /// The user name, used when the request names none.
    pub user: Option<String>,
    /// The device identifier, used when the request names none.
    pub device: Option<String>,
    /// The agent's name, used when the request names none.
    pub agent: Option<String>,
    /// The home directory: `~` in paths expands to it and policies read it as `context.home`.
    pub home: Option<PathBuf>,
    /// The working directory that relative paths resolve against.
    pub cwd: Option<PathBuf>,
    /// The workspace roots the user chose. When set, these replace whatever the request says.
    pub workspace: Vec<PathBuf>,
    /// The time to stamp on requests that carry none, as RFC 3339.
    pub time: Option<String>,
}

/// Builds the input document of the design from a [`Request`].
///
/// The builder is the one place where request fields are resolved, so every surface gives
/// policies the same shape: absolute, lexically normalised paths (no `.`, `..` or `~`), the
/// sensitivity name *and* its level number, a lowercase host without a trailing dot, the
/// workspace roots and the home directory.
#[derive(Debug, Clone, Default)]
pub struct InputBuilder {
    env: InputEnv,
}

impl InputBuilder {
    /// A builder that resolves requests against `env`.
    pub fn new(env: InputEnv) -> Self {
        Self { env }
    }

    /// The environment requests are resolved against.
    pub fn env(&self) -> &InputEnv {
        &self.env
    }

    /// Builds the input document for `request`.
    ///
    /// # Errors
    ///
    /// An [`InputError`] when the capability is missing or invalid, the action is empty, or a
    /// path cannot be made absolute.
    pub fn build(&self, request: &Request) -> Result<Value, InputError> {
        let capability = Capability::new(request.capability.as_deref().unwrap_or_default())?;
        self.build_for(&capability, request)
    }

    /// Builds the input document for `request`, decided under `capability` whatever the
    /// request itself says.
    ///
    /// # Errors
    ///
    /// As [`InputBuilder::build`].
    pub fn build_for(
        &self,
        capability: &Capability,
        request: &Request,
    ) -> Result<Value, InputError> {
        if request.action.trim().is_empty() {
            return Err(InputError::MissingAction);
        }
        // The maps are built field by field rather than through `serde_json::to_value`: this
        // runs on every decision.
        let subject = &request.subject;
        let mut subject_map = subject.extra.clone();
        insert_some(
            &mut subject_map,
            "user",
            subject.user.as_deref().or(self.env.user.as_deref()),
        );
        insert_some(
            &mut subject_map,
            "device",
            subject.device.as_deref().or(self.env.device.as_deref()),
        );
        insert_some(
            &mut subject_map,
            "agent",
            subject.agent.as_deref().or(self.env.agent.as_deref()),
        );
        insert_some(&mut subject_map, "model", subject.model.as_deref());
        if let Some(skill) = &subject.skill {
            let mut skill_map = Map::new();
            skill_map.insert("name".into(), Value::String(skill.name.clone()));
            insert_some(&mut skill_map, "sha256", skill.sha256.as_deref());
            insert_some(&mut skill_map, "signed_by", skill.signed_by.as_deref());
            subject_map.insert("skill".into(), Value::Object(skill_map));
        }

        let res = &request.resource;
        let mut resource = res.extra.clone();
        if let Some(path) = &res.path {
            let resolved = self.resolve(path)?;
            resource.insert("path".into(), Value::String(path_string(&resolved)));
        }
        if let Some(host) = &res.host {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            resource.insert("host".into(), Value::String(host));
        }
        if let Some(port) = res.port {
            resource.insert("port".into(), Value::from(port));
        }
        if let Some(size) = res.size {
            resource.insert("size".into(), Value::from(size));
        }
        insert_some(&mut resource, "sha256", res.sha256.as_deref());
        let sensitivity = res.sensitivity.unwrap_or_default();
        resource.insert(
            "sensitivity".into(),
            Value::String(sensitivity.as_str().to_owned()),
        );
        resource.insert("sensitivity_level".into(), Value::from(sensitivity.level()));

        let mut context = request.context.extra.clone();
        insert_some(
            &mut context,
            "time",
            request.context.time.as_deref().or(self.env.time.as_deref()),
        );
        let workspace: Vec<Value> = if self.env.workspace.is_empty() {
            let mut roots = Vec::with_capacity(request.context.workspace.len());
            for root in &request.context.workspace {
                roots.push(Value::String(path_string(&self.resolve(root)?)));
            }
            roots
        } else {
            self.env
                .workspace
                .iter()
                .map(|root| Value::String(path_string(&normalize_path(root))))
                .collect()
        };
        context.insert("workspace".into(), Value::Array(workspace));
        if let Some(home) = &self.env.home {
            context.insert(
                "home".into(),
                Value::String(path_string(&normalize_path(home))),
            );
        }

        Ok(json!({
            "capability": capability.as_str(),
            "action": request.action,
            "subject": subject_map,
            "resource": resource,
            "context": context,
        }))
    }

    /// Makes `path` absolute: `~` becomes the home directory, relative paths join the working
    /// directory, and `.` and `..` are folded lexically.
    fn resolve(&self, path: &str) -> Result<PathBuf, InputError> {
        Ok(normalize_path(&self.absolute(path)?))
    }

    /// Makes `path` absolute without folding `.` and `..`: `~` becomes the home directory and
    /// relative paths join the working directory. Callers that can consult the file system
    /// resolve symbolic links on this path, before `..` is folded, as the kernel would.
    ///
    /// # Errors
    ///
    /// [`InputError::UnknownHome`] or [`InputError::RelativePath`] when the path cannot be
    /// made absolute.
    pub fn absolute(&self, path: &str) -> Result<PathBuf, InputError> {
        let expanded = if path == "~" || path.starts_with("~/") {
            let home = self
                .env
                .home
                .as_ref()
                .ok_or_else(|| InputError::UnknownHome(path.to_owned()))?;
            home.join(path.trim_start_matches('~').trim_start_matches('/'))
        } else {
            PathBuf::from(path)
        };
        if expanded.is_absolute() {
            Ok(expanded)
        } else {
            let cwd = self
                .env
                .cwd
                .as_ref()
                .ok_or_else(|| InputError::RelativePath(path.to_owned()))?;
            Ok(cwd.join(expanded))
        }
    }
}

/// Folds `.` and `..` out of an absolute path without touching the file system; `..` above
/// the root stays at the root, as the kernel does.
pub fn normalize_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => out.push(prefix.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
        }
    }
    out
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use pretty_assertions::assert_eq;

    use super::*;
    use crate::{Resource, Sensitivity};

    fn env() -> InputEnv {
        InputEnv {
            user: Some("alice".into()),
            device: None,
            agent: None,
            home: Some("/home/alice".into()),
            cwd: Some("/home/alice/work".into()),
            workspace: vec!["/home/alice/work/".into()],
            time: Some("2026-01-01T00:00:00Z".into()),
        }
    }

    fn file_request(path: &str) -> Request {
        Request {
            capability: Some("file".into()),
            action: "read".into(),
            resource: Resource {
                path: Some(path.into()),
                ..Resource::default()
            },
            ..Request::default()
        }
    }

    #[test]
    fn builds_the_documented_shape() {
        let mut request = file_request("notes/../plan.md");
        request.resource.sensitivity = Some(Sensitivity::Restricted);
        let input = InputBuilder::new(env()).build(&request).unwrap();
        assert_eq!(
            input,
            json!({
                "capability": "file",
                "action": "read",
                "subject": {"user": "alice"},
                "resource": {
                    "path": "/home/alice/work/plan.md",
                    "sensitivity": "restricted",
                    "sensitivity_level": 3
                },
                "context": {
                    "workspace": ["/home/alice/work"],
                    "home": "/home/alice",
                    "time": "2026-01-01T00:00:00Z"
                }
            })
        );
    }

    #[test]
    fn traversal_is_folded_before_the_policy_sees_it() {
        let builder = InputBuilder::new(env());
        let input = builder
            .build(&file_request("/home/alice/work/../.ssh/id_ed25519"))
            .unwrap();
        assert_eq!(input["resource"]["path"], "/home/alice/.ssh/id_ed25519");
        let input = builder
            .build(&file_request("~/../../etc/./shadow"))
            .unwrap();
        assert_eq!(input["resource"]["path"], "/etc/shadow");
        let input = builder.build(&file_request("/../../x")).unwrap();
        assert_eq!(input["resource"]["path"], "/x");
    }

    #[test]
    fn a_request_cannot_claim_a_lower_level_or_its_own_workspace() {
        let request: Request = serde_json::from_value(json!({
            "capability": "file", "action": "read",
            "resource": {"path": "/srv/x", "sensitivity": "restricted", "sensitivity_level": 0},
            "context": {"workspace": ["/"]}
        }))
        .unwrap();
        let input = InputBuilder::new(env()).build(&request).unwrap();
        assert_eq!(input["resource"]["sensitivity_level"], 3);
        assert_eq!(input["context"]["workspace"], json!(["/home/alice/work"]));
    }

    #[test]
    fn hosts_are_lowercased_without_trailing_dot() {
        let request = Request {
            capability: Some("net".into()),
            action: "connect".into(),
            resource: Resource {
                host: Some("API.GitHub.com.".into()),
                ..Resource::default()
            },
            ..Request::default()
        };
        let input = InputBuilder::new(env()).build(&request).unwrap();
        assert_eq!(input["resource"]["host"], "api.github.com");
    }

    #[test]
    fn bad_requests_are_named() {
        let builder = InputBuilder::new(InputEnv::default());
        let err = builder.build(&file_request("rel/path")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "path `rel/path` is relative and no working directory is known to resolve it"
        );
        let err = builder.build(&file_request("~/x")).unwrap_err();
        assert!(matches!(err, InputError::UnknownHome(_)));
        let mut request = file_request("/x");
        request.action.clear();
        assert!(matches!(
            builder.build(&request),
            Err(InputError::MissingAction)
        ));
        request.capability = None;
        request.action = "read".into();
        assert!(matches!(
            builder.build(&request),
            Err(InputError::Capability(_))
        ));
    }

    #[test]
    fn unknown_top_level_fields_are_rejected() {
        let err = serde_json::from_value::<Request>(json!({"action": "read", "resorce": {}}));
        assert!(err.unwrap_err().to_string().contains("resorce"));
    }
}
