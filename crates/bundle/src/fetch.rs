//! Fetching a bundle over HTTP(S) from any static server, object store or CDN: a GET with
//! `If-None-Match`, bounded in time and size.

use std::time::Duration;

use crate::error::{BundleError, Problem, Result};

/// What a server answered.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the bundle has not changed since the ETag given.
    NotModified,
    /// 200: a bundle (not yet read or verified), and its ETag if the server gave one.
    Body {
        /// The compressed bundle.
        bytes: Vec<u8>,
        /// The `ETag` header.
        etag: Option<String>,
    },
}

/// How long a fetch may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To connect.
    pub connect: Duration,
    /// For the whole exchange; a server that stops sending is given up on after it.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            total: Duration::from_secs(60),
        }
    }
}

/// Fetches `url`, sending `etag` as `If-None-Match`, reading at most `max_bytes`.
///
/// # Errors
///
/// [`Problem::Unreadable`] naming the URL and the cause (no answer in time, a refused
/// connection, a status other than 200 or 304), [`Problem::TooLarge`] for a body over
/// `max_bytes`.
pub fn fetch(url: &str, etag: Option<&str>, max_bytes: u64, timeouts: Timeouts) -> Result<Fetched> {
    let unreadable = |why: String| BundleError::new(Problem::Unreadable, format!("`{url}`: {why}"));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeouts.connect))
        .timeout_global(Some(timeouts.total))
        .http_status_as_error(false)
        .max_redirects(5)
        // An https:// source is never redirected to plain HTTP.
        .https_only(url.starts_with("https://"))
        .user_agent(concat!("cordon/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(etag) = etag {
        request = request.header("If-None-Match", etag);
    }
    let mut response = request.call().map_err(|err| unreadable(err.to_string()))?;
    match response.status().as_u16() {
        // Not modified since what? Only an answer to our `If-None-Match` means anything.
        304 if etag.is_some() => Ok(Fetched::NotModified),
        304 => Err(unreadable(
            "the server answered 304 Not Modified to a request without an ETag".into(),
        )),
        200 => {
            let etag = response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bytes = response
                .body_mut()
                .with_config()
                .limit(max_bytes)
                .read_to_vec()
                .map_err(|err| match err {
                    ureq::Error::BodyExceedsLimit(_) => BundleError::new(
                        Problem::TooLarge,
                        format!(
                            "`{url}`: the bundle is larger than the limit of {max_bytes} bytes"
                        ),
                    ),
                    other => unreadable(other.to_string()),
                })?;
            Ok(Fetched::Body { bytes, etag })
        }
        status => Err(unreadable(format!("the server answered {status}"))),
    }
}
