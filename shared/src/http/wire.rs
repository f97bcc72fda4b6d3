//! The local server's connections. hyper answers some malformed requests itself, before any of
//! our code runs, with an empty body: 431 for headers over its buffer or over 100 of them, 414
//! for a URI over 64 KiB (a limit hyper hard-codes), 400 for a request line or header it cannot
//! parse. It offers no hook for those answers, so each connection's writes pass through
//! `EnvelopeIo`, which recognises such an answer (an error status, an empty body, and no
//! `x-request-id`, which every answer of ours carries) and writes the API's error envelope in its
//! place. hyper closes the connection after these answers; the envelope says so too.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::error::{ErrorBody, ErrorEnvelope};

/// A TCP listener whose connections have Nagle's algorithm off (a streamed chunk must leave at
/// once, not wait ~40 ms for the previous one's ACK) and hyper's own error answers enveloped.
pub struct EnvelopedListener(pub TcpListener);

impl Listener for EnvelopedListener {
    type Io = EnvelopeIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        let _ = tcp.set_nodelay(true);
        (EnvelopeIo { inner: tcp, pending: Vec::new(), written: 0 }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The peer's address, as `ConnectInfo` carries it for this listener.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, EnvelopedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, EnvelopedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

pub struct EnvelopeIo<T> {
    inner: T,
    /// A replacement answer still to be written, and how much of it has been.
    pending: Vec<u8>,
    written: usize,
}

/// hyper's own answer to a request it could not parse, as it writes it: the status line and
/// headers of a 400, 414 or 431 with `content-length: 0` and none of our headers.
fn automatic_answer(buf: &[u8]) -> Option<u16> {
    if buf.len() < 16 || !buf.starts_with(b"HTTP/1.") {
        return None;
    }
    let status = match &buf[9..13] {
        b"400 " => 400,
        b"414 " => 414,
        b"431 " => 431,
        _ => return None,
    };
    let head = std::str::from_utf8(buf).ok()?;
    let lower = head.to_ascii_lowercase();
    (lower.ends_with("\r\n\r\n") && lower.contains("\r\ncontent-length: 0\r\n") && !lower.contains("\r\nx-request-id:")).then_some(status)
}

fn replacement(status: u16) -> Vec<u8> {
    let (reason, code, message) = match status {
        414 => ("URI Too Long", "uri_too_long", "the URI is longer than 65534 bytes; send long values in the request body instead"),
        431 => (
            "Request Header Fields Too Large",
            "headers_too_large",
            "the request's headers are too large: send at most 100 headers and well under 400 KiB of them",
        ),
        _ => ("Bad Request", "invalid_request", "the request is not valid HTTP/1.1: check the request line, the header names and values"),
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let kind = "invalid_request_error".to_string();
    let body = ErrorEnvelope { error: ErrorBody { code: code.into(), message: message.into(), param: None, request_id: request_id.clone(), kind } };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl<T: AsyncWrite + Unpin> EnvelopeIo<T> {
    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `len` bytes of hyper's answer as written, queueing the envelope in their place.
    fn substitute(&mut self, cx: &mut Context<'_>, status: u16, len: usize) -> Poll<io::Result<usize>> {
        self.pending = replacement(status);
        self.written = 0;
        // What cannot be written now is written on the flush hyper makes next.
        if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(len))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EnvelopeIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EnvelopeIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        match automatic_answer(buf) {
            Some(status) => self.substitute(cx, status, buf.len()),
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        // hyper's automatic answers are a head alone, in one slice.
        match bufs.iter().find(|b| !b.is_empty()).and_then(|first| automatic_answer(first)) {
            Some(status) if bufs.iter().filter(|b| !b.is_empty()).count() == 1 => {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.substitute(cx, status, len)
            }
            _ => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::automatic_answer;

    #[test]
    fn only_hypers_own_empty_error_answers_are_recognised() {
        assert_eq!(automatic_answer(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n"), Some(431));
        assert_eq!(automatic_answer(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n"), Some(414));
        assert_eq!(automatic_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: 1\r\n\r\n"), None, "ours carry a request id");
        assert_eq!(automatic_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n\r\n"), None);
        assert_eq!(automatic_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
    }
}
