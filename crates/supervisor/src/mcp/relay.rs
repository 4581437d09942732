//! The stdio transport: one JSON value per line, relayed both ways through a [`Gateway`].

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use super::{error, leading_id, Gateway, MAX_MESSAGE};

/// Reads one line into `line`, keeping at most [`MAX_MESSAGE`] bytes of it (the rest is
/// read and discarded in pieces, never held); `Ok(None)` at the end, else whether the line
/// was whole.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    line.clear();
    let read = reader
        .by_ref()
        .take(MAX_MESSAGE as u64 + 1)
        .read_until(b'\n', line)?;
    if read == 0 {
        return Ok(None);
    }
    let whole = line.ends_with(b"\n") || read <= MAX_MESSAGE;
    if !whole {
        loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                break;
            }
            match buffer.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    reader.consume(at + 1);
                    break;
                }
                None => {
                    let all = buffer.len();
                    reader.consume(all);
                }
            }
        }
        line.truncate(MAX_MESSAGE);
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(Some(whole))
}

fn send(out: &Mutex<Box<dyn Write + Send>>, text: &str) -> std::io::Result<()> {
    let mut out = out
        .lock()
        .map_err(|_| std::io::Error::other("the client's stream was lost"))?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The output of a server that runs in this process (a skill's functions, a remote
/// server's forwarder) into the relay: one message a line, from any thread. Closing it (or a
/// write that fails) is the server's end, which the relay sees.
#[derive(Clone, Debug)]
pub(super) struct ServerOutput(Arc<Mutex<Option<std::io::PipeWriter>>>);

impl ServerOutput {
    /// Writes `line` as one message; nothing once closed.
    pub(super) fn send(&self, line: &str) {
        if let Ok(mut output) = self.0.lock() {
            if let Some(out) = output.as_mut() {
                let written = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                if written.is_err() {
                    *output = None;
                }
            }
        }
    }

    /// Ends the server's side.
    pub(super) fn close(&self) {
        if let Ok(mut output) = self.0.lock() {
            output.take();
        }
    }

    /// Whether the server's side has ended.
    pub(super) fn closed(&self) -> bool {
        self.0.lock().map_or(true, |output| output.is_none())
    }
}

/// The pipes between the relay and a server in this process: what the server reads (the
/// relay's messages to it), and its output; the relay's two ends go to `relay`.
pub(super) struct InProcess {
    /// What the relay passes to the server.
    pub from_relay: std::io::PipeReader,
    /// The server's messages to the relay.
    pub output: ServerOutput,
    /// The relay's ends: the server's input, the server's output.
    pub relay_ends: (std::io::PipeWriter, std::io::PipeReader),
}

impl InProcess {
    pub(super) fn new() -> std::io::Result<Self> {
        let (from_relay, relay_writes) = std::io::pipe()?;
        let (relay_reads, to_relay) = std::io::pipe()?;
        Ok(Self {
            from_relay,
            output: ServerOutput(Arc::new(Mutex::new(Some(to_relay)))),
            relay_ends: (relay_writes, relay_reads),
        })
    }
}

/// How long a server may take to end once its client has gone, and to take a message it
/// was sent.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Messages on their way to the server that it has not yet taken.
const QUEUED: usize = 256;

/// The server's input: lines, and its end (the client left) which closes it whoever else
/// still holds a way to write to it.
type ToServer = crossbeam_channel::Sender<Option<String>>;

/// Sends `routed` on: to the server through `queue` (waiting at most [`GRACE`] for room),
/// to the client through `client`; then records what was delivered.
fn deliver(
    gateway: &Gateway,
    routed: super::Routed,
    queue: &ToServer,
    client: &Mutex<Box<dyn Write + Send>>,
) -> Result<(), Ended> {
    if let Some(message) = routed.to_server {
        match queue.send_timeout(Some(message), GRACE) {
            Ok(()) => {}
            Err(crossbeam_channel::SendTimeoutError::Timeout(_)) => return Err(Ended::Stalled),
            // The server's input is closed: what it would have been sent is moot.
            Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {}
        }
    }
    if let Some(message) = routed.to_client {
        send(client, &message).map_err(|err| Ended::Client(Err(err)))?;
    }
    for done in routed.done {
        gateway.record(done);
    }
    Ok(())
}

enum Ended {
    Client(std::io::Result<()>),
    Server(std::io::Result<()>),
    Stalled,
}

/// Relays between the client (`client_in`, `client_out`) and the server (`server_in`,
/// `server_out`) until the server's output ends, or the client's input ends and the server
/// has had [`GRACE`] to end after its input was closed, or the server has not taken a
/// message for [`GRACE`] with 256 waiting. Returns whether the server ended. Requests still
/// unanswered when the server ends are answered with an error.
///
/// # Errors
///
/// The I/O error that ended the relay, other than a broken pipe.
pub fn relay(
    gateway: Arc<Gateway>,
    client_in: impl Read + Send + 'static,
    client_out: impl Write + Send + 'static,
    mut server_in: impl Write + Send + 'static,
    server_out: impl Read + Send + 'static,
) -> std::io::Result<bool> {
    let client_out: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(client_out)));
    let (ended, events) = std::sync::mpsc::channel();

    // The server's input, written on a thread of its own: a server that stops reading
    // blocks that thread, never the reading of the client.
    let (queue, queued) = crossbeam_channel::bounded::<Option<String>>(QUEUED);
    std::thread::Builder::new()
        .name("cordon-mcp-to-server".into())
        .spawn(move || {
            for message in queued {
                let Some(message) = message else { break };
                let written = server_in
                    .write_all(message.as_bytes())
                    .and_then(|()| server_in.write_all(b"\n"))
                    .and_then(|()| server_in.flush());
                if written.is_err() {
                    break;
                }
            }
            // The client is gone (or the server's input is): the server's input closes.
        })?;

    // The server's output, to the client; its refused requests answered to it.
    let to_client = Arc::clone(&client_out);
    let from_server = Arc::clone(&gateway);
    let server_ended = ended.clone();
    let answers = queue.clone();
    std::thread::Builder::new()
        .name("cordon-mcp-server".into())
        .spawn(move || {
            let relayed = (|| -> std::io::Result<()> {
                let mut reader = BufReader::new(server_out);
                let mut line = Vec::new();
                while let Some(whole) = read_line(&mut reader, &mut line)? {
                    if !whole {
                        // The request it answers is answered with an error, not left waiting.
                        tracing::warn!("the server sent a message over {MAX_MESSAGE} bytes; dropped");
                        if let Some(answer) = from_server.oversized(&leading_id(&line)) {
                            send(&to_client, &answer)?;
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    match from_server.from_server(&text) {
                        Some(routed) => match deliver(&from_server, routed, &answers, &to_client) {
                            Ok(()) | Err(Ended::Stalled | Ended::Server(_)) => {}
                            Err(Ended::Client(result)) => return result,
                        },
                        None if text.trim().is_empty() => {}
                        // Redacted whole, then cut: a secret is never cut in two first.
                        None => tracing::warn!(
                            "the server wrote something that is not JSON-RPC on its output; dropped: {}",
                            cordon_types::printable(
                                &from_server.redact_log(&text).chars().take(200).collect::<String>()
                            )
                        ),
                    }
                }
                // Whatever the client still waits for, it waits for in vain.
                for line in from_server.abandon("the server ended before it answered") {
                    send(&to_client, &line)?;
                }
                Ok(())
            })();
            let _ = server_ended.send(Ended::Server(relayed));
        })?;

    // The client's input, decided.
    let client_ended = ended;
    std::thread::Builder::new()
        .name("cordon-mcp-client".into())
        .spawn(move || {
            let relayed = (|| -> Result<(), Ended> {
                let io = |err: std::io::Error| Ended::Client(Err(err));
                let mut reader = BufReader::new(client_in);
                let mut line = Vec::new();
                while let Some(whole) = read_line(&mut reader, &mut line).map_err(io)? {
                    if !whole {
                        let refused = format!("message over {MAX_MESSAGE} bytes; refused");
                        let reply = error(leading_id(&line), -32600, &refused);
                        send(&client_out, &reply.to_string()).map_err(io)?;
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    if text.trim().is_empty() {
                        continue;
                    }
                    let mut routed = gateway.from_client(&text);
                    // A call the person is asked about waits on a thread of its own.
                    for asking in std::mem::take(&mut routed.asking) {
                        let (gateway, queue, client_out) =
                            (Arc::clone(&gateway), queue.clone(), Arc::clone(&client_out));
                        let spawned = std::thread::Builder::new()
                            .name("cordon-mcp-ask".into())
                            .spawn(move || {
                                let routed = gateway.answer(asking);
                                let _ = deliver(&gateway, routed, &queue, &client_out);
                            });
                        if let Err(err) = spawned {
                            tracing::error!("cannot ask about a call: {err}");
                        }
                    }
                    deliver(&gateway, routed, &queue, &client_out)?;
                }
                Ok(())
            })();
            // The server's input closes now, whoever still holds a way to write to it (a
            // server that stopped reading is stopped instead).
            if !matches!(relayed, Err(Ended::Stalled)) {
                let _ = queue.send_timeout(None, GRACE);
            }
            let _ = client_ended.send(match relayed {
                Ok(()) => Ended::Client(Ok(())),
                Err(ended) => ended,
            });
        })?;

    let quiet = |result: std::io::Result<()>| match result {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err),
        _ => Ok(()),
    };
    match events.recv() {
        Ok(Ended::Server(result)) => quiet(result).map(|()| true),
        Ok(Ended::Stalled) => {
            tracing::warn!("the server has not read its input for {GRACE:?}; stopping it");
            Ok(false)
        }
        Ok(Ended::Client(result)) => {
            quiet(result)?;
            match events.recv_timeout(GRACE) {
                Ok(Ended::Server(result)) => quiet(result).map(|()| true),
                _ => Ok(false),
            }
        }
        Err(_) => Ok(true),
    }
}
