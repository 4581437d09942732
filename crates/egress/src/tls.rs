//! The server name a TLS client asks for, read from its ClientHello without decrypting
//! anything: a `CONNECT` to one host carrying a ClientHello for another is domain fronting.

/// What the first bytes of a tunnel say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A TLS ClientHello naming this server (lowercase, no trailing dot).
    Sni(String),
    /// A TLS ClientHello without a server name.
    NoSni,
    /// Not TLS.
    NotTls,
    /// TLS, but the ClientHello is cut short or malformed.
    Malformed,
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
}

/// How many bytes the first TLS record needs, when `data` starts one: the ClientHello is
/// read whole before it is judged.
pub fn record_len(data: &[u8]) -> Option<usize> {
    if data.len() >= 5 && data[0] == 0x16 && data[1] == 0x03 {
        Some(5 + usize::from(u16::from_be_bytes([data[3], data[4]])))
    } else {
        None
    }
}

/// Reads the ClientHello at the start of `data` (one TLS record).
pub fn client_hello(data: &[u8]) -> Hello {
    if data.first() != Some(&0x16) {
        return Hello::NotTls;
    }
    parse(data).unwrap_or(Hello::Malformed)
}

fn parse(data: &[u8]) -> Option<Hello> {
    let mut r = Reader { data, pos: 0 };
    let _content_type = r.u8()?;
    let _version = r.take(2)?;
    let record_len = r.u16()?;
    let record = r.take(record_len)?;
    let mut r = Reader {
        data: record,
        pos: 0,
    };
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let hello_len = r.u24()?;
    let hello = r.take(hello_len)?;
    let mut r = Reader {
        data: hello,
        pos: 0,
    };
    let _version = r.take(2)?;
    let _random = r.take(32)?;
    let session = r.u8()?;
    r.take(session)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compression = r.u8()?;
    r.take(compression)?;
    if r.pos == hello.len() {
        return Some(Hello::NoSni);
    }
    let extensions_len = r.u16()?;
    let extensions = r.take(extensions_len)?;
    let mut r = Reader {
        data: extensions,
        pos: 0,
    };
    while r.pos < extensions.len() {
        let kind = r.u16()?;
        let len = r.u16()?;
        let body = r.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut names = Reader { data: body, pos: 0 };
        let list_len = names.u16()?;
        let list = names.take(list_len)?;
        let mut names = Reader { data: list, pos: 0 };
        while names.pos < list.len() {
            let name_type = names.u8()?;
            let name_len = names.u16()?;
            let name = names.take(name_len)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                return Some(Hello::Sni(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
    }
    Some(Hello::NoSni)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ClientHello naming `name` (or none).
    pub(crate) fn hello(name: Option<&str>) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(name) = name {
            let mut list = vec![0u8];
            list.extend((name.len() as u16).to_be_bytes());
            list.extend(name.as_bytes());
            let mut sni = (list.len() as u16).to_be_bytes().to_vec();
            sni.extend(list);
            ext.extend(0u16.to_be_bytes());
            ext.extend((sni.len() as u16).to_be_bytes());
            ext.extend(sni);
        }
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend(2u16.to_be_bytes());
        body.extend([0x13, 0x01]);
        body.extend([1, 0]); // compression
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut handshake = vec![1];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![0x16, 3, 1];
        record.extend((handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        record
    }

    #[test]
    fn reads_the_server_name() {
        let data = hello(Some("API.Example.com."));
        assert_eq!(record_len(&data), Some(data.len()));
        assert_eq!(client_hello(&data), Hello::Sni("api.example.com".into()));
        assert_eq!(client_hello(&hello(None)), Hello::NoSni);
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        assert_eq!(client_hello(&data[..20]), Hello::Malformed);
    }
}
