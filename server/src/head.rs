//! The first request head of a plain TCP connection, read before hyper gets the socket.
//!
//! A hyper connection allocates its 8 KiB write buffer when it is made and an 8 KiB read
//! buffer at its first read: 16 KiB for every socket that has sent a byte, which is what a
//! slowloris client holds open by the thousand. Until the head is whole, a connection here
//! costs its task and the bytes it has actually sent (nginx's `client_header_buffer_size` idea:
//! no buffer before there is data to put in it). Then hyper parses the head from
//! [`Rewind`]'s copy and carries on with the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Reads from `stream` until the blank line that ends a request head, or `max` bytes (hyper
/// then answers a head too large), or the end of the stream. Returns the bytes read, which
/// may run past the head (a body, a pipelined request); `Ok` with fewer bytes than a head
/// means the peer closed. `partial` is called once, when the first bytes are not a whole
/// head.
pub(crate) async fn read_head(
    stream: &TcpStream,
    max: usize,
    partial: impl FnOnce(),
) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut partial = Some(partial);
    loop {
        stream.readable().await?;
        // Not held across the await above: the task keeps only what arrived.
        let mut chunk = [0u8; 1024];
        match stream.try_read(&mut chunk) {
            Ok(0) => return Ok(head),
            Ok(n) => {
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&chunk[..n]);
                if head.len() >= max || head[from..].windows(4).any(|w| w == b"\r\n\r\n") {
                    return Ok(head);
                }
                if let Some(f) = partial.take() {
                    f();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// A stream that first yields `prefix` (bytes already read from it), then reads on.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }

    /// The prefix not yet read, and the stream.
    pub(crate) fn into_parts(self) -> (Vec<u8>, S) {
        let mut prefix = self.prefix;
        prefix.drain(..self.pos);
        (prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.prefix.get(this.pos..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_head_is_read_as_it_trickles_in_then_replayed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for part in [&b"GET / HTTP/1.1\r"[..], b"\nHost: x\r\n\r", b"\nbody"] {
                s.write_all(part).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            s
        });
        let (server, _) = listener.accept().await.unwrap();
        let mut partial = false;
        let head = read_head(&server, 8192, || partial = true).await.unwrap();
        assert!(partial);
        let whole = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody";
        // Up to the blank line at least, perhaps the body too if it came in the same read.
        assert!(head.len() >= 27 && whole.starts_with(&head), "{head:?}");
        let _client = client.await.unwrap();
        let mut r = Rewind::new(head, server);
        let mut all = vec![0u8; whole.len()];
        r.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, whole);
        let (rest, _) = r.into_parts();
        assert!(rest.is_empty());

        // A head too large stops at the limit.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&[b'a'; 3000]).await.unwrap();
            s
        });
        let (server, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        let head = read_head(&server, 1000, || ()).await.unwrap();
        assert!((1000..=2024).contains(&head.len()), "{}", head.len());

        let r = Rewind::new(b"abc".to_vec(), ());
        assert_eq!(r.into_parts().0, b"abc");
    }
}
