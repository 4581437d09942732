//! The skill's file system, decided call by call.
//!
//! Wasmtime's WASI implementation confines a skill to its preopened directories (no
//! absolute paths, no `..` or link out of a preopen). On top of that, every call that opens
//! or changes a path is decided by `data.cordon.file` before it happens, on the host path it
//! reaches: the directory the call is relative to, as the kernel names its open descriptor
//! (`/proc/self/fd`), joined with the skill's path, links followed and `..` folded the way
//! the kernel would. An open is checked again afterwards on what the kernel actually opened;
//! a different file (a link swapped between the decision and the open) is closed and decided
//! again. Reading a path's metadata (`stat-at`, `metadata-hash-at`, `readlink-at`) is decided
//! as `stat`.
//!
//! The calls are Wasmtime's own, wrapped: the linker's definitions of `open-at`,
//! `create-directory-at`, `unlink-file-at`, `remove-directory-at`, `rename-at`,
//! `symlink-at`, `link-at`, `set-times-at`, `set-times`, `stat-at`, `metadata-hash-at` and
//! `readlink-at` are replaced by ones that decide first.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};
use wasmtime::component::{Linker, Resource};
use wasmtime::StoreContextMut;
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::sync::filesystem::types::{
    self as fs, DescriptorFlags, ErrorCode, NewTimestamp, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::FsError;
use wasmtime_wasi::OpenMode;

use crate::runtime::Host;

/// The interface whose functions are replaced, as Wasmtime's bindings name it.
const TYPES: &str = "wasi:filesystem/types@0.2.12";

/// The result of a guest call as the component model lowers it.
type Lowered<T> = wasmtime::Result<(Result<T, ErrorCode>,)>;

/// Replaces the path-taking calls of `wasi:filesystem/types` in `linker` (which already has
/// Wasmtime's) with ones that decide each call first.
pub(crate) fn add_decided(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, Host>,
         (fd, path_flags, path, oflags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| { open_at(store.data_mut(), fd, path_flags, path, oflags, flags) },
    )?;
    types.func_wrap(
        "[method]descriptor.create-directory-at",
        |mut store: StoreContextMut<'_, Host>, (fd, path): (Resource<Descriptor>, String)| {
            let host = store.data_mut();
            if let Err(code) = host.decide_at(&fd, &path, false, "create", json!({})) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::create_directory_at(view, fd, path)
            })
        },
    )?;
    for (name, directory) in [
        ("[method]descriptor.unlink-file-at", false),
        ("[method]descriptor.remove-directory-at", true),
    ] {
        types.func_wrap(
            name,
            move |mut store: StoreContextMut<'_, Host>,
                  (fd, path): (Resource<Descriptor>, String)| {
                let host = store.data_mut();
                let mode = json!({"directory": directory});
                if let Err(code) = host.decide_at(&fd, &path, false, "delete", mode) {
                    return Ok((Err(code),));
                }
                lower(host, |view| {
                    if directory {
                        fs::HostDescriptor::remove_directory_at(view, fd, path)
                    } else {
                        fs::HostDescriptor::unlink_file_at(view, fd, path)
                    }
                })
            },
        )?;
    }
    types.func_wrap(
        "[method]descriptor.rename-at",
        |mut store: StoreContextMut<'_, Host>,
         (fd, old, new_fd, new): (Resource<Descriptor>, String, Resource<Descriptor>, String)| {
            let host = store.data_mut();
            let to = host.path_at(&new_fd, &new, false).ok();
            let mode = json!({"to": to});
            if let Err(code) = host.decide_at(&fd, &old, false, "rename", mode) {
                return Ok((Err(code),));
            }
            if let Err(code) = host.decide_at(&new_fd, &new, false, "create", json!({})) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::rename_at(view, fd, old, new_fd, new)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.symlink-at",
        |mut store: StoreContextMut<'_, Host>,
         (fd, target, path): (Resource<Descriptor>, String, String)| {
            let host = store.data_mut();
            let mode = json!({"link_to": target});
            if let Err(code) = host.decide_at(&fd, &path, false, "create", mode) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::symlink_at(view, fd, target, path)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.link-at",
        |mut store: StoreContextMut<'_, Host>,
         (fd, old_flags, old, new_fd, new): (
            Resource<Descriptor>,
            PathFlags,
            String,
            Resource<Descriptor>,
            String,
        )| {
            let host = store.data_mut();
            // A second name for a file is a way to read it: the file must be readable.
            let follow = old_flags.contains(PathFlags::SYMLINK_FOLLOW);
            if let Err(code) = host.decide_at(&fd, &old, follow, "read", json!({"link": true})) {
                return Ok((Err(code),));
            }
            if let Err(code) = host.decide_at(&new_fd, &new, false, "create", json!({})) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::link_at(view, fd, old_flags, old, new_fd, new)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.set-times-at",
        |mut store: StoreContextMut<'_, Host>,
         (fd, flags, path, atim, mtim): (
            Resource<Descriptor>,
            PathFlags,
            String,
            NewTimestamp,
            NewTimestamp,
        )| {
            let host = store.data_mut();
            let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
            if let Err(code) = host.decide_at(&fd, &path, follow, "write", json!({"times": true})) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::set_times_at(view, fd, flags, path, atim, mtim)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.set-times",
        |mut store: StoreContextMut<'_, Host>,
         (fd, atim, mtim): (Resource<Descriptor>, NewTimestamp, NewTimestamp)| {
            let host = store.data_mut();
            let target = match host.descriptor_path(&fd) {
                Ok(target) => target,
                Err(code) => return Ok((Err(code),)),
            };
            if let Err(code) = host.decide_path(&target, "write", json!({"times": true})) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::set_times(view, fd, atim, mtim)
            })
        },
    )?;
    // Metadata: what a file is, how large, when changed, where a link leads. Decided as
    // `stat` (a secret's size and times are the secret's).
    types.func_wrap(
        "[method]descriptor.stat-at",
        |mut store: StoreContextMut<'_, Host>,
         (fd, flags, path): (Resource<Descriptor>, PathFlags, String)| {
            let host = store.data_mut();
            let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
            if let Err(code) = host.decide_at(&fd, &path, follow, "stat", json!({})) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::stat_at(view, fd, flags, path)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.metadata-hash-at",
        |mut store: StoreContextMut<'_, Host>,
         (fd, flags, path): (Resource<Descriptor>, PathFlags, String)| {
            let host = store.data_mut();
            let follow = flags.contains(PathFlags::SYMLINK_FOLLOW);
            if let Err(code) = host.decide_at(&fd, &path, follow, "stat", json!({})) {
                return Ok((Err(code),));
            }
            lower(host, |view| {
                fs::HostDescriptor::metadata_hash_at(view, fd, flags, path)
            })
        },
    )?;
    types.func_wrap(
        "[method]descriptor.readlink-at",
        |mut store: StoreContextMut<'_, Host>, (fd, path): (Resource<Descriptor>, String)| {
            let host = store.data_mut();
            if let Err(code) = host.decide_at(&fd, &path, false, "stat", json!({"readlink": true}))
            {
                return Ok((Err(code),));
            }
            lower(host, |view| fs::HostDescriptor::readlink_at(view, fd, path))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs one of Wasmtime's calls and lowers its error the way its bindings do.
fn lower<T>(
    host: &mut Host,
    call: impl FnOnce(&mut wasmtime_wasi::filesystem::WasiFilesystemCtxView<'_>) -> Result<T, FsError>,
) -> Lowered<T> {
    let mut view = host.filesystem();
    match call(&mut view) {
        Ok(value) => Ok((Ok(value),)),
        Err(err) => Ok((Err(fs::Host::convert_error_code(&mut view, err)?),)),
    }
}

fn open_at(
    host: &mut Host,
    fd: Resource<Descriptor>,
    path_flags: PathFlags,
    path: String,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> Lowered<Resource<Descriptor>> {
    let follow = path_flags.contains(PathFlags::SYMLINK_FOLLOW);
    let target = match host.path_at(&fd, &path, follow) {
        Ok(target) => target,
        Err(code) => return Ok((Err(code),)),
    };
    let existing = fs_err::metadata(&target).ok();
    let create = oflags.contains(OpenFlags::CREATE) && existing.is_none();
    let truncate = oflags.contains(OpenFlags::TRUNCATE);
    // Wasmtime opens for writing whatever is asked with CREATE (an existing file too).
    let write = flags.contains(DescriptorFlags::WRITE)
        || flags.contains(DescriptorFlags::MUTATE_DIRECTORY)
        || oflags.contains(OpenFlags::CREATE)
        || truncate;
    let directory =
        oflags.contains(OpenFlags::DIRECTORY) || existing.as_ref().is_some_and(|m| m.is_dir());
    let action = if create {
        "create"
    } else if write {
        "write"
    } else if directory {
        "list"
    } else {
        "read"
    };
    let mode = json!({
        "read": flags.contains(DescriptorFlags::READ),
        "write": write,
        "create": oflags.contains(OpenFlags::CREATE),
        "truncate": truncate,
        "directory": directory,
    });
    let mut decisions = match host.decide_path_with(&target, action, mode.clone()) {
        Ok(decision) => vec![decision],
        Err(code) => return Ok((Err(code),)),
    };
    // A descriptor that writes and also reads an existing file: the read is decided too (a
    // file the policy lets be changed but not read, or read only redacted, is not handed
    // out readable).
    if action != "read" && !directory && existing.is_some() && flags.contains(DescriptorFlags::READ)
    {
        match host.decide_path(&target, "read", mode.clone()) {
            Ok(()) => {}
            Err(code) => return Ok((Err(code),)),
        }
    }
    let opened = lower(host, |view| {
        fs::HostDescriptor::open_at(view, fd, path_flags, path, oflags, flags)
    })?;
    let Ok(new) = opened.0 else {
        return Ok(opened);
    };
    // A descriptor that can write, from a decision that was not about writing: closed.
    if !write && host.opened_for_writing(&new) {
        tracing::error!(
            "a skill's open of `{}` could write though it was decided as {action}",
            target.display()
        );
        let mut view = host.filesystem();
        fs::HostDescriptor::drop(&mut view, new)?;
        return Ok((Err(ErrorCode::NotPermitted),));
    }
    // What the kernel opened: a link swapped in since the decision reaches another file,
    // which is decided in its turn.
    let actual = host.descriptor_path(&new);
    if actual.as_deref().ok() != Some(target.as_path()) {
        let decided = match &actual {
            Ok(actual) => host.decide_path_with(actual, action, mode),
            Err(code) => Err(*code),
        };
        match decided {
            Ok(decision) => decisions.push(decision),
            Err(code) => {
                let mut view = host.filesystem();
                fs::HostDescriptor::drop(&mut view, new)?;
                return Ok((Err(code),));
            }
        }
    }
    // A `redact` obligation: the skill reads the file's content with what the detectors
    // find replaced, from a private copy.
    let obligations: Vec<cordon_types::Obligation> = decisions
        .iter()
        .flat_map(|d| d.obligations.iter().cloned())
        .collect();
    let redacted = match cordon_inspect::redact::Redaction::from_obligations(&obligations) {
        Ok(None) => Ok(()),
        Ok(Some(_)) if action != "read" => {
            tracing::info!(
                "skill denied {action} `{}`: the policy asks to redact, which only reading a file can carry out",
                target.display()
            );
            Err(ErrorCode::NotPermitted)
        }
        Ok(Some(redaction)) => host.redact_descriptor(&new, &redaction, &decisions[0], &target),
        Err(e) => {
            tracing::info!(
                "skill denied {action} `{}`: the policy's `redact` obligation cannot be carried out: {e}",
                target.display()
            );
            Err(ErrorCode::NotPermitted)
        }
    };
    if let Err(code) = redacted {
        let mut view = host.filesystem();
        fs::HostDescriptor::drop(&mut view, new)?;
        return Ok((Err(code),));
    }
    Ok((Ok(new),))
}

/// The largest file a skill may read through a `redact` obligation.
const MAX_REDACTED_FILE: u64 = 16 << 20;

impl Host {
    /// The host path of the directory (or file) `fd` is, as the kernel names it now.
    pub(crate) fn descriptor_path(
        &mut self,
        fd: &Resource<Descriptor>,
    ) -> Result<PathBuf, ErrorCode> {
        let view = self.filesystem();
        let raw = match view.table.get(fd) {
            Ok(Descriptor::Dir(dir)) => dir.dir.as_raw_fd(),
            Ok(Descriptor::File(file)) => file.file.as_raw_fd(),
            Err(_) => return Err(ErrorCode::BadDescriptor),
        };
        std::fs::read_link(format!("/proc/self/fd/{raw}")).map_err(|err| {
            tracing::error!(
                "cannot tell which directory a skill's descriptor is (is /proc mounted?): {err}"
            );
            ErrorCode::Access
        })
    }

    /// Replaces the file `fd` opened (for reading) by a private, unnamed copy of its
    /// content with every finding of `redaction` replaced. A file larger than
    /// [`MAX_REDACTED_FILE`], or one holding what the policy blocks, is refused (the
    /// refusal recorded through the gate).
    fn redact_descriptor(
        &mut self,
        fd: &Resource<Descriptor>,
        redaction: &cordon_inspect::redact::Redaction,
        decision: &cordon_types::Decision,
        target: &Path,
    ) -> Result<(), ErrorCode> {
        use std::io::{Read, Seek, Write};
        let file = match self.filesystem().table.get(fd) {
            Ok(Descriptor::File(file)) => std::sync::Arc::clone(&file.file),
            _ => return Err(ErrorCode::NotPermitted),
        };
        let resource = json!({"path": target.to_string_lossy()});
        let refuse = |host: &Host, reason: String| {
            host.gate
                .cut("file", "read", resource.clone(), decision, &reason);
            ErrorCode::NotPermitted
        };
        let mut content = Vec::new();
        (&*file)
            .take(MAX_REDACTED_FILE + 1)
            .read_to_end(&mut content)
            .map_err(|_| ErrorCode::Io)?;
        if content.len() as u64 > MAX_REDACTED_FILE {
            return Err(refuse(
                self,
                format!("the policy asks to redact `{}`, which is larger than the {MAX_REDACTED_FILE} bytes cordon inspects; refused", target.display()),
            ));
        }
        let redacted = match redaction.apply(&content, cordon_inspect::redact::Encoding::Plain) {
            Ok(redacted) => redacted,
            Err(blocked) => {
                return Err(refuse(
                    self,
                    format!("`{}`: {blocked}; refused", target.display()),
                ))
            }
        };
        let mut copy = tempfile::tempfile().map_err(|_| ErrorCode::Io)?;
        copy.write_all(&redacted.data).map_err(|_| ErrorCode::Io)?;
        copy.rewind().map_err(|_| ErrorCode::Io)?;
        let view = self.filesystem();
        let entry = view
            .table
            .get_mut(fd)
            .map_err(|_| ErrorCode::BadDescriptor)?;
        *entry = Descriptor::File(wasmtime_wasi::filesystem::File::new(
            copy,
            wasmtime_wasi::FsPerms::ReadOnly,
            OpenMode::READ,
            true,
        ));
        Ok(())
    }

    /// Whether the descriptor `fd` was opened so that it can change what it is.
    fn opened_for_writing(&mut self, fd: &Resource<Descriptor>) -> bool {
        let view = self.filesystem();
        match view.table.get(fd) {
            Ok(Descriptor::Dir(dir)) => dir.open_mode.contains(OpenMode::WRITE),
            Ok(Descriptor::File(file)) => file.open_mode.contains(OpenMode::WRITE),
            Err(_) => true,
        }
    }

    /// The host path that `path`, relative to the descriptor `fd`, reaches.
    pub(crate) fn path_at(
        &mut self,
        fd: &Resource<Descriptor>,
        path: &str,
        follow: bool,
    ) -> Result<PathBuf, ErrorCode> {
        let base = self.descriptor_path(fd)?;
        Ok(resolve(&base, Path::new(path), follow))
    }

    /// Decides `action` on what `path` (relative to `fd`) reaches.
    fn decide_at(
        &mut self,
        fd: &Resource<Descriptor>,
        path: &str,
        follow: bool,
        action: &str,
        mode: Value,
    ) -> Result<(), ErrorCode> {
        let target = self.path_at(fd, path, follow)?;
        self.decide_path(&target, action, mode)
    }

    /// Decides `action` on the host path `target` under `data.cordon.file`, for a call that
    /// returns no content: an allowance that asks for redaction cannot be carried out there
    /// and is refused.
    fn decide_path(&mut self, target: &Path, action: &str, mode: Value) -> Result<(), ErrorCode> {
        let decision = self.decide_path_with(target, action, mode)?;
        if decision.obligations.iter().any(|o| o.kind() == "redact") {
            tracing::info!(
                "skill denied {action} `{}`: the policy asks to redact, which only reading a file can carry out",
                target.display()
            );
            return Err(ErrorCode::NotPermitted);
        }
        Ok(())
    }

    /// Decides `action` on the host path `target` under `data.cordon.file`; the allowance,
    /// with its obligations.
    fn decide_path_with(
        &mut self,
        target: &Path,
        action: &str,
        mode: Value,
    ) -> Result<cordon_types::Decision, ErrorCode> {
        let meta = std::fs::symlink_metadata(target).ok();
        let mut resource = json!({
            "path": target.to_string_lossy(),
            "mode": mode,
            "exists": meta.is_some(),
        });
        if let Some(meta) = &meta {
            use std::os::unix::fs::MetadataExt;
            let kind = if meta.is_dir() {
                "directory"
            } else if meta.is_symlink() {
                "link"
            } else if meta.is_file() {
                "file"
            } else {
                "other"
            };
            resource["kind"] = json!(kind);
            resource["size"] = json!(meta.len());
            // A file with more than one name may be a second name for one the policy
            // refuses by its path.
            resource["links"] = json!(meta.nlink());
        }
        let decision = self.gate.decide("file", action, resource);
        if decision.allow {
            Ok(decision)
        } else {
            tracing::info!(
                "skill denied {action} `{}`: {}",
                target.display(),
                decision.reasons.join("; ")
            );
            Err(ErrorCode::NotPermitted)
        }
    }
}

/// The path `rel`, relative to the directory `base`, reaches: links in the existing part
/// followed and `..` taken as the kernel takes them (after the link before it), the
/// missing rest folded. The last component is followed only when `follow` is set.
pub(crate) fn resolve(base: &Path, rel: &Path, follow: bool) -> PathBuf {
    let joined = base.join(rel);
    let (parent, last) = match (joined.parent(), joined.file_name()) {
        (Some(parent), Some(last)) if !follow => (parent.to_path_buf(), Some(last.to_owned())),
        _ => (joined.clone(), None),
    };
    let mut resolved = deepest_existing(&parent);
    if let Some(last) = last {
        resolved.push(last);
    }
    resolved
}

/// `path` with its longest existing prefix canonicalised and the rest folded.
fn deepest_existing(path: &Path) -> PathBuf {
    let components: Vec<Component<'_>> = path.components().collect();
    for split in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        if let Ok(real) = std::fs::canonicalize(&prefix) {
            let mut out = real;
            for component in &components[split..] {
                match component {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::Normal(name) => out.push(name),
                    _ => {}
                }
            }
            return out;
        }
    }
    cordon_types::normalize_path(path)
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::path::Path;

    #[test]
    fn paths_are_resolved_as_the_kernel_would() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        fs_err::create_dir_all(root.join("a/b")).unwrap();
        fs_err::create_dir_all(root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("out"), root.join("a/link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("a/file-link")).unwrap();

        let a = root.join("a");
        assert_eq!(resolve(&a, Path::new("b/../x"), true), root.join("a/x"));
        assert_eq!(
            resolve(&a, Path::new("../../etc/passwd"), true),
            root.parent().unwrap().join("etc/passwd")
        );
        // `..` after a link goes up from where the link leads.
        assert_eq!(
            resolve(&a, Path::new("link/../secret"), true),
            root.join("secret")
        );
        assert_eq!(
            resolve(&a, Path::new("link/new/deeper"), true),
            root.join("out/new/deeper")
        );
        assert_eq!(
            resolve(&a, Path::new("file-link"), true),
            Path::new("/etc/hostname")
        );
        assert_eq!(
            resolve(&a, Path::new("file-link"), false),
            root.join("a/file-link")
        );
        assert_eq!(
            resolve(&a, Path::new("/etc/shadow"), true),
            Path::new("/etc/shadow")
        );
    }
}
