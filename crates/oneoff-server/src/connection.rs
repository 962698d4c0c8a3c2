//! Accepted connections, and the deadline on their writes: a peer that takes no byte for a
//! while is disconnected, whatever the response.
//!
//! A WebSocket viewer that stops reading is closed by its own stream after
//! `viewer_send_timeout` (1013, with where to resume). Nothing above the socket can do that for
//! an SSE body or a download: hyper polls a body only when the socket takes more, so the code
//! that would notice never runs, and the connection stayed open for as long as the client
//! kept it, holding a viewer slot and holding up the server's stop. [`WriteDeadline`] puts the
//! deadline below hyper: a write that finds the socket full arms a timer, any write that goes
//! through disarms it, and once it fires the write fails, which closes the connection.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

/// The server's listener: every accepted connection with Nagle's algorithm off (log messages
/// are small writes that must leave at once, not wait for the previous one's ACK) and a
/// [`WriteDeadline`] of `write_timeout`.
pub struct Listener {
    tcp: TcpListener,
    write_timeout: Duration,
}

impl Listener {
    pub fn new(tcp: TcpListener, write_timeout: Duration) -> Listener {
        Listener { tcp, write_timeout }
    }
}

impl axum::serve::Listener for Listener {
    type Io = WriteDeadline<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's accept logs and retries the errors a busy server meets (EMFILE, ECONNABORTED).
        let (stream, peer) = axum::serve::Listener::accept(&mut self.tcp).await;
        let _ = stream.set_nodelay(true);
        (WriteDeadline::new(stream, self.write_timeout), peer)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// A byte stream whose writes fail once the peer has taken nothing for `timeout`.
pub struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// The timer of the current stall; reset, not reallocated, at the next one.
    stall: Pin<Box<Sleep>>,
    stalled: bool,
}

impl<T> WriteDeadline<T> {
    pub fn new(inner: T, timeout: Duration) -> WriteDeadline<T> {
        WriteDeadline { inner, timeout, stall: Box::pin(tokio::time::sleep(timeout)), stalled: false }
    }

    /// What a write that made no progress returns: still pending, or the deadline's error.
    fn poll_stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if !self.stalled {
            self.stalled = true;
            self.stall.as_mut().reset(Instant::now() + self.timeout);
        }
        match self.stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer took no byte for {:?}", self.timeout),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Disarms the deadline when a write went through (or failed on its own).
    fn progressed<R>(&mut self, result: Poll<io::Result<R>>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match result {
            Poll::Ready(result) => {
                self.stalled = false;
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_stalled(cx),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progressed(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progressed(result, cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A peer that stops reading: writes fill the pipe, then fail once the deadline passes
    /// with nothing taken; a peer that reads in time keeps the stream alive however long the
    /// whole transfer lasts.
    #[tokio::test(start_paused = true)]
    async fn a_write_fails_once_the_peer_took_nothing_for_the_timeout_and_not_before() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut stream = WriteDeadline::new(near, Duration::from_secs(10));
        let block = vec![b'x'; 1024];
        stream.write_all(&block).await.unwrap();
        let started = Instant::now();
        let error = stream.write_all(&block).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10), "failed exactly at the deadline");

        let (near, mut far_reader) = tokio::io::duplex(1024);
        let mut stream = WriteDeadline::new(near, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut taken = Vec::new();
            let mut piece = [0u8; 512];
            loop {
                tokio::time::sleep(Duration::from_secs(6)).await;
                match far_reader.read(&mut piece).await.unwrap() {
                    0 => return taken.len(),
                    count => taken.extend_from_slice(&piece[..count]),
                }
            }
        });
        // 8 KiB at 512 bytes every 6 s: about 96 s in all, never 10 s without progress.
        for _ in 0..8 {
            stream.write_all(&block).await.expect("a peer that reads in time is never cut off");
        }
        stream.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 8 * 1024);
    }
}
