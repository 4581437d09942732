//! The default policy, built into the binary so cordon works with no setup.
//!
//! The files live in `policies/default/` at the root of the repository; a test checks that
//! this list and that directory agree.

macro_rules! default_policy_files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../policies/default/", $name)))),*]
    };
}

/// `(relative path, text)` of every file of the default policy.
pub(crate) const FILES: &[(&str, &str)] = default_policy_files![
    "clipboard.rego",
    "clipboard_test.rego",
    "data.json",
    "env.rego",
    "env_test.rego",
    "file.rego",
    "file_test.rego",
    "infer.rego",
    "infer_test.rego",
    "net.rego",
    "net_test.rego",
    "sandbox.rego",
    "sandbox_test.rego",
    "tool.rego",
    "tool_test.rego",
];

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::PolicySource;

    #[test]
    fn embedded_files_match_the_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/default");
        let on_disk = PolicySource::from_path(&dir).unwrap();
        let embedded = PolicySource::embedded_default();
        let pairs = |s: &PolicySource| -> Vec<(String, String)> {
            s.files()
                .iter()
                .map(|f| (f.relative.clone(), f.text.clone()))
                .collect()
        };
        assert_eq!(pairs(&on_disk), pairs(&embedded));
        assert_eq!(on_disk.revision(), embedded.revision());
    }
}
