//! Streams: a [`Scanner`] searches data that arrives in pieces, in blocks of bounded size.

use std::io::Read;

use crate::{Detector, Finding};

/// How much a scanner searches at once.
const BLOCK: usize = 1 << 20;

/// How far one block's search reaches into the next: findings up to this long are found
/// whole wherever the block boundaries fall.
pub const OVERLAP: usize = 32 << 10;

/// How much of the start of a file [`looks_binary`] looks at.
pub const BINARY_PROBE: usize = 8 << 10;

/// Whether data that starts with `prefix` is binary: a NUL byte in its first
/// [`BINARY_PROBE`] bytes, as git and ripgrep decide.
pub fn looks_binary(prefix: &[u8]) -> bool {
    memchr::memchr(0, &prefix[..prefix.len().min(BINARY_PROBE)]).is_some()
}

/// Counts lines up to increasing positions of one haystack.
#[derive(Debug)]
pub(crate) struct LineCounter {
    pos: usize,
    line: u64,
}

impl Default for LineCounter {
    fn default() -> Self {
        Self::starting(1)
    }
}

impl LineCounter {
    fn starting(line: u64) -> Self {
        Self { pos: 0, line }
    }

    /// The line `at` is on; positions must not decrease.
    pub(crate) fn line_at(&mut self, hay: &[u8], at: usize) -> u64 {
        let at = at.min(hay.len()).max(self.pos);
        self.line += memchr::memchr_iter(b'\n', &hay[self.pos..at]).count() as u64;
        self.pos = at;
        self.line
    }
}

/// Searches a stream given in pieces of any size. Memory stays under about a megabyte
/// whatever the stream's length; a finding up to [`OVERLAP`] bytes long is found whole
/// across piece and block boundaries, and none is reported twice.
#[derive(Debug)]
pub struct Scanner<'d> {
    detector: &'d Detector,
    /// Findings masked in excerpts though not reported (what the standard rules find when
    /// `detector` runs only some).
    masker: Option<&'d Detector>,
    /// Findings of the last block that run on into this one: masked in its excerpts.
    carried: Vec<Finding>,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Line number at `buf[0]`.
    line: u64,
    /// Findings are not reported before this stream offset (the end of the last one).
    reported_to: u64,
}

impl<'d> Scanner<'d> {
    /// A scanner at the start of a stream.
    pub fn new(detector: &'d Detector) -> Self {
        Self {
            detector,
            masker: None,
            carried: Vec::new(),
            buf: Vec::new(),
            base: 0,
            line: 1,
            reported_to: 0,
        }
    }

    /// The same scanner masking, in its excerpts, everything `masker` finds too (scans that
    /// report only some kinds must not print the others).
    #[must_use]
    pub fn masking(mut self, masker: &'d Detector) -> Self {
        self.masker = Some(masker);
        self
    }

    /// Adds `data` to the stream, calling `found` for each finding now complete.
    pub fn push(&mut self, mut data: &[u8], found: &mut dyn FnMut(&Found<'_>)) {
        while !data.is_empty() {
            let room = (BLOCK + OVERLAP).saturating_sub(self.buf.len()).max(1);
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() >= BLOCK + OVERLAP {
                self.flush(false, found);
            }
        }
    }

    /// Ends the stream, calling `found` for the findings left; returns the stream's length.
    pub fn finish(mut self, found: &mut dyn FnMut(&Found<'_>)) -> u64 {
        self.flush(true, found);
        self.base + self.buf.len() as u64
    }

    fn flush(&mut self, last: bool, found: &mut dyn FnMut(&Found<'_>)) {
        let owned = if last {
            self.buf.len()
        } else {
            self.buf.len() - OVERLAP
        };
        let (base, buf) = (self.base, &self.buf);
        let all = findings_in(self.detector, buf, base, self.line);
        // What excerpts mask: these findings, the masker's, and the last block's that run
        // into this one; sorted by start.
        let mut masked: Vec<Finding> = self
            .carried
            .iter()
            .filter(|f| f.end > base)
            .copied()
            .chain(all.iter().copied())
            .collect();
        if let Some(masker) = self.masker {
            masked.extend(findings_in(masker, buf, base, self.line));
        }
        masked.sort_by_key(|f| f.start);
        for finding in &all {
            if finding.start < self.reported_to || finding.start >= self.base + owned as u64 {
                continue;
            }
            found(&Found {
                finding: *finding,
                detector: self.detector,
                buf: &self.buf,
                base: self.base,
                all: &masked,
            });
            self.reported_to = finding.end;
        }
        let next_base = self.base + owned as u64;
        self.carried = masked.into_iter().filter(|f| f.end > next_base).collect();
        if !last {
            self.line += memchr::memchr_iter(b'\n', &self.buf[..owned]).count() as u64;
            self.buf.drain(..owned);
            self.base += owned as u64;
        }
    }
}

/// What `detector` finds in `buf`, which starts at stream offset `base` on line `line`.
pub(crate) fn findings_in(detector: &Detector, buf: &[u8], base: u64, line: u64) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut lines = LineCounter::starting(line);
    detector.each(buf, |rule, kind, v| {
        found.push(Finding {
            kind,
            rule,
            start: base + v.start as u64,
            end: base + v.end as u64,
            line: lines.line_at(buf, v.start),
            confidence: v.confidence,
        });
    });
    found
}

/// A finding as a [`Scanner`] reports it, with what is needed to show it masked.
#[derive(Debug)]
pub struct Found<'a> {
    /// The finding.
    pub finding: Finding,
    detector: &'a Detector,
    buf: &'a [u8],
    base: u64,
    all: &'a [Finding],
}

impl Found<'_> {
    /// The line around the finding, masked ([`crate::excerpt`]).
    pub fn excerpt(&self) -> String {
        crate::excerpt(self.detector, self.buf, self.base, &self.finding, self.all)
    }
}

/// What a scan of one stream saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes read.
    pub bytes: u64,
    /// The stream looked binary (and was not searched unless asked).
    pub binary: bool,
    /// The stream was longer than the limit; the rest was not read.
    pub truncated: bool,
}

/// Scans what `reader` gives, up to `limit` bytes: a binary stream ([`looks_binary`]) is
/// searched only with `binary`. Calls `found` for each finding.
///
/// # Errors
///
/// A read error; the findings reported before it stand.
pub fn scan_reader(
    detector: &Detector,
    reader: &mut dyn Read,
    limit: Option<u64>,
    binary: bool,
    found: &mut dyn FnMut(&Found<'_>),
) -> std::io::Result<Summary> {
    scan_reader_masking(detector, None, reader, limit, binary, found)
}

/// As [`scan_reader`], masking in excerpts what `masker` finds too ([`Scanner::masking`]).
///
/// # Errors
///
/// As [`scan_reader`].
pub fn scan_reader_masking(
    detector: &Detector,
    masker: Option<&Detector>,
    reader: &mut dyn Read,
    limit: Option<u64>,
    binary: bool,
    found: &mut dyn FnMut(&Found<'_>),
) -> std::io::Result<Summary> {
    let mut scanner = Scanner::new(detector);
    if let Some(masker) = masker {
        scanner = scanner.masking(masker);
    }
    let mut summary = Summary::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut first = true;
    loop {
        let want = match limit {
            Some(limit) => {
                let left = limit.saturating_sub(summary.bytes);
                if left == 0 {
                    // One more byte says whether anything was left unread.
                    let mut probe = [0u8; 1];
                    summary.truncated = read_some(reader, &mut probe)? > 0;
                    break;
                }
                usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()))
            }
            None => buf.len(),
        };
        let got = read_some(reader, &mut buf[..want])?;
        if got == 0 {
            break;
        }
        if first {
            first = false;
            if looks_binary(&buf[..got]) {
                summary.binary = true;
                if !binary {
                    summary.bytes = got as u64;
                    return Ok(summary);
                }
            }
        }
        summary.bytes += got as u64;
        scanner.push(&buf[..got], found);
    }
    scanner.finish(found);
    Ok(summary)
}

fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
