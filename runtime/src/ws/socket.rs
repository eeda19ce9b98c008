//! The server's side of a WebSocket (RFC 6455) over the upgraded connection:
//! the opening handshake's answer, frames read and checked, messages written.
//!
//! It does only what the protocol of docs/protocol.md needs: text messages,
//! in one frame or several, pings answered with pongs, and the closing
//! handshake. No extension is offered, so compressed frames are refused, and
//! binary messages are read only to be refused by the caller.
//!
//! It holds no buffer while a connection is idle. Frames are read into a
//! buffer on the stack and handled there; only the start of a frame whose
//! rest has not arrived, or frames read beyond the one returned, are kept on
//! the heap until they are used. An unfinished frame's buffer grows by
//! doubling as its bytes arrive (from 4 KiB), up to the frame's size, and a
//! message in several frames grows no further than the message size limit. Output is framed straight into
//! one buffer (a reply's JSON is written into its frame in place), written with one system call and then
//! freed.
//!
//! The socket's writing half is shared (see [`Socket::writer`]): the
//! connection's outbox may write an event straight to it while the
//! connection's task is not writing (see `pubsub::Outbox`).

use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The GUID of RFC 6455, section 1.3, hashed with the client's key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Bytes read from the socket at a time (on the stack).
const READ_CHUNK: usize = 4096;
/// The largest payload of a control frame (RFC 6455, section 5.5).
const MAX_CONTROL: usize = 125;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The protocol error close code.
const PROTOCOL_ERROR: u16 = 1002;
/// The close code for a text message that is not UTF-8.
const NOT_UTF8: u16 = 1007;
/// The close code for a message over the size limit.
const TOO_BIG: u16 = 1009;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub(crate) fn accept_key(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut hash = sha1::Sha1::new();
    hash.update(key);
    hash.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(hash.finalize())
}

/// A message from the client.
#[derive(Debug, PartialEq)]
pub(crate) enum Received {
    Text(String),
    /// A binary message (its bytes are not kept: the protocol has none).
    Binary,
    /// A ping; its pong is already queued.
    Ping,
    Pong,
    /// The client began the closing handshake; the answering close frame is
    /// already queued.
    Close,
}

/// Why the client's frames cannot be read: the connection is to be closed
/// with this code and reason.
#[derive(Debug, PartialEq)]
pub(crate) struct Fault {
    pub code: u16,
    pub reason: &'static str,
}

const fn fault(code: u16, reason: &'static str) -> Fault {
    Fault { code, reason }
}

/// The TCP stream under an upgraded HTTP connection, and the bytes the HTTP
/// server read past the request (frames the client sent at once); `None`
/// when the connection is not a TCP stream, which [`crate::App::serve`]'s
/// connections always are.
pub(crate) fn tcp_stream(upgraded: Upgraded) -> Option<(TcpStream, bytes::Bytes)> {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => Some((parts.io.into_inner(), parts.read_buf)),
        Err(_) => {
            crate::errln!("ssrun: an upgraded connection is not a TCP stream: closed");
            None
        }
    }
}

/// A message that came in several frames, so far.
struct Partial {
    text: bool,
    bytes: Vec<u8>,
}

/// The server's end of one WebSocket.
pub(crate) struct Socket {
    io: OwnedReadHalf,
    /// Shared with the connection's outbox while it may write to it.
    writer: Arc<OwnedWriteHalf>,
    /// Bytes read and not handled yet, from `start` on. Empty, with nothing
    /// allocated, whenever everything read has been handled.
    pending: Vec<u8>,
    start: usize,
    partial: Option<Partial>,
    /// The largest message read, in bytes.
    max_message: usize,
    /// Frames to write.
    out: Vec<u8>,
    /// Bytes arrived since [`Socket::take_progress`] last looked.
    progress: bool,
}

/// One frame found at the start of a buffer, its payload unmasked in place.
struct Frame {
    fin: bool,
    opcode: u8,
    /// Where the payload is, from the start of the frame.
    payload: std::ops::Range<usize>,
}

impl Frame {
    fn size(&self) -> usize {
        self.payload.end
    }
}

/// What [`parse`] found at the start of a buffer.
enum Parsed {
    Whole(Frame),
    /// A frame not all there yet: its whole size (header, masking key and
    /// payload) once its header has arrived, checked against the limit.
    Unfinished(Option<usize>),
}

/// What [`read_frames`] stopped at.
enum Next {
    /// A message, or a fault.
    Found(Result<Received, Fault>),
    /// A frame not all there yet (see [`Parsed::Unfinished`]), or nothing.
    Unfinished(Option<usize>),
}

/// Reads the frame at the start of `buf`, if all of it is there, and unmasks
/// its payload in place. A data frame must continue a message when one is
/// `under_way`, and only then, and may carry at most `room` bytes (what is
/// left of the message size limit): a larger one is refused as soon as its
/// header is read, before its payload arrives.
fn parse(buf: &mut [u8], room: usize, under_way: bool) -> Result<Parsed, Fault> {
    let [b0, b1, ..] = *buf else { return Ok(Parsed::Unfinished(None)) };
    if b0 & 0x70 != 0 {
        return Err(fault(PROTOCOL_ERROR, "reserved bits set: no extension was agreed"));
    }
    let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0F);
    if b1 & 0x80 == 0 {
        return Err(fault(PROTOCOL_ERROR, "a client's frames must be masked"));
    }
    let Some((len, mut at)) = payload_length(buf)? else { return Ok(Parsed::Unfinished(None)) };
    match opcode {
        CONTINUATION | TEXT | BINARY => {
            if under_way && opcode != CONTINUATION {
                return Err(fault(PROTOCOL_ERROR, "a new message began before the last one ended"));
            }
            if !under_way && opcode == CONTINUATION {
                return Err(fault(PROTOCOL_ERROR, "a continuation frame with no message to continue"));
            }
            if len > room as u64 {
                return Err(fault(TOO_BIG, "message too big"));
            }
        }
        CLOSE | PING | PONG => {
            if !fin {
                return Err(fault(PROTOCOL_ERROR, "a control frame must not be fragmented"));
            }
            if len > MAX_CONTROL as u64 {
                return Err(fault(PROTOCOL_ERROR, "a control frame carries at most 125 bytes"));
            }
        }
        _ => return Err(fault(PROTOCOL_ERROR, "unknown opcode")),
    }
    // Within `room` or 125, so it fits a usize.
    let len = len as usize;
    let unfinished = Parsed::Unfinished(Some(at + 4 + len));
    let Some(key) = buf.get(at..at + 4) else { return Ok(unfinished) };
    let key: [u8; 4] = key.try_into().expect("four bytes");
    at += 4;
    let Some(payload) = buf.get_mut(at..at + len) else { return Ok(unfinished) };
    unmask(payload, key);
    Ok(Parsed::Whole(Frame { fin, opcode, payload: at..at + len }))
}

/// The payload length of the frame at the start of `buf` and where its
/// masking key starts, once that much of the frame has arrived.
fn payload_length(buf: &[u8]) -> Result<Option<(u64, usize)>, Fault> {
    let Some(b1) = buf.get(1) else { return Ok(None) };
    Ok(match b1 & 0x7F {
        126 => buf.get(2..4).map(|b| (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)),
        127 => match buf.get(2..10) {
            Some(b) => match u64::from_be_bytes(b.try_into().expect("eight bytes")) {
                len if len >> 63 != 0 => return Err(fault(PROTOCOL_ERROR, "a frame's length takes 63 bits at most")),
                len => Some((len, 10)),
            },
            None => None,
        },
        n => Some((u64::from(n), 2)),
    })
}

/// XORs `payload` with the masking key, eight bytes at a time.
fn unmask(payload: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes((&*chunk).try_into().expect("eight bytes")) ^ wide;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    // The rest starts at a multiple of eight, so at the key's first byte.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

/// Whether a close code may be sent by a peer (RFC 6455, section 7.4).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Handles one frame that [`parse`] let through: a message is returned; a
/// fragment is kept in `partial`, which never grows past `max_message`; a
/// ping's pong and a close's answer are queued in `out`.
fn take(
    partial: &mut Option<Partial>,
    out: &mut Vec<u8>,
    max_message: usize,
    opcode: u8,
    fin: bool,
    payload: &[u8],
) -> Result<Option<Received>, Fault> {
    match opcode {
        TEXT | BINARY => {
            let text = opcode == TEXT;
            if !fin {
                *partial = Some(Partial { text, bytes: payload.to_vec() });
                return Ok(None);
            }
            if !text {
                return Ok(Some(Received::Binary));
            }
            match std::str::from_utf8(payload) {
                Ok(s) => Ok(Some(Received::Text(s.to_owned()))),
                Err(_) => Err(fault(NOT_UTF8, "text frame is not UTF-8")),
            }
        }
        CONTINUATION => {
            let started = partial.as_mut().expect("parse passes a continuation only while a message is under way");
            let bytes = &mut started.bytes;
            if bytes.capacity() - bytes.len() < payload.len() {
                // Double, as a Vec would, but not past the limit: parse let
                // the frame through, so the whole message is within it.
                let size = (bytes.len() + payload.len()).max(bytes.capacity() * 2).min(max_message);
                debug_assert!(size >= bytes.len() + payload.len(), "parse keeps a message within the limit");
                bytes.reserve_exact(size - bytes.len());
            }
            bytes.extend_from_slice(payload);
            if !fin {
                return Ok(None);
            }
            let Partial { text, bytes } = partial.take().expect("a message under way");
            if !text {
                return Ok(Some(Received::Binary));
            }
            match String::from_utf8(bytes) {
                Ok(s) => Ok(Some(Received::Text(s))),
                Err(_) => Err(fault(NOT_UTF8, "text frame is not UTF-8")),
            }
        }
        PING => {
            frame_into(out, PONG, payload);
            Ok(Some(Received::Ping))
        }
        PONG => Ok(Some(Received::Pong)),
        CLOSE => {
            match payload {
                [] => frame_into(out, CLOSE, &[]),
                [_] => return Err(fault(PROTOCOL_ERROR, "a close frame's code takes two bytes")),
                [hi, lo, reason @ ..] => {
                    let code = u16::from_be_bytes([*hi, *lo]);
                    if !valid_close_code(code) {
                        return Err(fault(PROTOCOL_ERROR, "invalid close code"));
                    }
                    if std::str::from_utf8(reason).is_err() {
                        return Err(fault(NOT_UTF8, "close reason is not UTF-8"));
                    }
                    // The usual answer: the same code, no reason.
                    frame_into(out, CLOSE, &code.to_be_bytes());
                }
            }
            Ok(Some(Received::Close))
        }
        _ => unreachable!("opcodes are checked by parse"),
    }
}

/// Handles the frames at the start of `buf` until one completes a message,
/// one breaks the protocol, or what is left is not a whole frame. Gives the
/// bytes used, and what it stopped at.
fn read_frames(buf: &mut [u8], max_message: usize, partial: &mut Option<Partial>, out: &mut Vec<u8>) -> (usize, Next) {
    let mut at = 0;
    loop {
        let room = max_message - partial.as_ref().map_or(0, |p| p.bytes.len());
        let frame = match parse(&mut buf[at..], room, partial.is_some()) {
            Ok(Parsed::Whole(frame)) => frame,
            Ok(Parsed::Unfinished(size)) => return (at, Next::Unfinished(size)),
            Err(e) => return (at, Next::Found(Err(e))),
        };
        let payload = &buf[at + frame.payload.start..at + frame.payload.end];
        let taken = take(partial, out, max_message, frame.opcode, frame.fin, payload);
        at += frame.size();
        match taken {
            Ok(None) => {}
            Ok(Some(message)) => return (at, Next::Found(Ok(message))),
            Err(e) => return (at, Next::Found(Err(e))),
        }
    }
}

/// A close frame's payload: the code, and as much of the reason as fits a
/// control frame, cut at a character boundary.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    payload
}

/// A text message framed for writing.
pub(crate) fn text_frame(text: &str) -> Bytes {
    let mut out = Vec::new();
    frame_into(&mut out, TEXT, text.as_bytes());
    out.into()
}

/// Appends one unmasked, final text frame to `out`, its payload written by
/// `write` in place: after a one-byte length, moved along when the payload
/// turns out to need a longer one (126 bytes or more: rarer, and then
/// small beside the payload's own writing).
fn framed_in_place(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    out.push(0x80 | TEXT);
    let at = out.len();
    out.push(0);
    write(out);
    let len = out.len() - at - 1;
    if len < 126 {
        out[at] = len as u8;
    } else if let Ok(short) = u16::try_from(len) {
        out[at] = 126;
        out.splice(at + 1..at + 1, short.to_be_bytes());
    } else {
        out[at] = 127;
        out.splice(at + 1..at + 1, (len as u64).to_be_bytes());
    }
}

/// Appends one unmasked, final frame to `out`.
fn frame_into(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    out.reserve(len + 10);
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

impl Socket {
    /// A WebSocket over `io`; `read` holds bytes already read from it.
    pub(crate) fn new(io: TcpStream, read: &[u8], max_message: usize) -> Socket {
        let (io, writer) = io.into_split();
        Socket {
            io,
            writer: Arc::new(writer),
            pending: read.to_vec(),
            start: 0,
            partial: None,
            max_message,
            out: Vec::new(),
            progress: false,
        }
    }

    /// The writing half, for writes that do not go through this socket. They
    /// must never overlap this socket's own writes, and must leave no frame
    /// unfinished when it writes (see [`Socket::queue_first`]).
    pub(crate) fn writer(&self) -> Arc<OwnedWriteHalf> {
        self.writer.clone()
    }

    /// The next message: `None` once the client is gone (the connection
    /// ended, with or without its closing handshake, or failed).
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Received, Fault>>> {
        loop {
            // Frames already read; what is left of them (kept in `pending`
            // whenever something is) is one unfinished frame, of this size
            // once its header has arrived.
            let mut size = None;
            if self.start < self.pending.len() {
                let unread = &mut self.pending[self.start..];
                let (used, next) = read_frames(unread, self.max_message, &mut self.partial, &mut self.out);
                self.start += used;
                if self.start == self.pending.len() {
                    self.pending = Vec::new();
                    self.start = 0;
                }
                match next {
                    Next::Found(found) => return Poll::Ready(Some(found)),
                    Next::Unfinished(unfinished) => size = unfinished,
                }
            }
            if self.pending.is_empty() {
                // Read onto the stack, and keep only what is not handled now.
                let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
                let mut buf = ReadBuf::uninit(&mut chunk);
                match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                    Ok(()) if buf.filled().is_empty() => return Poll::Ready(None),
                    Ok(()) => self.progress = true,
                    Err(_) => return Poll::Ready(None),
                }
                let read = buf.filled_mut();
                let (used, next) = read_frames(read, self.max_message, &mut self.partial, &mut self.out);
                self.pending.extend_from_slice(&read[used..]);
                if let Next::Found(found) = next {
                    return Poll::Ready(Some(found));
                }
            } else {
                // The rest of a frame: read onto the heap, after what is
                // there. When the buffer is full it grows by doubling what
                // has arrived (at least a chunk), up to the frame's size once
                // the header says it: never by what the header claims, which
                // a client need never send. Each read takes all the room.
                if self.start > 0 {
                    self.pending.drain(..self.start);
                    self.start = 0;
                }
                let have = self.pending.len();
                let most = size.unwrap_or(have + READ_CHUNK);
                if self.pending.capacity() > most {
                    // Left from a larger frame before this one.
                    self.pending.shrink_to(most);
                }
                if self.pending.capacity() == have {
                    let room = size.map_or(READ_CHUNK, |size| (size - have).min(have.max(READ_CHUNK)));
                    self.pending.reserve_exact(room);
                }
                let read = {
                    // Reads into the spare capacity, and no further.
                    let mut reading = std::pin::pin!(self.io.read_buf(&mut self.pending));
                    reading.as_mut().poll(cx)
                };
                match ready!(read) {
                    Ok(n) if n > 0 => self.progress = true,
                    _ => return Poll::Ready(None),
                }
            }
        }
    }

    /// Whether bytes arrived since the last look: a client sending a large
    /// message slowly is not silent, though no message is whole yet.
    pub(crate) fn take_progress(&mut self) -> bool {
        std::mem::take(&mut self.progress)
    }

    /// The next message (see [`Socket::poll_next`]).
    pub(crate) async fn next(&mut self) -> Option<Result<Received, Fault>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Queues a text message.
    pub(crate) fn queue_text(&mut self, text: &str) {
        frame_into(&mut self.out, TEXT, text.as_bytes());
    }

    /// Queues a text message that `write` writes straight into the output,
    /// with no buffer of its own; `size` is about how long it usually is.
    /// What it writes must be UTF-8 (the server's own JSON): it is not
    /// checked again.
    pub(crate) fn queue_text_with(&mut self, size: usize, write: impl FnOnce(&mut Vec<u8>)) {
        // Room for a usual message at once, rather than growing to it.
        self.out.reserve(2 + size);
        framed_in_place(&mut self.out, write);
    }

    /// Queues a close frame with this code and reason (cut to fit a control
    /// frame, at a character boundary).
    fn queue_close(&mut self, code: u16, reason: &str) {
        frame_into(&mut self.out, CLOSE, &close_payload(code, reason));
    }

    /// Queues bytes to write before everything queued: the rest of a frame
    /// that another writer started (see [`Socket::writer`]).
    pub(crate) fn queue_first(&mut self, rest: &[u8]) {
        self.out.splice(0..0, rest.iter().copied());
    }

    /// Writes what is queued without waiting: `true` once all of it is
    /// written (and the buffer freed), `false` when the socket takes no more
    /// for now (what is left stays queued).
    pub(crate) fn try_flush(&mut self) -> std::io::Result<bool> {
        let mut written = 0;
        while written < self.out.len() {
            match self.writer.try_write(&self.out[written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.out.drain(..written);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
        self.out = Vec::new();
        Ok(true)
    }

    /// Writes what is queued, and frees the buffer. Dropped before it ends,
    /// it leaves what it did not write queued.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        while !self.try_flush()? {
            self.writer.writable().await?;
        }
        Ok(())
    }

    /// Closes the connection with this code and reason: queues the close
    /// frame and writes what is queued, giving up after `write_limit`; once
    /// written, lingers for up to `linger` (see [`Socket::linger`]) so that
    /// the peer reads the frame before the connection goes. `None` leaves
    /// at once.
    pub(crate) async fn close(&mut self, code: u16, reason: &str, write_limit: Duration, linger: Option<Duration>) {
        self.queue_close(code, reason);
        let written = matches!(tokio::time::timeout(write_limit, self.flush()).await, Ok(Ok(())));
        if let (true, Some(limit)) = (written, linger) {
            self.linger(limit).await;
        }
    }

    /// Ends the connection after a close frame has been written: says so to
    /// the peer (FIN), then reads and drops what it still sends until it
    /// closes its side or `limit` passes. Closing a socket with unread bytes
    /// would reset the connection, and a reset can discard the close frame
    /// before the client reads it.
    async fn linger(&mut self, limit: Duration) {
        // Shut down only by its last holder: another (an outbox) could
        // still write after it.
        let Some(writer) = Arc::get_mut(&mut self.writer) else {
            debug_assert!(false, "a socket closed while another writer holds it");
            return;
        };
        if writer.shutdown().await.is_err() {
            return;
        }
        let drain = async {
            // On the heap: a buffer here would be part of every connection
            // task's state, for its whole life.
            let mut sink = vec![0u8; 1024];
            while matches!(self.io.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(limit, drain).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's frame: masked with a fixed key.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![first];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        frame
    }

    fn parse_all(bytes: &[u8], max: usize) -> Vec<Result<Received, Fault>> {
        let mut buf = bytes.to_vec();
        let (mut partial, mut out, mut at, mut found) = (None, Vec::new(), 0, Vec::new());
        loop {
            let (used, next) = read_frames(&mut buf[at..], max, &mut partial, &mut out);
            at += used;
            match next {
                Next::Found(Ok(message)) => found.push(Ok(message)),
                Next::Found(Err(e)) => {
                    found.push(Err(e));
                    return found;
                }
                Next::Unfinished(_) => return found,
            }
        }
    }

    #[test]
    fn the_accept_key_is_the_one_of_the_rfc() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn text_in_one_frame_or_several_with_a_ping_between() {
        let mut bytes = client_frame(0x81, b"hello");
        bytes.extend(client_frame(0x01, "gr\u{fc}".as_bytes()));
        bytes.extend(client_frame(0x89, b"are you there"));
        bytes.extend(client_frame(0x80, "\u{df}e".as_bytes()));
        assert_eq!(
            parse_all(&bytes, 1024),
            [Ok(Received::Text("hello".into())), Ok(Received::Ping), Ok(Received::Text("gr\u{fc}\u{df}e".into()))]
        );
    }

    #[test]
    fn every_length_encoding_and_an_unmasking_across_words() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 65_535, 65_536, 70_001] {
            let text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let bytes = client_frame(0x81, text.as_bytes());
            assert_eq!(parse_all(&bytes, 100_000), [Ok(Received::Text(text))], "length {len}");
            // Cut anywhere before the end, the frame is not there yet; its
            // size is known once its header is.
            let header = bytes.len() - len - 4;
            for cut in [0, 1, 2, header - 1, header, bytes.len() - 1] {
                let size = match parse(&mut bytes[..cut].to_vec(), 100_000, false) {
                    Ok(Parsed::Unfinished(size)) => size,
                    _ => panic!("length {len}, cut {cut}: not unfinished"),
                };
                let expected = (cut >= header).then_some(bytes.len());
                assert_eq!(size, expected, "length {len}, cut {cut}");
            }
        }
    }

    #[test]
    fn pings_are_answered_with_their_payload_and_closes_with_their_code() {
        let (mut partial, mut out) = (None, Vec::new());
        assert_eq!(take(&mut partial, &mut out, 1024, PING, true, b"abc"), Ok(Some(Received::Ping)));
        assert_eq!(out, [0x8A, 3, b'a', b'b', b'c']);
        out.clear();
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.extend_from_slice(b"bye");
        assert_eq!(take(&mut partial, &mut out, 1024, CLOSE, true, &close), Ok(Some(Received::Close)));
        assert_eq!(out, [0x88, 2, 0x03, 0xE8]);
        out.clear();
        assert_eq!(take(&mut partial, &mut out, 1024, CLOSE, true, &[]), Ok(Some(Received::Close)));
        assert_eq!(out, [0x88, 0]);
    }

    #[test]
    fn broken_frames_are_refused_with_the_code_that_says_why() {
        let code = |bytes: Vec<u8>, max| match parse_all(&bytes, max).pop() {
            Some(Err(e)) => e.code,
            other => panic!("{other:?}"),
        };
        // Unmasked.
        assert_eq!(code(vec![0x81, 0x01, b'a'], 100), 1002);
        // A reserved bit (compression, never agreed).
        assert_eq!(code(client_frame(0xC1, b"a"), 100), 1002);
        assert_eq!(code(client_frame(0x83, b"a"), 100), 1002, "opcode 3");
        assert_eq!(code(client_frame(0x09, b"a"), 100), 1002, "a fragmented ping");
        assert_eq!(code(client_frame(0x89, &[0; 126]), 1000), 1002, "a long ping");
        assert_eq!(code(client_frame(0x80, b"a"), 100), 1002, "a continuation of nothing");
        let mut two = client_frame(0x01, b"a");
        two.extend(client_frame(0x81, b"b"));
        assert_eq!(code(two, 100), 1002, "a message inside a message");
        assert_eq!(code(client_frame(0x81, &[0xC3, 0x28]), 100), 1007);
        let mut split = client_frame(0x01, &[0xE2, 0x82]);
        split.extend(client_frame(0x80, &[0x28]));
        assert_eq!(code(split, 100), 1007, "not UTF-8 once joined");
        assert_eq!(code(client_frame(0x88, &[3]), 100), 1002, "half a close code");
        assert_eq!(code(client_frame(0x88, &1005u16.to_be_bytes()), 100), 1002, "a code only for reports");
        assert_eq!(code(client_frame(0x88, &[0x03, 0xE8, 0xFF]), 100), 1007);
        // Too big: in one frame, or in pieces that add up.
        assert_eq!(code(client_frame(0x81, &[b'a'; 101]), 100), 1009);
        let mut pieces = client_frame(0x01, &[b'a'; 60]);
        pieces.extend(client_frame(0x80, &[b'a'; 41]));
        assert_eq!(code(pieces, 100), 1009);
        // Refused on its header alone, before a payload it would have to hold.
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(parse(&mut header, 100, false).map(|_| ()), Err(fault(TOO_BIG, "message too big")));
        // Codes for what breaks the protocol come before the size.
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(parse(&mut huge, 100, false).map(|_| ()).unwrap_err().code, 1002, "a 64th length bit");
        let mut stray = client_frame(0x00, &[b'a'; 200]);
        assert_eq!(parse(&mut stray, 100, false).map(|_| ()).unwrap_err().code, 1002, "a long stray continuation");
        assert_eq!(parse(&mut stray, 100, true).map(|_| ()).unwrap_err().code, 1009, "the same, continuing");
        let mut inside = client_frame(0x81, &[b'a'; 200]);
        assert_eq!(parse(&mut inside, 100, true).map(|_| ()).unwrap_err().code, 1002, "a long message inside one");
        // A binary message is read, to be refused by the caller.
        assert_eq!(parse_all(&client_frame(0x82, &[1, 2]), 100), [Ok(Received::Binary)]);
    }

    #[test]
    fn a_message_in_pieces_grows_its_buffer_no_further_than_the_limit() {
        let mut bytes = client_frame(0x01, &[b'a'; 300]);
        bytes.extend(client_frame(0x00, &[b'b'; 300]));
        bytes.extend(client_frame(0x00, &[b'c'; 300]));
        bytes.extend(client_frame(0x80, &[b'd'; 100]));
        match parse_all(&bytes, 1000).pop() {
            Some(Ok(Received::Text(text))) => {
                assert_eq!(text.len(), 1000);
                assert!(text.capacity() <= 1000, "capacity {}", text.capacity());
            }
            other => panic!("{other:?}"),
        }
    }

    /// Polls `socket` until it holds `n` bytes of an unfinished frame.
    async fn read_up_to(socket: &mut Socket, n: usize) {
        let read_all = async {
            while socket.pending.len() < n {
                unfinished(socket).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), read_all).await.expect("the bytes sent are read");
    }

    /// Polls `socket` once, expecting no message yet.
    async fn unfinished(socket: &mut Socket) {
        let polled = std::future::poll_fn(|cx| Poll::Ready(socket.poll_next(cx))).await;
        assert!(polled.is_pending(), "{polled:?}");
    }

    #[tokio::test]
    async fn a_frame_that_arrives_in_pieces_is_held_in_a_buffer_no_larger_than_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let text: String = (0..70_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let big = client_frame(0x81, text.as_bytes());
        let small = client_frame(0x81, b"after");
        // Bytes the HTTP server read past the request: a large frame and the
        // start of a small one.
        let mut read = big.clone();
        read.extend_from_slice(&small[..3]);
        let mut socket = Socket::new(server, &read, 100_000);
        assert_eq!(socket.next().await, Some(Ok(Received::Text(text.clone()))));
        // The small frame's start no longer holds the large one's buffer.
        unfinished(&mut socket).await;
        assert!(socket.pending.capacity() <= small.len(), "capacity {}", socket.pending.capacity());
        client.write_all(&small[3..]).await.unwrap();
        assert_eq!(socket.next().await, Some(Ok(Received::Text("after".into()))));
        assert_eq!(socket.pending.capacity(), 0);

        // A large frame from the socket, all but its last 4,000 bytes (written
        // by a task of its own: the kernel's buffers need not hold it all).
        let cut = big.len() - 4_000;
        let head = big[..cut].to_vec();
        let writer = tokio::spawn(async move {
            client.write_all(&head).await.unwrap();
            client
        });
        read_up_to(&mut socket, cut).await;
        assert!(socket.pending.capacity() <= big.len(), "capacity {}", socket.pending.capacity());
        let mut client = writer.await.unwrap();
        client.write_all(&big[cut..]).await.unwrap();
        assert_eq!(socket.next().await, Some(Ok(Received::Text(text.clone()))));
        assert_eq!(socket.pending.capacity(), 0);

        // Sent in 1,000-byte pieces, the frame's buffer grows by doubling,
        // not at every read.
        let mut capacities = Vec::new();
        let (last, pieces) = big.chunks(1_000).collect::<Vec<_>>().split_last().map(|(l, p)| (*l, p.to_vec())).unwrap();
        let mut sent = 0;
        for piece in pieces {
            client.write_all(piece).await.unwrap();
            sent += piece.len();
            read_up_to(&mut socket, sent).await;
            capacities.push(socket.pending.capacity());
        }
        client.write_all(last).await.unwrap();
        assert_eq!(socket.next().await, Some(Ok(Received::Text(text))));
        capacities.dedup();
        assert!(capacities.len() <= 8, "the buffer was made anew {} times: {capacities:?}", capacities.len());
        assert!(capacities.iter().all(|&c| c <= big.len()), "{capacities:?}");

        // A header cut short: read on until the frame is whole.
        let frame = client_frame(0x81, &[b'x'; 300]);
        client.write_all(&frame[..3]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        unfinished(&mut socket).await;
        client.write_all(&frame[3..]).await.unwrap();
        assert_eq!(socket.next().await, Some(Ok(Received::Text("x".repeat(300)))));
    }

    #[test]
    fn close_reasons_fit_in_a_control_frame() {
        let payload = close_payload(4400, &"\u{e9}".repeat(100));
        assert!(payload.len() <= MAX_CONTROL);
        assert_eq!(payload[..2], 4400u16.to_be_bytes());
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

    #[test]
    fn frames_are_written_with_the_shortest_length() {
        for (len, header) in [(5usize, 2usize), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut out = Vec::new();
            frame_into(&mut out, TEXT, &vec![b'x'; len]);
            assert_eq!(out.len(), header + len, "length {len}");
            assert_eq!(out[0], 0x81);
        }
    }

    #[test]
    fn a_frame_written_in_place_is_the_frame_of_its_payload() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_001] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            // After what is queued already, which stays as it was.
            let mut expected = vec![0x89, 0];
            frame_into(&mut expected, TEXT, &payload);
            let mut out = vec![0x89, 0];
            framed_in_place(&mut out, |out| out.extend_from_slice(&payload));
            assert!(out == expected, "length {len}");
        }
    }
}
