//! Where a packfile ends (gitformat-pack(5)). A push sends git's commands
//! and then a pack with no length in front: the helper must find the pack's
//! last byte to know the request is complete, without reading past it.

use std::io::BufRead;

use flate2::{Decompress, FlushDecompress, Status};

/// Reads exactly one packfile from `r` and appends its bytes to `out`: the
/// header (`PACK`, version, object count), every object (type/size varint,
/// the OFS_DELTA offset or REF_DELTA base, then a zlib stream whose end is
/// found by inflating it) and the trailing checksum. Nothing past the pack
/// is consumed.
pub fn read_pack(r: &mut impl BufRead, out: &mut Vec<u8>, hash_len: usize) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    fn take(r: &mut impl BufRead, out: &mut Vec<u8>, n: usize) -> std::io::Result<()> {
        let start = out.len();
        out.resize(start + n, 0);
        r.read_exact(&mut out[start..])
    }
    fn byte(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<u8> {
        take(r, out, 1)?;
        Ok(out[out.len() - 1])
    }
    let start = out.len();
    take(r, out, 12)?;
    let header = &out[start..start + 12];
    if &header[..4] != b"PACK" {
        return Err(Error::other("no PACK signature"));
    }
    let version = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if version != 2 && version != 3 {
        return Err(Error::other(format!("unsupported pack version {version}")));
    }
    let count = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let mut scratch = vec![0u8; 64 * 1024];
    for i in 0..count {
        let mut b = byte(r, out)?;
        let kind = (b >> 4) & 7;
        while b & 0x80 != 0 {
            b = byte(r, out)?;
        }
        match kind {
            1..=4 => {}
            // OFS_DELTA: a varint offset back to the base.
            6 => loop {
                if byte(r, out)? & 0x80 == 0 {
                    break;
                }
            },
            // REF_DELTA: the base's object id.
            7 => take(r, out, hash_len)?,
            k => return Err(Error::other(format!("object {i}: bad type {k}"))),
        }
        let mut z = Decompress::new(true);
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Err(ErrorKind::UnexpectedEof.into());
            }
            let (in0, out0) = (z.total_in(), z.total_out());
            let status = z
                .decompress(buf, &mut scratch, FlushDecompress::None)
                .map_err(|e| Error::other(format!("object {i}: {e}")))?;
            let used = (z.total_in() - in0) as usize;
            out.extend_from_slice(&buf[..used]);
            r.consume(used);
            match status {
                Status::StreamEnd => break,
                _ if used == 0 && z.total_out() == out0 => {
                    return Err(Error::other(format!("object {i}: zlib stream stuck")));
                }
                _ => {}
            }
        }
    }
    take(r, out, hash_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};

    fn git(dir: &std::path::Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let mut c = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "git {args:?}");
        o.stdout
    }

    /// A pack with whole objects and OFS_DELTA objects (two similar large
    /// blobs), followed by junk: the parser stops exactly at the trailer.
    #[test]
    fn pack_end_is_found_in_a_real_pack_with_deltas() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        git(d, &["init", "-q", "--bare", "r.git"], b"");
        let repo = d.join("r.git");
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(&format!("line {i}: the quick brown fox {}\n", i * 7));
        }
        let a = String::from_utf8(git(
            &repo,
            &["hash-object", "-w", "--stdin"],
            text.as_bytes(),
        ))
        .unwrap();
        let text2 = text.replace("line 1000:", "LINE 1000 changed:");
        let b = String::from_utf8(git(
            &repo,
            &["hash-object", "-w", "--stdin"],
            text2.as_bytes(),
        ))
        .unwrap();
        let c =
            String::from_utf8(git(&repo, &["hash-object", "-w", "--stdin"], b"tiny\n")).unwrap();
        let ids = format!("{a}{b}{c}");
        // Without --delta-base-offset the deltas are REF_DELTA, with it OFS_DELTA.
        for extra in [None, Some("--delta-base-offset")] {
            let mut args = vec!["pack-objects", "--stdout", "--window=10", "-q"];
            args.extend(extra);
            let pack = git(&repo, &args, ids.as_bytes());
            check_pack(&repo, d, &pack);
        }
    }

    fn check_pack(repo: &std::path::Path, d: &std::path::Path, pack: &[u8]) {
        // Prove the pack really holds a delta (type 6 or 7 object header).
        let idx = d.join("p.pack");
        std::fs::write(&idx, pack).unwrap();
        let verify = String::from_utf8(git(
            repo,
            &[
                "index-pack",
                "-o",
                d.join("p.idx").to_str().unwrap(),
                idx.to_str().unwrap(),
            ],
            b"",
        ))
        .unwrap();
        assert!(!verify.trim().is_empty());
        let vp = String::from_utf8(git(
            repo,
            &["verify-pack", "-v", d.join("p.idx").to_str().unwrap()],
            b"",
        ))
        .unwrap();
        assert!(vp.contains("chain length = 1"), "no delta in pack:\n{vp}");

        let mut input = pack.to_vec();
        input.extend_from_slice(b"0000JUNK after the pack");
        let mut reader = std::io::BufReader::with_capacity(7, &input[..]);
        let mut out = b"prefix".to_vec();
        read_pack(&mut reader, &mut out, 20).unwrap();
        assert_eq!(&out[6..], pack);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"0000JUNK after the pack");

        // A truncated pack is an error, not a hang or a short read.
        let mut short = &pack[..pack.len() - 30];
        assert!(read_pack(&mut short, &mut Vec::new(), 20).is_err());
        let mut bad = &b"JUNK\0\0\0\x02\0\0\0\x01"[..];
        assert!(read_pack(&mut bad, &mut Vec::new(), 20).is_err());
    }
}
