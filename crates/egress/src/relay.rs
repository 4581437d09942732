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
/// it is sent; then shuts `to` down for writing.
pub(crate) async fn upload<R, W>(
    from: &mut R,
    to: &mut W,
    sent: &AtomicU64,
    budget: Option<u64>,
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
        count(sent, n, budget).map_err(Cut::Budget)?;
        to.write_all(&buf[..n]).await.map_err(Cut::Io)?;
    }
}

/// Copies `from` to `to` until end of file, then shuts `to` down for writing.
pub(crate) async fn download<R, W>(from: &mut R, to: &mut W) -> Result<(), Cut>
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
