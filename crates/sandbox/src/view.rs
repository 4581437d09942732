//! Carries out a [`Plan`](crate::plan::Plan) inside a new mount namespace.
//!
//! The way is bubblewrap's: a tmpfs becomes the root and the host's root is moved under
//! `/oldroot` while the new root is assembled under `/newroot`; then `/newroot` becomes `/`
//! and the host's root is detached. The granted trees are not looked up here: they arrive
//! as detached mounts opened before the namespace's processes took their ids (see
//! [`crate::ids`]), and are attached in the plan's order.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use cordon_sys::process::{
    attach_mount_tree, make_nosuid_recursive, make_read_only_recursive, mount, pivot_root,
    unmount_detached,
};

use crate::plan::MountOp;

const BASE: &str = "/tmp";
const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";
/// A read-only tmpfs holding an empty file and an empty directory; a bind mount of either
/// is read-only too, so one mount hides one secret.
const MASKS: &str = "/masks";
const EMPTY_FILE: &str = "/masks/file";
const EMPTY_DIR: &str = "/masks/dir";

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Parts of `/proc` that reach past the sandbox's namespaces (global sysctls, the magic
/// SysRq key, interrupt and bus settings, file system tunables): read-only, as runc and
/// bubblewrap make them.
const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// A failed step: what was being done, and the kernel's answer.
pub(crate) type ViewError = String;

fn step<T>(what: impl FnOnce() -> String, result: std::io::Result<T>) -> Result<T, ViewError> {
    result.map_err(|e| format!("{}: {e}", what()))
}

fn inside(root: &str, path: &Path) -> PathBuf {
    let relative = path.strip_prefix("/").unwrap_or(path);
    Path::new(root).join(relative)
}

fn bind(source: &Path, target: &Path) -> Result<(), ViewError> {
    step(
        || format!("cannot bind `{}`", source.display()),
        mount(
            Some(source),
            target,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        ),
    )
}

/// Hides `path` under `source` (an empty file or directory). A path this process may not
/// even look up (a directory on the way it cannot search: cordon run as root, a 0700
/// directory of root's, which the sandbox's identity is not) is left as it is: the program
/// runs as the same identity with fewer rights, so it cannot reach it either.
fn mask(source: &Path, path: &Path) -> Result<(), ViewError> {
    let target = inside(NEW, path);
    match mount(
        Some(source),
        &target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    ) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EACCES) => Ok(()),
        Err(err) => Err(format!(
            "cannot hide `{}` (binding `{}`): {err}",
            path.display(),
            source.display()
        )),
    }
}

fn tmpfs(target: &Path, mode: u32, extra_flags: libc::c_ulong) -> Result<(), ViewError> {
    step(
        || format!("cannot mount a tmpfs on `{}`", target.display()),
        mount(
            Some(Path::new("tmpfs")),
            target,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV | extra_flags,
            Some(&format!("mode={mode:o}")),
        ),
    )
}

fn mkdir_all(path: &Path) -> Result<(), ViewError> {
    step(
        || format!("cannot create `{}`", path.display()),
        fs_err::create_dir_all(path),
    )
}

/// Creates an empty directory (or file, unless `dir`) at `target` to mount on.
fn mount_point(dir: bool, target: &Path) -> Result<(), ViewError> {
    if fs_err::symlink_metadata(target).is_ok() {
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        mkdir_all(parent)?;
    }
    if dir {
        mkdir_all(target)
    } else {
        step(
            || format!("cannot create `{}`", target.display()),
            fs_err::File::create(target).map(drop),
        )
    }
}

/// Builds the view and makes it the root of the calling process's mount namespace, with
/// `cwd` as the working directory. `trees` holds the detached tree of each
/// [`MountOp::Bind`], in order.
pub(crate) fn build(ops: &[MountOp], trees: Vec<OwnedFd>, cwd: &Path) -> Result<(), ViewError> {
    let root = Path::new("/");
    step(
        || "cannot make the mount tree private".into(),
        mount(None, root, None, libc::MS_REC | libc::MS_PRIVATE, None),
    )?;
    let base = Path::new(BASE);
    tmpfs(base, 0o755, 0)?;
    step(
        || format!("cannot enter `{BASE}`"),
        std::env::set_current_dir(base),
    )?;
    mkdir_all(Path::new("newroot"))?;
    mkdir_all(Path::new("oldroot"))?;
    step(
        || "cannot switch to the sandbox's root".into(),
        pivot_root(Path::new("."), Path::new("oldroot")),
    )?;
    step(
        || "cannot enter the sandbox's root".into(),
        std::env::set_current_dir(root),
    )?;
    let masks = Path::new(MASKS);
    mkdir_all(masks)?;
    tmpfs(masks, 0o755, 0)?;
    step(
        || "cannot create the masks".into(),
        fs_err::write(EMPTY_FILE, b"").and_then(|()| fs_err::create_dir(EMPTY_DIR)),
    )?;
    step(
        || "cannot make the masks read-only".into(),
        mount(
            None,
            masks,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        ),
    )?;
    let new = Path::new(NEW);
    tmpfs(new, 0o755, 0)?;
    let mut trees = trees.into_iter();
    for op in ops {
        apply(op, &mut trees)?;
    }
    // Nothing may be created at the top of the view.
    step(
        || "cannot make the sandbox's root read-only".into(),
        mount(
            None,
            new,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            None,
        ),
    )?;
    step(
        || "cannot detach the host's root".into(),
        unmount_detached(Path::new(OLD)),
    )?;
    step(
        || "cannot enter the new root".into(),
        std::env::set_current_dir(new),
    )?;
    step(
        || "cannot switch to the new root".into(),
        pivot_root(Path::new("."), Path::new(".")),
    )?;
    step(
        || "cannot detach the setup root".into(),
        unmount_detached(Path::new(".")),
    )?;
    step(
        || "cannot enter the new root".into(),
        std::env::set_current_dir(root),
    )?;
    step(
        || {
            format!(
                "the working directory `{}` is not visible inside the sandbox (grant it with --allow-read or --allow-write)",
                cwd.display()
            )
        },
        std::env::set_current_dir(cwd),
    )
}

fn apply(op: &MountOp, trees: &mut impl Iterator<Item = OwnedFd>) -> Result<(), ViewError> {
    match op {
        MountOp::Bind {
            path,
            writable,
            stage,
            ..
        } => {
            let tree = trees
                .next()
                .ok_or_else(|| format!("no tree was opened for `{}`", path.display()))?;
            let tree = std::fs::File::from(tree);
            let dir = step(
                || format!("cannot inspect `{}`", path.display()),
                tree.metadata(),
            )?
            .is_dir();
            let target = inside(NEW, path);
            mount_point(dir, &target)?;
            step(
                || format!("cannot attach `{}`", path.display()),
                attach_mount_tree(tree.as_fd(), &target),
            )?;
            let restrict = if *writable {
                make_nosuid_recursive(&target)
            } else {
                make_read_only_recursive(&target)
            };
            step(|| format!("cannot restrict `{}`", path.display()), restrict)?;
            match stage {
                Some(_) => {
                    let stage = trees
                        .next()
                        .ok_or_else(|| format!("no stage was opened for `{}`", path.display()))?;
                    if !dir {
                        return Err(format!(
                            "`{}` is not a directory: it cannot be staged",
                            path.display()
                        ));
                    }
                    overlay(&target, stage)
                }
                None => Ok(()),
            }
        }
        MountOp::Tmpfs { path, mode } => {
            let target = inside(NEW, path);
            mkdir_all(&target)?;
            tmpfs(&target, *mode, 0)
        }
        MountOp::Dir { path, mode } => {
            let target = inside(NEW, path);
            mkdir_all(&target)?;
            step(
                || format!("cannot set the mode of `{}`", path.display()),
                fs_err::set_permissions(
                    &target,
                    std::os::unix::fs::PermissionsExt::from_mode(*mode),
                ),
            )
        }
        MountOp::Symlink { path, target } => {
            let link = inside(NEW, path);
            if let Some(parent) = link.parent() {
                mkdir_all(parent)?;
            }
            step(
                || format!("cannot create the link `{}`", path.display()),
                fs_err::os::unix::fs::symlink(target, &link),
            )
        }
        MountOp::Proc => {
            let target = inside(NEW, Path::new("/proc"));
            mkdir_all(&target)?;
            step(
                || "cannot mount a /proc for the sandbox".into(),
                mount(
                    Some(Path::new("proc")),
                    &target,
                    Some("proc"),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    None,
                ),
            )?;
            for name in PROC_READ_ONLY {
                let part = target.join(name);
                if fs_err::symlink_metadata(&part).is_err() {
                    continue;
                }
                bind(&part, &part)?;
                step(
                    || format!("cannot make /proc/{name} read-only"),
                    make_read_only_recursive(&part),
                )?;
            }
            Ok(())
        }
        MountOp::Dev => dev(),
        MountOp::MaskFile { path } => mask(Path::new(EMPTY_FILE), path),
        MountOp::MaskDir { path } => mask(Path::new(EMPTY_DIR), path),
        MountOp::Pin { path } => {
            let target = inside(NEW, path);
            bind(&target, &target)
        }
        MountOp::Protect { path } => {
            let target = inside(NEW, path);
            bind(&target, &target)?;
            step(
                || format!("cannot make `{}` read-only", path.display()),
                make_read_only_recursive(&target),
            )
        }
    }
}

/// Where stages are attached: in the setup root, outside the program's view.
const STAGES: &str = "/stages";

/// Puts an overlay on the tree attached at `target`: the tree below, read-only to it, and
/// the stage (a detached tree, attached under [`STAGES`] where the program never sees it)
/// taking every write in its `upper/`.
fn overlay(target: &Path, stage: OwnedFd) -> Result<(), ViewError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let at = Path::new(STAGES).join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
    mount_point(true, &at)?;
    step(
        || format!("cannot attach the stage of `{}`", target.display()),
        attach_mount_tree(stage.as_fd(), &at),
    )?;
    let (upper, work) = (at.join("upper"), at.join("work"));
    let text = target.to_string_lossy();
    if text.contains([',', ':', '\\', '\n']) {
        return Err(format!(
            "cannot stage `{}`: overlayfs cannot name a path holding `,`, `:` or `\\`",
            target.strip_prefix(NEW).unwrap_or(target).display()
        ));
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        target.display(),
        upper.display(),
        work.display()
    );
    step(
        || {
            format!(
                "cannot stage the writes to `/{}` (overlayfs in a user namespace needs Linux 5.11 and a file system for the journal that can hold an overlay's upper directory; run without `--stage`)",
                target.strip_prefix(NEW).unwrap_or(target).display()
            )
        },
        mount(
            Some(Path::new("overlay")),
            target,
            Some("overlay"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&options),
        ),
    )
}

fn dev() -> Result<(), ViewError> {
    let dev = inside(NEW, Path::new("/dev"));
    mkdir_all(&dev)?;
    tmpfs(&dev, 0o755, libc::MS_NOEXEC)?;
    for name in DEVICES {
        let source = Path::new(OLD).join("dev").join(name);
        let target = dev.join(name);
        mount_point(false, &target)?;
        bind(&source, &target)?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        step(
            || format!("cannot create /dev/{link}"),
            fs_err::os::unix::fs::symlink(target, dev.join(link)),
        )?;
    }
    let pts = dev.join("pts");
    mkdir_all(&pts)?;
    step(
        || "cannot mount a private /dev/pts".into(),
        mount(
            Some(Path::new("devpts")),
            &pts,
            Some("devpts"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620"),
        ),
    )?;
    let shm = dev.join("shm");
    mkdir_all(&shm)?;
    tmpfs(&shm, 0o1777, 0)
}
