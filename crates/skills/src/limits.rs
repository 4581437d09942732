//! What a skill may consume: linear memory, processor time, output. A skill that reaches a
//! limit is stopped, and the run says which limit it was.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use std::io::Write;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// The limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory, all of the skill's memories together, in bytes.
    pub memory_bytes: u64,
    /// Processor time of the thread running the skill (its own code and the host calls
    /// it makes).
    pub cpu: Duration,
    /// Standard output and standard error together, in bytes.
    pub output_bytes: u64,
    /// Time from start to end, waiting included (checked while the skill computes).
    pub wall: Duration,
}

impl Default for Limits {
    /// What a desktop can afford: 512 MiB of memory, 10 s of processor time, 64 MiB out,
    /// five minutes in all.
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            cpu: Duration::from_secs(10),
            output_bytes: 64 << 20,
            wall: Duration::from_secs(300),
        }
    }
}

/// Why a run was stopped before the skill ended it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// It asked for more linear memory than [`Limits::memory_bytes`].
    Memory {
        /// The limit.
        limit: u64,
    },
    /// It used more processor time than [`Limits::cpu`].
    Cpu {
        /// The limit.
        limit: Duration,
    },
    /// It wrote more than [`Limits::output_bytes`].
    Output {
        /// The limit.
        limit: u64,
    },
    /// It ran longer than [`Limits::wall`].
    Wall {
        /// The limit.
        limit: Duration,
    },
    /// Someone asked the run to stop.
    Requested,
    /// The skill trapped (a WebAssembly fault, a panic, `unreachable`).
    Trap(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory { limit } => write!(
                f,
                "stopped: the memory limit ({} MiB of linear memory) was reached",
                limit >> 20
            ),
            Self::Cpu { limit } => write!(
                f,
                "stopped: the processor time limit ({:.1} s) was reached",
                limit.as_secs_f64()
            ),
            Self::Output { limit } => write!(
                f,
                "stopped: the output limit ({} MiB) was reached",
                limit >> 20
            ),
            Self::Wall { limit } => write!(
                f,
                "stopped: the time limit ({:.1} s in all) was reached",
                limit.as_secs_f64()
            ),
            Self::Requested => write!(f, "stopped on request"),
            Self::Trap(why) => write!(f, "the skill failed: {why}"),
        }
    }
}

/// Which limit, if any, stopped the run: set where the limit is enforced, read at the end.
#[derive(Debug, Default)]
pub(crate) struct Reached(Mutex<Option<Stopped>>);

impl Reached {
    pub(crate) fn set(&self, stopped: Stopped) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(stopped);
        }
    }

    pub(crate) fn take(&self) -> Option<Stopped> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Linear memory across all of a skill's memories, and a bounded number of instances and
/// tables.
pub(crate) struct Limiter {
    pub(crate) limit: u64,
    pub(crate) used: u64,
    pub(crate) reached: Arc<Reached>,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = (desired as u64).saturating_sub(current as u64);
        if self.used.saturating_add(grow) > self.limit {
            self.reached.set(Stopped::Memory { limit: self.limit });
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached",
                self.limit
            ));
        }
        self.used += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table's element takes host memory too: counted against the same limit.
        let grow = (desired as u64)
            .saturating_sub(current as u64)
            .saturating_mul(16);
        if self.used.saturating_add(grow) > self.limit {
            self.reached.set(Stopped::Memory { limit: self.limit });
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes reached (tables)",
                self.limit
            ));
        }
        self.used += grow;
        Ok(true)
    }

    fn instances(&self) -> usize {
        100
    }

    fn tables(&self) -> usize {
        100
    }

    fn memories(&self) -> usize {
        100
    }
}

/// The processor time the calling thread has used.
pub(crate) fn thread_cpu() -> Duration {
    cordon_sys::process::thread_cpu_time().unwrap_or_default()
}

/// Where a skill's standard output or error goes.
#[derive(Clone)]
pub enum Sink {
    /// cordon's own standard output.
    Stdout,
    /// cordon's own standard error.
    Stderr,
    /// Kept in memory, for the caller to read after the run.
    Memory(Arc<Mutex<Vec<u8>>>),
    /// Written through the caller's writer (one that filters what reaches a terminal).
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stdout => "Stdout",
            Self::Stderr => "Stderr",
            Self::Memory(_) => "Memory",
            Self::Writer(_) => "Writer",
        })
    }
}

impl Sink {
    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let poisoned = || std::io::Error::other("the output's lock is poisoned");
        match self {
            Self::Stdout => std::io::stdout().lock().write_all(bytes),
            Self::Stderr => std::io::stderr().lock().write_all(bytes),
            Self::Memory(buffer) => {
                buffer
                    .lock()
                    .map_err(|_| poisoned())?
                    .extend_from_slice(bytes);
                Ok(())
            }
            Self::Writer(writer) => writer.lock().map_err(|_| poisoned())?.write_all(bytes),
        }
    }

    fn flush(&self) -> std::io::Result<()> {
        match self {
            Self::Stdout => std::io::stdout().flush(),
            Self::Stderr => std::io::stderr().flush(),
            Self::Memory(_) => Ok(()),
            Self::Writer(writer) => writer
                .lock()
                .map_err(|_| std::io::Error::other("the output's lock is poisoned"))?
                .flush(),
        }
    }
}

/// Output and error share one budget of bytes.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    reached: Arc<Reached>,
    stopped: AtomicBool,
}

impl Budget {
    pub(crate) fn new(limit: u64, reached: Arc<Reached>) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
            reached,
            stopped: AtomicBool::new(false),
        })
    }

    fn admit(&self, len: usize) -> std::io::Result<()> {
        let len = len as u64;
        let before = self.used.fetch_add(len, Ordering::Relaxed);
        if self.stopped.load(Ordering::Relaxed) || before.saturating_add(len) > self.limit {
            self.stopped.store(true, Ordering::Relaxed);
            self.reached.set(Stopped::Output { limit: self.limit });
            return Err(std::io::Error::other(format!(
                "output limit of {} bytes reached",
                self.limit
            )));
        }
        Ok(())
    }
}

/// A skill's standard output or error: the sink, within the budget. Written as the skill
/// writes (no buffering task in between).
#[derive(Debug, Clone)]
pub(crate) struct Output {
    pub(crate) sink: Sink,
    pub(crate) budget: Arc<Budget>,
}

impl IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        // A skill is never told it writes to a terminal: it has no business drawing on one.
        false
    }
}

impl StdoutStream for Output {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(Blocking(self.clone()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Output {
    async fn ready(&mut self) {}
}

impl OutputStream for Output {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.budget
            .admit(bytes.len())
            .and_then(|()| self.sink.write_all(&bytes))
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.sink
            .flush()
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::new(e)))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

/// The same output for interfaces that write through `AsyncWrite`: each write done at once.
struct Blocking(Output);

impl AsyncWrite for Blocking {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let out = &self.0;
        Poll::Ready(
            out.budget
                .admit(buf.len())
                .and_then(|()| out.sink.write_all(buf))
                .map(|()| buf.len()),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.0.sink.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
