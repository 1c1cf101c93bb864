//! The HTTP/1 listener: reads the request line of each new connection before the HTTP parser
//! does, so that an address too long for it gets a readable answer.
//!
//! actix's parser refuses a URI over 64 KiB with an empty 400 and logs it as an ERROR (and
//! answers a head over 128 KiB with an empty 431). Here a request line longer than
//! [`MAX_REQUEST_LINE`] is answered `414 URI Too Long` with a short text in both languages and
//! logged as a WARN with its length only; anything shorter goes on to the application
//! unchanged. A later request on a kept-alive connection is checked by
//! [`crate::web::page_middleware`] instead, which answers the same 414 as a page (a URI over
//! 64 KiB there still meets actix's own 400).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

/// Longest request line (method, URI, version) served, in bytes.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;

/// How long a new connection may take to send its request line before it is handed to the HTTP
/// parser as it is (which applies its own request timeout).
const FIRST_LINE_WAIT: Duration = Duration::from_secs(5);

/// Bytes of an over-long request read and dropped before the answer, so that the client reads
/// the answer rather than a reset connection.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// The answer to an over-long request line.
const URI_TOO_LONG: &str = "414 URI Too Long\n\n网址过长（超过 16 KiB），无法处理。请缩短链接或改用表单提交。\nThe address is too long (over 16 KiB) to be served. Shorten the link or send the data in a form.\n";

/// A connection whose first bytes were already read: they are read again first.
pub struct Replayed {
    head: Vec<u8>,
    pos: usize,
    io: TcpStream,
}

impl AsyncRead for Replayed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.pos);
            buf.put_slice(&this.head[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.head.len() {
                this.head = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Reads the request line of a new connection: the connection to serve (with what was read
/// replayed) and its peer, or `Err` when it was answered here (a line over
/// [`MAX_REQUEST_LINE`]) or failed.
pub async fn accept(mut io: TcpStream) -> Result<(Replayed, Option<SocketAddr>), ()> {
    let peer = io.peer_addr().ok();
    let _ = io.set_nodelay(true);
    let mut head = Vec::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + FIRST_LINE_WAIT;
    loop {
        let line = memchr::memchr(b'\n', &head);
        if line.unwrap_or(head.len()) > MAX_REQUEST_LINE {
            refuse(io, head.len()).await;
            return Err(());
        }
        if line.is_some() {
            break;
        }
        head.reserve(4096);
        match tokio::time::timeout_at(deadline, io.read_buf(&mut head)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(()),
        }
    }
    Ok((Replayed { head, pos: 0, io }, peer))
}

/// Answers an over-long request line (`read` bytes of it read) with the 414, then reads and
/// drops what the client still sends until it closes (at most [`DRAIN_LIMIT`] bytes, two
/// seconds), so that it reads the answer rather than a reset connection.
async fn refuse(mut io: TcpStream, read: usize) {
    tracing::warn!(
        "refused a request line of more than {MAX_REQUEST_LINE} bytes ({read} read): 414"
    );
    let answer = format!(
        "HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain; charset=utf-8\r\n\
         x-content-type-options: nosniff\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        URI_TOO_LONG.len(),
        URI_TOO_LONG
    );
    if io.write_all(answer.as_bytes()).await.is_err() || io.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let drain = async {
        let mut dropped = 0;
        while dropped < DRAIN_LIMIT {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}
