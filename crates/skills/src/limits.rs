//! What a skill may consume: linear memory, processor time, output. A skill that reaches a
//! limit is stopped, and the run says which limit it was.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

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
}

impl Default for Limits {
    /// What a desktop can afford: 512 MiB of memory, 10 s of processor time, 64 MiB out.
    fn default() -> Self {
        Self {
            memory_bytes: 512 << 20,
            cpu: Duration::from_secs(10),
            output_bytes: 64 << 20,
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
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        1000
    }

    fn tables(&self) -> usize {
        1000
    }

    fn memories(&self) -> usize {
        1000
    }
}

/// The processor time the calling thread has used.
pub(crate) fn thread_cpu() -> Duration {
    cordon_sys::process::thread_cpu_time().unwrap_or_default()
}

/// Where a skill's standard output or error goes.
#[derive(Debug, Clone)]
pub enum Sink {
    /// cordon's own standard output.
    Stdout,
    /// cordon's own standard error.
    Stderr,
    /// Kept in memory, for the caller to read after the run.
    Memory(Arc<Mutex<Vec<u8>>>),
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

/// A skill's standard output or error: the sink, within the budget.
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
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        let inner: Pin<Box<dyn AsyncWrite + Send + Sync>> = match &self.sink {
            Sink::Stdout => Box::pin(tokio::io::stdout()),
            Sink::Stderr => Box::pin(tokio::io::stderr()),
            Sink::Memory(buffer) => Box::pin(Memory(buffer.clone())),
        };
        Box::new(Capped {
            inner,
            budget: self.budget.clone(),
        })
    }
}

struct Capped {
    inner: Pin<Box<dyn AsyncWrite + Send + Sync>>,
    budget: Arc<Budget>,
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Err(err) = self.budget.admit(buf.len()) {
            return Poll::Ready(Err(err));
        }
        self.inner.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
}

struct Memory(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for Memory {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.lock() {
            Ok(mut out) => {
                out.extend_from_slice(buf);
                Poll::Ready(Ok(buf.len()))
            }
            Err(_) => Poll::Ready(Err(std::io::Error::other("output buffer poisoned"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
