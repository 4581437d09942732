//! Waits a stop or the time limit can end.
//!
//! The epoch callback stops a skill while its code runs; a skill waiting in a host call (a
//! sleep, a read, an HTTP response) runs no code. The calls that wait in `wasi:io` (`poll`,
//! `pollable.block`, the streams' `blocking-*` calls) are Wasmtime's own, replaced by ones
//! that wait for the same thing or for the run's end, whichever comes first: a stop request
//! or the time limit ends the wait, and the run, at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::StoreContextMut;
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi_io::bindings::wasi::io::{poll, streams};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::{DynInputStream, DynOutputStream};

use crate::limits::{Reached, Stopped};
use crate::runtime::Host;

/// The interfaces whose waits are replaced, as Wasmtime's bindings name them.
const POLL: &str = "wasi:io/poll@0.2.12";
const STREAMS: &str = "wasi:io/streams@0.2.12";

/// How often a wait looks at the stop flag and the clock.
const CHECK: Duration = Duration::from_millis(20);

/// What ends a run from outside its code.
#[derive(Clone, Debug)]
pub(crate) struct Watch {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) began: Instant,
    pub(crate) wall: Duration,
    pub(crate) reached: Arc<Reached>,
}

impl Watch {
    /// Why the run must end now, if it must (noted as the run's reason).
    pub(crate) fn ended(&self) -> Option<Stopped> {
        let why = if self.stop.load(Ordering::Relaxed) {
            Stopped::Requested
        } else if self.began.elapsed() > self.wall {
            Stopped::Wall { limit: self.wall }
        } else {
            return None;
        };
        self.reached.set(why.clone());
        Some(why)
    }

    /// Resolves when the run must end.
    async fn end(self) -> Stopped {
        loop {
            if let Some(why) = self.ended() {
                return why;
            }
            tokio::time::sleep(CHECK).await;
        }
    }
}

/// Runs `wait` (one of Wasmtime's waits on `table`) until it is done or the run ends; the
/// latter traps the skill.
fn until_ended<T>(
    host: &mut Host,
    wait: impl AsyncFnOnce(&mut ResourceTable) -> T,
) -> wasmtime::Result<T> {
    let watch = host.watch.clone();
    let table = &mut host.table;
    let outcome = in_tokio(async move {
        // The wait first: one that is ready at once (most writes) costs no timer.
        tokio::select! {
            biased;
            done = wait(table) => Ok(done),
            why = watch.end() => Err(why),
        }
    });
    outcome.map_err(|why| wasmtime::format_err!("{why}"))
}

type Lowered<T> = wasmtime::Result<(Result<T, streams::StreamError>,)>;

/// Lowers a stream call's result the way Wasmtime's bindings do.
fn lower<T>(host: &mut Host, result: wasmtime_wasi_io::streams::StreamResult<T>) -> Lowered<T> {
    match result {
        Ok(value) => Ok((Ok(value),)),
        Err(err) => Ok((Err(streams::Host::convert_stream_error(
            &mut host.table,
            err,
        )?),)),
    }
}

/// Replaces the waits of `wasi:io` in `linker` (which already has Wasmtime's).
pub(crate) fn add_interruptible(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut io_poll = linker.instance(POLL)?;
    io_poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, Host>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let ready = until_ended(store.data_mut(), async |table| {
                poll::Host::poll(table, pollables).await
            })??;
            Ok((ready,))
        },
    )?;
    io_poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, Host>, (pollable,): (Resource<DynPollable>,)| {
            until_ended(store.data_mut(), async |table| {
                poll::HostPollable::block(table, pollable).await
            })??;
            Ok(())
        },
    )?;
    let mut io = linker.instance(STREAMS)?;
    io.func_wrap(
        "[method]input-stream.blocking-read",
        |mut store: StoreContextMut<'_, Host>, (stream, len): (Resource<DynInputStream>, u64)| {
            let host = store.data_mut();
            let read = until_ended(host, async |table| {
                streams::HostInputStream::blocking_read(table, stream, len).await
            })?;
            lower(host, read)
        },
    )?;
    io.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut store: StoreContextMut<'_, Host>, (stream, len): (Resource<DynInputStream>, u64)| {
            let host = store.data_mut();
            let skipped = until_ended(host, async |table| {
                streams::HostInputStream::blocking_skip(table, stream, len).await
            })?;
            lower(host, skipped)
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store: StoreContextMut<'_, Host>,
         (stream, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            let host = store.data_mut();
            let written = until_ended(host, async |table| {
                streams::HostOutputStream::blocking_write_and_flush(table, stream, bytes).await
            })?;
            lower(host, written)
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store: StoreContextMut<'_, Host>, (stream, len): (Resource<DynOutputStream>, u64)| {
            let host = store.data_mut();
            let written = until_ended(host, async |table| {
                streams::HostOutputStream::blocking_write_zeroes_and_flush(table, stream, len).await
            })?;
            lower(host, written)
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut store: StoreContextMut<'_, Host>, (stream,): (Resource<DynOutputStream>,)| {
            let host = store.data_mut();
            let flushed = until_ended(host, async |table| {
                streams::HostOutputStream::blocking_flush(table, stream).await
            })?;
            lower(host, flushed)
        },
    )?;
    io.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut store: StoreContextMut<'_, Host>,
         (dest, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            let host = store.data_mut();
            let spliced = until_ended(host, async |table| {
                streams::HostOutputStream::blocking_splice(table, dest, src, len).await
            })?;
            lower(host, spliced)
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
