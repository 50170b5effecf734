//! STOMP 1.2 frames and their codec (`tokio_util::codec`).
//!
//! A frame is a command line, header lines, an empty line, the body and a NUL. Per the 1.2
//! specification:
//! - lines end in LF or CRLF; a lone EOL between frames is a heart-beat;
//! - header names and values escape `\r`, `\n`, `:` and `\` as `\r`, `\n`, `\c` and `\\`, except
//!   in `CONNECT` and `CONNECTED` frames (for compatibility with 1.0); any other escape is an error;
//! - a repeated header: the first occurrence wins;
//! - with `content-length`, the body is exactly that many bytes (it may contain NULs) and a NUL
//!   must follow; without it, the body ends at the first NUL.
//!
//! The encoder always writes `content-length` for frames with a body, so bodies may hold NULs.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The largest frame accepted from a server: headers and body together.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// One STOMP frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// The command (`SEND`, `RECEIPT`, …).
    pub command: String,
    /// Headers in wire order, unescaped.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: &str) -> Self {
        Frame {
            command: command.to_owned(),
            ..Frame::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// The first value of header `name` (the 1.2 rule for repeated headers).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether header values of this frame are escaped (all but CONNECT/CONNECTED).
    fn escapes(&self) -> bool {
        escapes(&self.command)
    }
}

fn escapes(command: &str) -> bool {
    !matches!(command, "CONNECT" | "CONNECTED" | "STOMP")
}

/// What the decoder yields: a frame, or a heart-beat (a bare EOL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A frame.
    Frame(Frame),
    /// A heart-beat.
    Heartbeat,
}

/// What the encoder writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A frame.
    Frame(Frame),
    /// A heart-beat (one LF).
    Heartbeat,
}

/// A malformed frame or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not STOMP 1.2.
    #[error("malformed STOMP frame: {0}")]
    Malformed(String),
    /// A frame exceeded [`MAX_FRAME`].
    #[error("STOMP frame larger than {MAX_FRAME} bytes")]
    TooLarge,
    /// A header cannot be written (a NUL in a name or value, or EOL in a CONNECT header).
    #[error("cannot encode STOMP header {0:?}: {1}")]
    BadHeader(String, &'static str),
}

/// The STOMP 1.2 codec.
#[derive(Debug, Default)]
pub struct StompCodec {
    _private: (),
}

impl StompCodec {
    /// A codec.
    pub fn new() -> Self {
        StompCodec::default()
    }
}

fn malformed(msg: impl Into<String>) -> FrameError {
    FrameError::Malformed(msg.into())
}

/// Undoes 1.2 header escaping.
pub fn unescape(s: &str) -> Result<String, FrameError> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                return Err(malformed(format!(
                    "undefined escape sequence \\{other} in header {s:?}"
                )))
            }
            None => return Err(malformed(format!("header {s:?} ends in a lone backslash"))),
        }
    }
    Ok(out)
}

/// Applies 1.2 header escaping.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            ':' => out.push_str("\\c"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

/// Position of the first `\n\n` or `\n\r\n` ending the header block at or after `from`,
/// returning (end of the header block, start of the body).
fn header_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while let Some(p) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some((nl, nl + 2)),
            Some(b'\r') => match buf.get(nl + 2) {
                Some(b'\n') => return Some((nl, nl + 3)),
                Some(_) => {}
                None => return None,
            },
            Some(_) => {}
            None => return None,
        }
        i = nl + 1;
    }
    None
}

impl Decoder for StompCodec {
    type Item = Incoming;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        // Heart-beats: EOLs between frames.
        match buf.first() {
            None => return Ok(None),
            Some(b'\n') => {
                buf.advance(1);
                return Ok(Some(Incoming::Heartbeat));
            }
            Some(b'\r') => {
                return match buf.get(1) {
                    None => Ok(None),
                    Some(b'\n') => {
                        buf.advance(2);
                        Ok(Some(Incoming::Heartbeat))
                    }
                    Some(_) => Err(malformed("CR not followed by LF between frames")),
                };
            }
            Some(_) => {}
        }
        let Some((head_end, body_start)) = header_end(buf, 0) else {
            if buf.len() > MAX_FRAME {
                return Err(FrameError::TooLarge);
            }
            return Ok(None);
        };
        let head = std::str::from_utf8(&buf[..head_end])
            .map_err(|_| malformed("command or headers are not UTF-8"))?;
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let command = lines.next().unwrap_or_default().to_owned();
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(malformed(format!("bad command line {command:?}")));
        }
        let esc = escapes(&command);
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| malformed(format!("{command}: header line {line:?} has no ':'")))?;
            if esc {
                headers.push((unescape(k)?, unescape(v)?));
            } else {
                headers.push((k.to_owned(), v.to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| {
                v.trim().parse::<usize>().map_err(|_| {
                    malformed(format!("{command}: content-length {v:?} is not a number"))
                })
            })
            .transpose()?;
        let body_end = match length {
            Some(n) => {
                if n > MAX_FRAME {
                    return Err(FrameError::TooLarge);
                }
                let end = body_start + n;
                match buf.get(end) {
                    None => {
                        buf.reserve(end + 1 - buf.len());
                        return Ok(None);
                    }
                    Some(0) => end,
                    Some(_) => {
                        return Err(malformed(format!(
                            "{command}: no NUL after the {n}-byte body given by content-length"
                        )))
                    }
                }
            }
            None => match buf[body_start..].iter().position(|&b| b == 0) {
                Some(p) => body_start + p,
                None => {
                    if buf.len() > MAX_FRAME {
                        return Err(FrameError::TooLarge);
                    }
                    return Ok(None);
                }
            },
        };
        let mut frame_bytes = buf.split_to(body_end + 1);
        frame_bytes.advance(body_start);
        frame_bytes.truncate(body_end - body_start);
        Ok(Some(Incoming::Frame(Frame {
            command,
            headers,
            body: frame_bytes.freeze(),
        })))
    }
}

impl Encoder<Outgoing> for StompCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), FrameError> {
        let frame = match item {
            Outgoing::Heartbeat => {
                dst.put_u8(b'\n');
                return Ok(());
            }
            Outgoing::Frame(f) => f,
        };
        let esc = frame.escapes();
        let mut head = String::with_capacity(64);
        head.push_str(&frame.command);
        head.push('\n');
        for (k, v) in &frame.headers {
            if k.contains('\0') || v.contains('\0') {
                return Err(FrameError::BadHeader(k.clone(), "contains NUL"));
            }
            if k == "content-length" {
                // Always written from the body below; a caller's value could only disagree.
                continue;
            }
            if esc {
                head.push_str(&escape(k));
                head.push(':');
                head.push_str(&escape(v));
            } else {
                if [k, v].iter().any(|s| s.contains(['\n', '\r'])) || k.contains(':') {
                    return Err(FrameError::BadHeader(
                        k.clone(),
                        "CONNECT headers cannot hold ':' in names or line breaks",
                    ));
                }
                head.push_str(k);
                head.push(':');
                head.push_str(v);
            }
            head.push('\n');
        }
        if !frame.body.is_empty() {
            head.push_str(&format!("content-length:{}\n", frame.body.len()));
        }
        head.push('\n');
        dst.reserve(head.len() + frame.body.len() + 1);
        dst.put_slice(head.as_bytes());
        dst.put_slice(&frame.body);
        dst.put_u8(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Incoming>, FrameError> {
        let mut codec = StompCodec::new();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(item) = codec.decode(&mut buf)? {
            out.push(item);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn encode(frame: Frame) -> Vec<u8> {
        let mut buf = BytesMut::new();
        StompCodec::new()
            .encode(Outgoing::Frame(frame), &mut buf)
            .unwrap();
        buf.to_vec()
    }

    #[test]
    fn escaping_round_trips_and_rejects_undefined_escapes() {
        let raw = "a:b\\c\r\nd";
        assert_eq!(escape(raw), "a\\cb\\\\c\\r\\nd");
        assert_eq!(unescape(&escape(raw)).unwrap(), raw);
        assert!(unescape("x\\t").is_err());
        assert!(unescape("x\\").is_err());
    }

    #[test]
    fn encodes_send_with_escaped_headers_and_content_length() {
        let f = Frame::new("SEND")
            .header("destination", "/queue/a:b")
            .header("content-length", "999")
            .body(&b"x\0y"[..]);
        assert_eq!(
            encode(f),
            b"SEND\ndestination:/queue/a\\cb\ncontent-length:3\n\nx\0y\0".to_vec()
        );
    }

    #[test]
    fn connect_headers_are_not_escaped_and_line_breaks_are_refused() {
        let f = Frame::new("CONNECT").header("passcode", "p:w\\");
        assert_eq!(encode(f), b"CONNECT\npasscode:p:w\\\n\n\0".to_vec());
        let bad = Frame::new("CONNECT").header("login", "a\nb");
        let mut buf = BytesMut::new();
        assert!(StompCodec::new()
            .encode(Outgoing::Frame(bad), &mut buf)
            .is_err());
    }

    #[test]
    fn decodes_fragmented_frames_byte_by_byte() {
        let wire = b"\nRECEIPT\nreceipt-id:r\\c1\n\n\0\r\nMESSAGE\r\ndestination:/queue/x\r\nk:first\r\nk:second\r\n\r\nhello\0";
        let mut codec = StompCodec::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire {
            buf.put_u8(*b);
            while let Some(item) = codec.decode(&mut buf).unwrap() {
                out.push(item);
            }
        }
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], Incoming::Heartbeat);
        let Incoming::Frame(receipt) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(receipt.command, "RECEIPT");
        assert_eq!(receipt.get("receipt-id"), Some("r:1"));
        assert_eq!(out[2], Incoming::Heartbeat);
        let Incoming::Frame(msg) = &out[3] else {
            panic!("{out:?}")
        };
        assert_eq!(
            msg.get("k"),
            Some("first"),
            "the first repeated header wins"
        );
        assert_eq!(&msg.body[..], b"hello");
    }

    #[test]
    fn content_length_bodies_may_hold_nuls() {
        let out = decode_all(b"MESSAGE\ncontent-length:5\n\na\0b\0c\0").unwrap();
        let Incoming::Frame(f) = &out[0] else {
            panic!()
        };
        assert_eq!(&f.body[..], b"a\0b\0c");
        // A frame encoded with a NUL in its body decodes to the same frame.
        let sent = Frame::new("MESSAGE").header("h", "v").body(&b"\0\0"[..]);
        let back = decode_all(&encode(sent.clone())).unwrap();
        let Incoming::Frame(b) = &back[0] else {
            panic!()
        };
        assert_eq!(b.body, sent.body);
        assert_eq!(b.get("h"), Some("v"));
    }

    #[test]
    fn malformed_input_is_an_error() {
        for bad in [
            &b"MESSAGE\ncontent-length:2\n\nabc\0"[..],
            b"MESSAGE\ncontent-length:x\n\n\0",
            b"MESSAGE\nnocolon\n\n\0",
            b"lowercase\n\n\0",
            b"MESSAGE\nk:\\q\n\n\0",
            b"\rX",
        ] {
            assert!(
                decode_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn incomplete_frames_wait_for_more() {
        let mut codec = StompCodec::new();
        for part in [
            &b"MESS"[..],
            b"MESSAGE\n",
            b"MESSAGE\ncontent-length:3\n\nab",
        ] {
            let mut buf = BytesMut::from(part);
            assert_eq!(codec.decode(&mut buf).unwrap(), None);
            assert_eq!(&buf[..], part);
        }
    }
}
