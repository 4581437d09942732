//! Copying bytes both ways, counting what leaves.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes moved per read and write while relaying.
pub(crate) const BUFFER: usize = 256 * 1024;

/// The upload budget of a host was used up.
#[derive(Debug)]
pub(crate) struct OverBudget {
    pub(crate) budget: u64,
}

/// Adds `n` bytes to what was sent; fails when that passes `budget`.
pub(crate) fn count(sent: &AtomicU64, n: usize, budget: Option<u64>) -> Result<(), OverBudget> {
    let total = sent.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
    match budget {
        Some(budget) if total > budget => Err(OverBudget { budget }),
        _ => Ok(()),
    }
}

/// Copies `from` to `to` until end of file, counting each chunk against the budget before
/// it is sent (when `counted` is given); then shuts `to` down for writing.
pub(crate) async fn copy<R, W>(
    from: &mut R,
    to: &mut W,
    counted: Option<(&AtomicU64, Option<u64>)>,
) -> Result<(), Cut>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = from.read(&mut buf).await.map_err(Cut::Io)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        if let Some((sent, budget)) = counted {
            count(sent, n, budget).map_err(Cut::Budget)?;
        }
        to.write_all(&buf[..n]).await.map_err(Cut::Io)?;
    }
}

/// Why a relay stopped early.
#[derive(Debug)]
pub(crate) enum Cut {
    /// The upload budget ran out.
    Budget(OverBudget),
    /// cordon closed the tunnel, for the reason given.
    Refused(String),
    /// A read or write failed (the peer went away).
    Io(std::io::Error),
}

/// Copies `from` to `to` until end of file through a pipe with `splice`, so the bytes
/// never enter user space; counts them against `budget` (when given) before they leave.
/// Falls back to [`copy`] where the kernel cannot splice these sockets.
#[cfg(target_os = "linux")]
pub(crate) async fn splice_copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    budget: Option<(&AtomicU64, Option<u64>)>,
) -> Result<(), Cut> {
    use std::os::fd::AsFd;

    use tokio::io::Interest;

    let (pipe_read, pipe_write) = std::io::pipe().map_err(Cut::Io)?;
    let _ = cordon_sys::process::set_pipe_size(pipe_write.as_fd(), BUFFER * 4);
    let mut first = true;
    loop {
        let source = from.as_ref();
        source.readable().await.map_err(Cut::Io)?;
        let moved = source.try_io(Interest::READABLE, || {
            cordon_sys::process::splice(source.as_fd(), pipe_write.as_fd(), BUFFER * 4)
        });
        let mut pending = match moved {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            // EINVAL: these descriptors cannot be spliced (not sockets the kernel supports).
            Err(e) if first && e.kind() == std::io::ErrorKind::InvalidInput => {
                return copy(from, to, budget).await;
            }
            Err(e) => return Err(Cut::Io(e)),
        };
        first = false;
        if let Some((sent, limit)) = budget {
            count(sent, pending, limit).map_err(Cut::Budget)?;
        }
        while pending > 0 {
            let sink = to.as_ref();
            sink.writable().await.map_err(Cut::Io)?;
            match sink.try_io(Interest::WRITABLE, || {
                cordon_sys::process::splice(pipe_read.as_fd(), sink.as_fd(), pending)
            }) {
                Ok(n) => pending -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Cut::Io(e)),
            }
        }
    }
}
