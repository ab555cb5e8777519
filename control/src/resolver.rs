//! A small DNS client for ownership checks: one TXT question to the resolver realmctl is
//! configured with (`domains.resolver`), over UDP, and over TCP when the answer is
//! truncated (RFC 1035 §4.2, RFC 7766). Every wait and every buffer is bounded; answers are
//! parsed defensively (compression pointers followed a bounded number of times).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest answer read (UDP with EDNS-less clients is 512; TCP may carry more).
const MAX_ANSWER: usize = 16 * 1024;
const TYPE_TXT: u16 = 16;
const CLASS_IN: u16 = 1;

/// What the resolver said about a name's TXT records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtAnswer {
    /// The TXT strings (each record's character-strings joined, RFC 7208 §3.3 style).
    Records(Vec<String>),
    /// The name does not exist (NXDOMAIN).
    NoSuchName,
    /// The name exists without TXT records.
    NoRecords,
}

/// Ask `server` for the TXT records of `name`, within `timeout` (each transport).
pub async fn txt(server: SocketAddr, name: &str, timeout: Duration) -> Result<TxtAnswer, String> {
    let id: u16 = fastrand::u16(..);
    let query = encode_query(id, name)?;
    let udp = async {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().map_err(|_| "bind")?
        } else {
            "[::]:0".parse().map_err(|_| "bind")?
        };
        let sock = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| e.to_string())?;
        sock.connect(server).await.map_err(|e| e.to_string())?;
        sock.send(&query).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; MAX_ANSWER];
        loop {
            let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
            // Someone else's answer (a late one, a spoof): keep waiting for ours.
            if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                buf.truncate(n);
                return Ok::<Vec<u8>, String>(buf);
            }
        }
    };
    let answer = tokio::time::timeout(timeout, udp)
        .await
        .map_err(|_| format!("no answer from {server} within {timeout:?}"))??;
    let parsed = decode(&answer, id)?;
    match parsed {
        Decoded::Truncated => {
            let tcp = async {
                let mut s = tokio::net::TcpStream::connect(server)
                    .await
                    .map_err(|e| e.to_string())?;
                let len = u16::try_from(query.len()).map_err(|_| "query too long")?;
                let mut framed = len.to_be_bytes().to_vec();
                framed.extend_from_slice(&query);
                s.write_all(&framed).await.map_err(|e| e.to_string())?;
                let n = usize::from(s.read_u16().await.map_err(|e| e.to_string())?);
                if n > MAX_ANSWER {
                    return Err(format!("an answer of {n} bytes is too large"));
                }
                let mut buf = vec![0u8; n];
                s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
                Ok::<Vec<u8>, String>(buf)
            };
            let answer = tokio::time::timeout(timeout, tcp)
                .await
                .map_err(|_| format!("no answer from {server} over TCP within {timeout:?}"))??;
            match decode(&answer, id)? {
                Decoded::Answer(a) => Ok(a),
                Decoded::Truncated => Err("truncated over TCP".into()),
            }
        }
        Decoded::Answer(a) => Ok(a),
    }
}

enum Decoded {
    Answer(TxtAnswer),
    Truncated,
}

fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(format!("{name:?} is not a DNS name"));
    }
    for label in name.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))
            .ok_or_else(|| format!("{name:?} has a label that is empty or longer than 63"))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_TXT.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

fn u16_at(b: &[u8], i: usize) -> Result<u16, String> {
    b.get(i..i + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| "a short answer".to_owned())
}

/// The offset after the (possibly compressed) name at `i`.
fn skip_name(b: &[u8], mut i: usize) -> Result<usize, String> {
    for _ in 0..128 {
        let len = *b.get(i).ok_or("a short answer")?;
        match len {
            0 => return Ok(i + 1),
            l if l & 0xC0 == 0xC0 => return Ok(i + 2),
            l => i += 1 + usize::from(l),
        }
    }
    Err("a name with too many labels".into())
}

fn decode(b: &[u8], id: u16) -> Result<Decoded, String> {
    if b.len() < 12 || u16_at(b, 0)? != id {
        return Err("an answer that is not to our question".into());
    }
    let flags = u16_at(b, 2)?;
    if flags & 0x8000 == 0 {
        return Err("a question instead of an answer".into());
    }
    if flags & 0x0200 != 0 {
        return Ok(Decoded::Truncated);
    }
    match flags & 0x000F {
        0 => {}
        3 => return Ok(Decoded::Answer(TxtAnswer::NoSuchName)),
        2 => return Err("the resolver failed (SERVFAIL)".into()),
        5 => return Err("the resolver refused the question (REFUSED)".into()),
        rcode => return Err(format!("the resolver answered rcode {rcode}")),
    }
    let questions = u16_at(b, 4)?;
    let answers = u16_at(b, 6)?;
    let mut i = 12;
    for _ in 0..questions {
        i = skip_name(b, i)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        i = skip_name(b, i)?;
        let ty = u16_at(b, i)?;
        let class = u16_at(b, i + 2)?;
        let len = usize::from(u16_at(b, i + 8)?);
        let start = i + 10;
        let rdata = b.get(start..start + len).ok_or("a short answer")?;
        i = start + len;
        if ty != TYPE_TXT || class != CLASS_IN {
            continue; // a CNAME on the way, say
        }
        let mut text = Vec::new();
        let mut j = 0;
        while j < rdata.len() {
            let l = usize::from(rdata[j]);
            let s = rdata.get(j + 1..j + 1 + l).ok_or("a short TXT string")?;
            text.extend_from_slice(s);
            j += 1 + l;
        }
        out.push(String::from_utf8_lossy(&text).into_owned());
    }
    Ok(Decoded::Answer(if out.is_empty() {
        TxtAnswer::NoRecords
    } else {
        TxtAnswer::Records(out)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `query` with the given rcode and TXT records (each a list of strings),
    /// the answer names compressed to the question's.
    fn answer(query: &[u8], rcode: u8, txts: &[&[&str]], truncated: bool) -> Vec<u8> {
        let mut a = query.to_vec();
        a[2] = 0x81 | if truncated { 0x02 } else { 0 };
        a[3] = 0x80 | rcode;
        a[6..8].copy_from_slice(&(txts.len() as u16).to_be_bytes());
        for t in txts {
            a.extend_from_slice(&[0xC0, 12, 0, 16, 0, 1, 0, 0, 0, 60]);
            let mut rdata = Vec::new();
            for s in *t {
                rdata.push(s.len() as u8);
                rdata.extend_from_slice(s.as_bytes());
            }
            a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            a.extend_from_slice(&rdata);
        }
        a
    }

    #[test]
    fn answers_are_read_and_bad_ones_refused() {
        let q = encode_query(7, "_realmgate-challenge.app.example.com.").expect("query");
        let got = |b: &[u8]| match decode(b, 7) {
            Ok(Decoded::Answer(a)) => Ok(Some(a)),
            Ok(Decoded::Truncated) => Ok(None),
            Err(e) => Err(e),
        };
        assert_eq!(
            got(&answer(&q, 0, &[&["abc", "def"], &["other"]], false)),
            Ok(Some(TxtAnswer::Records(vec![
                "abcdef".into(),
                "other".into()
            ])))
        );
        assert_eq!(
            got(&answer(&q, 3, &[], false)),
            Ok(Some(TxtAnswer::NoSuchName))
        );
        assert_eq!(
            got(&answer(&q, 0, &[], false)),
            Ok(Some(TxtAnswer::NoRecords))
        );
        assert_eq!(got(&answer(&q, 0, &[], true)), Ok(None));
        assert!(got(&answer(&q, 2, &[], false)).is_err_and(|e| e.contains("SERVFAIL")));
        // Another id, a cut answer, a question: refused, never a panic.
        assert!(decode(&answer(&q, 0, &[&["x"]], false), 8).is_err());
        let full = answer(&q, 0, &[&["abcdef"]], false);
        for n in 0..full.len() {
            let _ = decode(&full[..n], 7);
        }
        assert!(decode(&q, 7).is_err());
        assert!(encode_query(1, "a..b").is_err());
        assert!(encode_query(1, &"a".repeat(64)).is_err());
    }
}
