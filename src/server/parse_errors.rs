//! hyper answers a request it cannot parse by itself (400 for a broken request line or
//! header, 431 for a head over [`MAX_HEAD_BYTES`](super::MAX_HEAD_BYTES), 414 for a URI too
//! long) with an empty body, before any route sees it. This connection wrapper gives those
//! answers the same JSON body as every other error: it recognises them on the way out as a
//! 4xx head with no `content-type` (every answer of ours has one) and rewrites them.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose automatic parse-error answers get JSON bodies.
#[derive(Debug)]
pub struct JsonParseErrors<T> {
    inner: T,
    /// A rewritten answer still being written, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonParseErrors<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// The JSON answer for one of hyper's automatic answers, or `None` for anything else.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    // Only a whole head with nothing after it: hyper's automatic answers have no body.
    if end + 4 != head.len() || !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let text = std::str::from_utf8(head.get(..end)?).ok()?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let headers: Vec<&str> = lines.collect();
    if headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
    {
        return None;
    }
    let (code, message) = match status_line.get(9..12)? {
        "400" => (
            "bad_request",
            "the request is not valid HTTP/1.1".to_owned(),
        ),
        "431" => (
            "headers_too_large",
            format!("the request head is over {} bytes", super::MAX_HEAD_BYTES),
        ),
        "414" => ("uri_too_long", "the request URI is too long".to_owned()),
        _ => return None,
    };
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut answer = format!("{status_line}\r\n");
    // hyper's own framing headers are replaced by ours (it may say `connection: close`
    // already; once is enough).
    for header in headers {
        let lower = header.to_ascii_lowercase();
        if !lower.starts_with("content-length:") && !lower.starts_with("connection:") {
            answer.push_str(header);
            answer.push_str("\r\n");
        }
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(answer.into_bytes())
}

impl<T: AsyncWrite + Unpin> JsonParseErrors<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.pending.get(self.written..).filter(|r| !r.is_empty()) {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonParseErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonParseErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = rewrite(buf) {
            self.pending = answer;
            self.written = 0;
            // The rewritten answer stands for the whole of `buf`; it is written out here and
            // by the flush that follows.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each head whole in one buffer, where it is recognised.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_automatic_answers_are_rewritten() {
        let automatic = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let answer = String::from_utf8(rewrite(automatic).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("date: x"));
        assert_eq!(head.matches("connection: close").count(), 1, "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "bad_request");
        let large = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(
            String::from_utf8(rewrite(large).unwrap())
                .unwrap()
                .contains("headers_too_large")
        );
        for ours in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert_eq!(rewrite(ours), None, "{}", String::from_utf8_lossy(ours));
        }
    }
}
