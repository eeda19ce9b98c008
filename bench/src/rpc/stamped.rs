//! A TCP stream that remembers when the kernel received the bytes of its
//! latest read (`SO_TIMESTAMPNS`, the system clock). On loopback the kernel
//! stamps a segment as the sender's `write` delivers it, so the stamp tells
//! when the server sent a message, however long the load generator took to
//! get round to reading it.

use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A [`TcpStream`] reading with `recvmsg`, keeping the receive time.
pub struct Stamped {
    inner: TcpStream,
    /// Room for the control messages of one `recvmsg`, when stamping.
    cmsg: Option<Vec<u8>>,
    /// When the kernel received the bytes of the latest read, since the Unix epoch.
    pub received: Option<Duration>,
}

impl Stamped {
    /// Wraps `inner`; with `stamp`, asks the kernel for receive times.
    pub fn new(inner: TcpStream, stamp: bool) -> io::Result<Stamped> {
        let cmsg = if stamp {
            setsockopt(&inner, sockopt::ReceiveTimestampns, &true)?;
            Some(nix::cmsg_space!(nix::sys::time::TimeSpec))
        } else {
            None
        };
        Ok(Stamped { inner, cmsg, received: None })
    }
}

impl AsyncRead for Stamped {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(cmsg) = this.cmsg.as_mut() else { return Pin::new(&mut this.inner).poll_read(cx, buf) };
        loop {
            ready!(this.inner.poll_read_ready(cx))?;
            let fd = this.inner.as_raw_fd();
            let unfilled = buf.initialize_unfilled();
            let read = this.inner.try_io(Interest::READABLE, || {
                let mut iov = [io::IoSliceMut::new(unfilled)];
                let msg = recvmsg::<()>(fd, &mut iov, Some(cmsg.as_mut_slice()), MsgFlags::empty())?;
                let mut stamp = None;
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        stamp = Some(Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32));
                    }
                }
                Ok((msg.bytes, stamp))
            });
            match read {
                Ok((n, stamp)) => {
                    if stamp.is_some() {
                        this.received = stamp;
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Stamped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
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
