//! Forwarding records to where fleets collect logs: syslog and HTTP collectors.
//!
//! The database is the backlog: a forwarder keeps, per target, the sequence number of the
//! last record the collector accepted (table `forward_cursors`), sends what follows in
//! batches, and moves the cursor only after the collector acknowledged the batch. While the
//! collector is down nothing is lost and nothing is skipped; when it comes back every
//! record is delivered once, in order.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{Filter, Reader, Record, Result, StoreError};

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// RFC 5424 over UDP, one datagram per record.
    SyslogUdp(String),
    /// RFC 5424 over TCP, octet-counted frames (RFC 6587).
    SyslogTcp(String),
    /// RFC 5424 to a local datagram socket such as `/dev/log`.
    SyslogUnix(PathBuf),
    /// HTTP POST of JSON batches.
    Http {
        /// The collector URL (`http://` or `https://`).
        url: String,
        /// The body's shape.
        format: HttpFormat,
    },
}

/// The body of an HTTP batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFormat {
    /// Splunk HTTP Event Collector: concatenated `{"time", "source", "event"}` objects.
    Hec,
    /// Elasticsearch `_bulk`: an `index` action (with the record id as `_id`, so a resent
    /// batch overwrites rather than duplicates) and the record, per line.
    Elastic,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| format!("`{s}` has no scheme: use syslog+udp://, syslog+tcp://, syslog+unix://, http:// or https://"))?;
        match scheme {
            "syslog+udp" | "syslog" => Ok(Target::SyslogUdp(rest.to_owned())),
            "syslog+tcp" => Ok(Target::SyslogTcp(rest.to_owned())),
            "syslog+unix" => Ok(Target::SyslogUnix(PathBuf::from(rest))),
            "http" | "https" => Ok(Target::Http {
                url: s.to_owned(),
                format: HttpFormat::Hec,
            }),
            other => Err(format!(
                "unknown scheme `{other}`: use syslog+udp, syslog+tcp, syslog+unix, http or https"
            )),
        }
    }
}

impl Target {
    /// The name its cursor is stored under.
    pub fn key(&self) -> String {
        match self {
            Target::SyslogUdp(addr) => format!("syslog+udp://{addr}"),
            Target::SyslogTcp(addr) => format!("syslog+tcp://{addr}"),
            Target::SyslogUnix(path) => format!("syslog+unix://{}", path.display()),
            Target::Http { url, format } => format!("{url}#{format:?}"),
        }
    }
}

/// One record as an RFC 5424 message: facility 13 (log audit), severity informational for
/// allowed and warning for denied, the record as JSON in the message part.
pub fn syslog_line(record: &Record, hostname: &str) -> String {
    let severity = if record.allow { 6 } else { 4 };
    let structured = format!(
        "[cordon@32473 seq=\"{}\" capability=\"{}\" allow=\"{}\"]",
        record.seq,
        sd_escape(&record.capability),
        record.allow
    );
    let json = serde_json::to_string(record).unwrap_or_default();
    format!(
        "<{}>1 {} {} cordon - decision {structured} {json}",
        13 * 8 + severity,
        record.time,
        hostname
    )
}

fn sd_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// Why a batch was not delivered. The cursor did not move; the batch is sent again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The collector could not be reached or the connection broke.
    #[error("cannot deliver to `{target}`: {message}")]
    Unreachable {
        /// The target.
        target: String,
        /// What happened.
        message: String,
    },
    /// The collector answered with an error status.
    #[error("`{target}` refused the batch with HTTP {status}")]
    Refused {
        /// The target.
        target: String,
        /// The HTTP status.
        status: u16,
    },
}

/// Sends the records of one database to one target.
#[derive(Debug)]
pub struct Forwarder {
    db: PathBuf,
    target: Target,
    batch: usize,
    timeout: Duration,
    token: Option<String>,
    hostname: String,
    cursors: Connection,
}

impl Forwarder {
    /// A forwarder from the database at `db` to `target`, `batch` records per delivery, each
    /// delivery bounded by `timeout`; `token` is sent as HEC's `Authorization: Splunk ...` or
    /// as a bearer token.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the database cannot be opened for its cursor.
    pub fn new(
        db: &Path,
        target: Target,
        batch: usize,
        timeout: Duration,
        token: Option<String>,
    ) -> Result<Self> {
        let cursors = Connection::open(db).map_err(|source| StoreError::Open {
            path: db.to_path_buf(),
            source,
        })?;
        let sql = |operation| {
            move |source| StoreError::Sql {
                path: db.to_path_buf(),
                operation,
                source,
            }
        };
        cursors
            .busy_timeout(Duration::from_secs(5))
            .map_err(sql("set busy timeout"))?;
        cursors
            .execute_batch("CREATE TABLE IF NOT EXISTS forward_cursors (target TEXT PRIMARY KEY, seq INTEGER NOT NULL)")
            .map_err(sql("create the cursor table"))?;
        let hostname = fs_err::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "-".into());
        Ok(Self {
            db: db.to_path_buf(),
            target,
            batch: batch.max(1),
            timeout,
            token,
            hostname,
            cursors,
        })
    }

    /// The sequence number of the last record the collector accepted.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the cursor cannot be read.
    pub fn cursor(&self) -> Result<u64> {
        let seq: Option<i64> = self
            .cursors
            .query_row(
                "SELECT seq FROM forward_cursors WHERE target = ?1",
                [self.target.key()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|source| StoreError::Sql {
                path: self.db.clone(),
                operation: "read the forward cursor",
                source,
            })?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// Delivers the next batch after the cursor. Returns how many records were delivered
    /// (0 when there is nothing new).
    ///
    /// # Errors
    ///
    /// `Ok(Err(_))` when the collector did not take the batch (retry later); `Err(_)` when
    /// the database itself failed.
    pub fn deliver_batch(&self) -> Result<std::result::Result<usize, DeliveryError>> {
        let after = self.cursor()?;
        let reader = Reader::open(&self.db)?;
        let mut records = Vec::with_capacity(self.batch);
        reader.scan(
            &Filter {
                after_seq: Some(after),
                ..Filter::default()
            },
            |record| {
                records.push(record);
                records.len() < self.batch
            },
        )?;
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(Ok(0));
        };
        if let Err(err) = self.send(&records) {
            return Ok(Err(err));
        }
        self.cursors
            .execute(
                "INSERT INTO forward_cursors (target, seq) VALUES (?1, ?2) ON CONFLICT (target) DO UPDATE SET seq = ?2",
                params![self.target.key(), last as i64],
            )
            .map_err(|source| StoreError::Sql { path: self.db.clone(), operation: "move the forward cursor", source })?;
        Ok(Ok(records.len()))
    }

    fn unreachable(&self, err: impl std::fmt::Display) -> DeliveryError {
        DeliveryError::Unreachable {
            target: self.target.key(),
            message: err.to_string(),
        }
    }

    fn send(&self, records: &[Record]) -> std::result::Result<(), DeliveryError> {
        match &self.target {
            Target::SyslogUdp(addr) => {
                let addr = resolve(addr).map_err(|e| self.unreachable(e))?;
                let socket = UdpSocket::bind(if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                })
                .map_err(|e| self.unreachable(e))?;
                for record in records {
                    socket
                        .send_to(syslog_line(record, &self.hostname).as_bytes(), addr)
                        .map_err(|e| self.unreachable(e))?;
                }
                Ok(())
            }
            Target::SyslogTcp(addr) => {
                let addr = resolve(addr).map_err(|e| self.unreachable(e))?;
                let mut stream = TcpStream::connect_timeout(&addr, self.timeout)
                    .map_err(|e| self.unreachable(e))?;
                stream
                    .set_write_timeout(Some(self.timeout))
                    .map_err(|e| self.unreachable(e))?;
                let mut frames = Vec::new();
                for record in records {
                    let line = syslog_line(record, &self.hostname);
                    frames.extend_from_slice(format!("{} {line}", line.len()).as_bytes());
                }
                stream
                    .write_all(&frames)
                    .and_then(|()| stream.flush())
                    .map_err(|e| self.unreachable(e))
            }
            Target::SyslogUnix(path) => {
                let socket = UnixDatagram::unbound().map_err(|e| self.unreachable(e))?;
                socket
                    .set_write_timeout(Some(self.timeout))
                    .map_err(|e| self.unreachable(e))?;
                for record in records {
                    socket
                        .send_to(syslog_line(record, &self.hostname).as_bytes(), path)
                        .map_err(|e| self.unreachable(e))?;
                }
                Ok(())
            }
            Target::Http { url, format } => {
                let body = http_body(records, *format, &self.hostname);
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_global(Some(self.timeout))
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut request = agent.post(url).header(
                    "Content-Type",
                    match format {
                        HttpFormat::Hec => "application/json",
                        HttpFormat::Elastic => "application/x-ndjson",
                    },
                );
                if let Some(token) = &self.token {
                    let scheme = if *format == HttpFormat::Hec {
                        "Splunk"
                    } else {
                        "Bearer"
                    };
                    request = request.header("Authorization", &format!("{scheme} {token}"));
                }
                let response = request.send(body).map_err(|e| self.unreachable(e))?;
                let status = response.status().as_u16();
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(DeliveryError::Refused {
                        target: self.target.key(),
                        status,
                    })
                }
            }
        }
    }
}

fn resolve(addr: &str) -> std::io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("`{addr}` resolves to no address"),
        )
    })
}

/// The body of one HTTP batch.
pub fn http_body(records: &[Record], format: HttpFormat, hostname: &str) -> String {
    let mut body = String::new();
    for record in records {
        let line = match format {
            HttpFormat::Hec => {
                let time = chrono::DateTime::parse_from_rfc3339(&record.time)
                    .map(|t| t.timestamp_micros() as f64 / 1e6)
                    .unwrap_or_default();
                serde_json::json!({"time": time, "host": hostname, "source": "cordon", "sourcetype": "cordon:audit", "event": record})
                    .to_string()
            }
            HttpFormat::Elastic => format!(
                "{}\n{}",
                serde_json::json!({"index": {"_index": "cordon-audit", "_id": record.id}}),
                serde_json::to_string(record).unwrap_or_default()
            ),
        };
        body.push_str(&line);
        body.push('\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_name_their_cursor() {
        assert_eq!(
            "syslog+udp://127.0.0.1:514".parse(),
            Ok(Target::SyslogUdp("127.0.0.1:514".into()))
        );
        assert_eq!(
            "syslog+unix:///dev/log".parse(),
            Ok(Target::SyslogUnix("/dev/log".into()))
        );
        let http: Target = "http://127.0.0.1:8088/services/collector".parse().unwrap();
        assert_eq!(http.key(), "http://127.0.0.1:8088/services/collector#Hec");
        assert!("ftp://x"
            .parse::<Target>()
            .unwrap_err()
            .starts_with("unknown scheme `ftp`"));
        assert!("127.0.0.1:514".parse::<Target>().is_err());
    }
}
