//! What the example skills share: one HTTP request through `wasi:http`, made by the host.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

/// A response: status, `Location` (if any), and at most `limit` bytes of body.
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

/// GETs `url` (`http://` or `https://`); the host decides whether it may leave.
pub fn get(url: &str, limit: usize) -> Result<Response, String> {
    send(&Method::Get, url, None, limit)
}

/// POSTs `body` to `url`; the host decides whether it may leave, and in what form.
pub fn post(url: &str, body: &[u8], limit: usize) -> Result<Response, String> {
    send(&Method::Post, url, Some(body), limit)
}

fn send(method: &Method, url: &str, body: Option<&[u8]>, limit: usize) -> Result<Response, String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(format!("`{url}` is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let headers = Fields::new();
    if let Some(body) = body {
        headers
            .append("content-length", body.len().to_string().as_bytes())
            .map_err(|e| format!("{e:?}"))?;
    }
    let request = OutgoingRequest::new(headers);
    request.set_method(method).map_err(|()| "bad method")?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("bad authority `{authority}`"))?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| format!("bad path `{path}`"))?;
    let outgoing = request.body().map_err(|()| "no request body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    {
        let stream = outgoing.write().map_err(|()| "no request body stream")?;
        for chunk in body.unwrap_or_default().chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("{e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let body = response.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no body stream")?;
    let mut out = Vec::new();
    while out.len() < limit {
        match stream.blocking_read((limit - out.len()).min(64 * 1024) as u64) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    Ok(Response {
        status,
        location,
        body: out,
    })
}
