//! pkt-lines (gitprotocol-common(5)): a 4-hex-digit length (including
//! itself) then the data; `0000` flush, `0001` delimiter, `0002`
//! response end.

use std::io::Read;

/// One pkt-line.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkt {
    Flush,
    Delim,
    ResponseEnd,
    Data(Vec<u8>),
}

impl Pkt {
    pub fn append_to(&self, buf: &mut Vec<u8>) {
        match self {
            Pkt::Flush => buf.extend_from_slice(b"0000"),
            Pkt::Delim => buf.extend_from_slice(b"0001"),
            Pkt::ResponseEnd => buf.extend_from_slice(b"0002"),
            Pkt::Data(d) => {
                buf.extend_from_slice(format!("{:04x}", d.len() + 4).as_bytes());
                buf.extend_from_slice(d);
            }
        }
    }
}

/// Reads one pkt-line; `None` at a clean end of input.
pub fn read_pkt(r: &mut impl Read) -> std::io::Result<Option<Pkt>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..])?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    let n = std::str::from_utf8(&len)
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or_else(|| std::io::Error::other(format!("bad pkt-line length {len:?}")))?;
    Ok(Some(match n {
        0 => Pkt::Flush,
        1 => Pkt::Delim,
        2 => Pkt::ResponseEnd,
        3 => return Err(std::io::Error::other("bad pkt-line length 3")),
        n => {
            let mut d = vec![0u8; n - 4];
            r.read_exact(&mut d)?;
            Pkt::Data(d)
        }
    }))
}

/// The body without a leading `# service=...` pkt-line and its flush-pkt.
pub fn strip_service_header(body: &[u8]) -> &[u8] {
    if body.len() < 8 || !body[4..].starts_with(b"# service=") {
        return body;
    }
    let Some(n) = std::str::from_utf8(&body[..4])
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .filter(|n| *n >= 4 && *n <= body.len())
    else {
        return body;
    };
    let rest = &body[n..];
    rest.strip_prefix(b"0000").unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_header_and_pkt_lines() {
        let body = b"001e# service=git-upload-pack\n0000000eversion 2\n0000";
        assert_eq!(strip_service_header(body), b"000eversion 2\n0000");
        assert_eq!(
            strip_service_header(b"000eversion 2\n0000"),
            b"000eversion 2\n0000"
        );
        let mut r = &b"0009hello0001000000020006x\n"[..];
        let mut pkts = Vec::new();
        while let Some(p) = read_pkt(&mut r).unwrap() {
            pkts.push(p);
        }
        assert_eq!(
            pkts,
            vec![
                Pkt::Data(b"hello".to_vec()),
                Pkt::Delim,
                Pkt::Flush,
                Pkt::ResponseEnd,
                Pkt::Data(b"x\n".to_vec())
            ]
        );
        let mut buf = Vec::new();
        for p in &pkts {
            p.append_to(&mut buf);
        }
        assert_eq!(buf, b"0009hello0001000000020006x\n");
        assert!(read_pkt(&mut &b"00"[..]).is_err());
        assert!(read_pkt(&mut &b"zzzz"[..]).is_err());
    }
}
