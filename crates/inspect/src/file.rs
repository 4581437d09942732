//! Files: opening one safely for inspection, its sensitivity label, and classification.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cordon_types::Sensitivity;
use serde::Serialize;

use crate::{Detector, Kind};

/// The extended attribute that holds a file's sensitivity label.
pub const LABEL_XATTR: &str = "user.cordon.sensitivity";

/// Opens `path` for reading if it is a regular file: without blocking on a FIFO or device
/// planted in its place, without becoming the controlling terminal, and checked on the
/// descriptor (what is read is what was checked).
///
/// # Errors
///
/// The open error, or `InvalidInput` when it is not a regular file.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            rustix::fs::OFlags::NONBLOCK.bits() as i32 | rustix::fs::OFlags::NOCTTY.bits() as i32,
        )
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Why a label could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// The attribute could not be read.
    #[error("cannot read `{LABEL_XATTR}`")]
    Read(#[source] io::Error),
    /// The attribute holds something that is not a sensitivity.
    #[error("`{LABEL_XATTR}` holds `{value}`, not public, internal, confidential or restricted")]
    Invalid {
        /// What it holds, made printable.
        value: String,
    },
}

/// The label `file` carries, if any. A file system without extended attributes carries none.
///
/// # Errors
///
/// A [`LabelError`] for an attribute that cannot be read or is not a sensitivity.
pub fn read_label(file: &File) -> Result<Option<Sensitivity>, LabelError> {
    let mut buf = [0u8; 64];
    match rustix::fs::fgetxattr(file, LABEL_XATTR, &mut buf) {
        Ok(n) => {
            let value = String::from_utf8_lossy(&buf[..n]);
            value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| LabelError::Invalid {
                    value: cordon_types::printable(&value),
                })
        }
        Err(e) if e == rustix::io::Errno::NODATA || e == rustix::io::Errno::NOTSUP => Ok(None),
        Err(e) if e == rustix::io::Errno::RANGE => Err(LabelError::Invalid {
            value: "a value longer than 64 bytes".into(),
        }),
        Err(e) => Err(LabelError::Read(e.into())),
    }
}

/// Sets the label of the regular file at `path`, or removes it with `None`.
///
/// # Errors
///
/// The open or attribute error (a file system without user extended attributes says
/// `Unsupported`).
pub fn write_label(path: &Path, label: Option<Sensitivity>) -> io::Result<()> {
    let file = open_regular(path)?;
    let result = match label {
        Some(label) => rustix::fs::fsetxattr(
            &file,
            LABEL_XATTR,
            label.as_str().as_bytes(),
            rustix::fs::XattrFlags::empty(),
        ),
        None => match rustix::fs::fremovexattr(&file, LABEL_XATTR) {
            Err(e) if e == rustix::io::Errno::NODATA => Ok(()),
            other => other,
        },
    };
    result.map_err(io::Error::from)
}

/// Where a file's sensitivity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Its `user.cordon.sensitivity` attribute.
    Label,
    /// A path rule of the policy.
    Path,
    /// What was found in it.
    Content,
    /// Nothing said anything: the default, internal.
    Default,
}

impl Source {
    /// The name the input document uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Label => "label",
            Source::Path => "path",
            Source::Content => "content",
            Source::Default => "default",
        }
    }
}

/// A file's sensitivity, where it came from, and what its content holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// The sensitivity.
    pub sensitivity: Sensitivity,
    /// Where it came from.
    pub source: Source,
    /// Findings by kind (never their values); empty when the content was not read.
    pub findings: BTreeMap<Kind, u64>,
    /// Bytes of content read.
    pub bytes: u64,
    /// The content looked binary and was not searched.
    pub binary: bool,
    /// The file was longer than the limit and only its start was searched.
    pub truncated: bool,
    /// Why the content or label could not be read, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A path rule: files matching `glob` have `level` (the first rule that matches wins).
#[derive(Debug, Clone)]
pub struct PathRule {
    glob: globset::GlobMatcher,
    level: Sensitivity,
}

impl PathRule {
    /// A rule for `glob` (`~/` is the home directory; `**` crosses directories).
    ///
    /// # Errors
    ///
    /// A message naming the glob when it does not parse.
    pub fn new(glob: &str, level: Sensitivity, home: Option<&Path>) -> Result<Self, String> {
        let expanded = match (glob.strip_prefix("~/"), home) {
            (Some(rest), Some(home)) => format!("{}/{rest}", home.display()),
            _ => glob.to_owned(),
        };
        let glob = globset::GlobBuilder::new(&expanded)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("path rule `{glob}`: {e}"))?
            .compile_matcher();
        Ok(Self { glob, level })
    }
}

/// How files are classified: path rules, levels per kind, how much content is read.
#[derive(Debug)]
pub struct Classifier {
    rules: Vec<PathRule>,
    levels: BTreeMap<Kind, Sensitivity>,
    max_bytes: u64,
    binary: bool,
    /// By file and the path it was reached by (a path rule depends on the path, and one
    /// file may have several).
    cache: Mutex<HashMap<CacheKey, (Stamp, Classification)>>,
}

/// A file (device, inode) and the path it was reached by.
type CacheKey = (u64, u64, PathBuf);

/// What identifies one version of a file's content and label.
type Stamp = (u64, i64, i64, i64, i64);

impl Classifier {
    /// How many classifications are kept for unchanged files.
    const CACHED: usize = 4096;

    /// A classifier with `rules`, kinds at their [`Kind::default_sensitivity`] unless
    /// `levels` says otherwise, reading at most `max_bytes` of each file; binary content is
    /// searched only with `binary`.
    pub fn new(
        rules: Vec<PathRule>,
        levels: BTreeMap<Kind, Sensitivity>,
        max_bytes: u64,
        binary: bool,
    ) -> Self {
        Self {
            rules,
            levels,
            max_bytes,
            binary,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn level_of(&self, kind: Kind) -> Sensitivity {
        self.levels
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.default_sensitivity())
    }

    /// Classifies the file at `path` (absolute, links resolved): its label, else the first
    /// path rule that matches, else the highest level of what its content holds. A path that
    /// is not a regular file, or does not exist, is classified by its path alone.
    pub fn classify(&self, detector: &Detector, path: &Path) -> Classification {
        let by_path = self
            .rules
            .iter()
            .find(|r| r.glob.is_match(path))
            .map(|r| r.level);
        let mut result = Classification {
            sensitivity: by_path.unwrap_or_default(),
            source: if by_path.is_some() {
                Source::Path
            } else {
                Source::Default
            },
            findings: BTreeMap::new(),
            bytes: 0,
            binary: false,
            truncated: false,
            error: None,
        };
        let file = match open_regular(path) {
            Ok(file) => file,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::InvalidInput =>
            {
                return result
            }
            Err(e) => {
                result.error = Some(format!("cannot open: {e}"));
                return result;
            }
        };
        let stamp = match file.metadata() {
            Ok(m) => (
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ),
            Err(e) => {
                result.error = Some(format!("cannot stat: {e}"));
                return result;
            }
        };
        let (dev, ino) = file
            .metadata()
            .map(|m| (m.dev(), m.ino()))
            .unwrap_or_default();
        let key = (dev, ino, path.to_path_buf());
        if let Some(cached) = self.cache.lock().ok().and_then(|c| {
            c.get(&key)
                .filter(|(s, _)| *s == stamp)
                .map(|(_, c)| c.clone())
        }) {
            return cached;
        }
        match read_label(&file) {
            Ok(Some(label)) => {
                result.sensitivity = label;
                result.source = Source::Label;
            }
            Ok(None) => {}
            Err(e) => result.error = Some(e.to_string()),
        }
        let mut findings = BTreeMap::new();
        let mut reader = &file;
        match crate::scan_reader(
            detector,
            &mut reader,
            Some(self.max_bytes),
            self.binary,
            &mut |f| {
                *findings.entry(f.finding.kind).or_insert(0) += 1;
            },
        ) {
            Ok(summary) => {
                result.bytes = summary.bytes;
                result.binary = summary.binary && !self.binary;
                result.truncated = summary.truncated;
            }
            Err(e) => result.error = Some(format!("cannot read: {e}")),
        }
        if result.source == Source::Default {
            if let Some(level) = findings.keys().map(|&k| self.level_of(k)).max() {
                if level > result.sensitivity {
                    result.sensitivity = level;
                    result.source = Source::Content;
                }
            }
        }
        result.findings = findings;
        if result.error.is_none() {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= Self::CACHED {
                    cache.clear();
                }
                cache.insert(key, (stamp, result.clone()));
            }
        }
        result
    }
}

/// How [`scan_tree`] reads a tree.
#[derive(Debug, Clone, Default)]
pub struct TreeOptions {
    /// Read files `.gitignore` and `.ignore` leave out.
    pub no_ignore: bool,
    /// Follow symbolic links (loops are reported, not entered).
    pub follow: bool,
    /// Search binary files too.
    pub binary: bool,
    /// Read at most this much of each file.
    pub max_filesize: Option<u64>,
}

/// One finding of a tree scan, with a masked excerpt.
#[derive(Debug, Clone, Serialize)]
pub struct FileFinding {
    /// The file.
    pub path: PathBuf,
    /// What was found where.
    #[serde(flatten)]
    pub finding: crate::Finding,
    /// The line, masked.
    pub excerpt: String,
}

/// What a tree scan found and read.
#[derive(Debug, Default, Serialize)]
pub struct TreeReport {
    /// Findings, by path then position; at most [`TreeReport::KEPT`].
    pub findings: Vec<FileFinding>,
    /// Findings beyond those kept.
    pub more: u64,
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Binary files not searched.
    pub binary: u64,
    /// Files longer than the limit, searched only up to it.
    pub truncated: u64,
    /// Paths that could not be read, and why.
    pub errors: Vec<(PathBuf, String)>,
}

impl TreeReport {
    /// How many findings a report keeps; the rest are counted.
    pub const KEPT: usize = 100_000;
}

/// Counters a caller may read while a scan runs, for a progress line.
#[derive(Debug, Default)]
pub struct Progress {
    /// Files read so far.
    pub files: std::sync::atomic::AtomicU64,
    /// Bytes read so far.
    pub bytes: std::sync::atomic::AtomicU64,
}

/// Scans the files under `roots` (files or folders) on every core: `.gitignore` and
/// `.ignore` respected unless [`TreeOptions::no_ignore`], hidden files read but not `.git`,
/// links followed only with [`TreeOptions::follow`].
/// A file that cannot be read is reported and the scan goes on; memory is bounded by the
/// findings kept, whatever the files' sizes.
pub fn scan_tree(
    detector: &Detector,
    roots: &[PathBuf],
    options: &TreeOptions,
    progress: &Progress,
) -> TreeReport {
    use std::sync::atomic::Ordering::Relaxed;
    // A scan of some kinds still masks every kind in what it prints.
    let masker = Detector::standard()
        .ok()
        .filter(|standard| !std::ptr::eq(*standard, detector));
    let report = Mutex::new(TreeReport::default());
    let note_error = |path: PathBuf, why: String| {
        if let Ok(mut r) = report.lock() {
            r.errors.push((path, why));
        }
    };
    walk(roots, options.no_ignore, options.follow).run(|| {
        Box::new(|entry| {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let path = match &e {
                        ignore::Error::WithPath { path, .. } => path.clone(),
                        _ => PathBuf::new(),
                    };
                    note_error(path, e.to_string());
                    return ignore::WalkState::Continue;
                }
            };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                return ignore::WalkState::Continue;
            }
            let path = entry.into_path();
            let file = match open_regular(&path) {
                Ok(file) => file,
                Err(e) => {
                    note_error(path, e.to_string());
                    return ignore::WalkState::Continue;
                }
            };
            // What the file holds when it is opened: one that grows meanwhile is read up to
            // there.
            // (A file that says it is empty, as those of /proc do, is read to its end.)
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let limit = match (size, options.max_filesize) {
                (0, max) => max,
                (size, max) => Some(max.map_or(size, |max| max.min(size))),
            };
            let mut found = Vec::new();
            let mut more = 0u64;
            let mut reader = &file;
            let result = crate::scan_reader_masking(
                detector,
                masker,
                &mut reader,
                limit,
                options.binary,
                &mut |f| {
                    if found.len() < TreeReport::KEPT {
                        found.push((f.finding, f.excerpt()));
                    } else {
                        more += 1;
                    }
                },
            );
            let Ok(mut r) = report.lock() else {
                return ignore::WalkState::Quit;
            };
            match result {
                Ok(summary) => {
                    r.files += 1;
                    r.bytes += summary.bytes;
                    r.binary += u64::from(summary.binary && !options.binary);
                    r.truncated += u64::from(summary.truncated);
                    progress.files.fetch_add(1, Relaxed);
                    progress.bytes.fetch_add(summary.bytes, Relaxed);
                }
                Err(e) => r.errors.push((path.clone(), format!("read failed: {e}"))),
            }
            r.more += more;
            for (finding, excerpt) in found {
                if r.findings.len() < TreeReport::KEPT {
                    r.findings.push(FileFinding {
                        path: path.clone(),
                        finding,
                        excerpt,
                    });
                } else {
                    r.more += 1;
                }
            }
            ignore::WalkState::Continue
        })
    });
    let mut report = report
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    report.findings.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then(a.finding.start.cmp(&b.finding.start))
    });
    report.errors.sort();
    report
}

/// The paths of `roots` a scan reads: files and folders, `.gitignore` and `.ignore`
/// respected unless `no_ignore`, hidden files included (`.env` is where secrets are) but
/// not `.git`, links not followed unless `follow` (loops are then reported, not entered).
fn walk(roots: &[PathBuf], no_ignore: bool, follow: bool) -> ignore::WalkParallel {
    let mut builder =
        ignore::WalkBuilder::new(roots.first().map_or(Path::new("."), |p| p.as_path()));
    for root in roots.iter().skip(1) {
        builder.add(root);
    }
    builder
        .hidden(false)
        .follow_links(follow)
        .git_ignore(!no_ignore)
        .git_global(!no_ignore)
        .git_exclude(!no_ignore)
        .ignore(!no_ignore)
        .parents(!no_ignore)
        .require_git(false)
        .filter_entry(|entry| entry.file_name() != ".git")
        .threads(std::thread::available_parallelism().map_or(2, |n| n.get().min(8)));
    builder.build_parallel()
}
