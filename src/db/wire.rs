//! The SQLSTATE of every error the server sends, kept where diesel drops it.
//!
//! diesel's `DatabaseErrorInformation` carries the server's message but not its SQLSTATE, and
//! diesel-async maps only a few codes onto `DatabaseErrorKind` (the rest become `Unknown`). The
//! message is localised (`lc_messages`), so it must never decide anything. Every session
//! [`Connector`](super::Connector) opens reads the server through [`Tapped`], which watches the
//! protocol's message framing and notes each `ErrorResponse`'s SQLSTATE (`C` field) under its
//! message text (`M` field) in a small process-wide book, before the driver parses the same bytes.
//! [`DbError::from`](super::DbError) then looks the code up by the message diesel hands it: the
//! message is only the key, the SQLSTATE is what classifies.
//!
//! Owns: [`Tapped`], [`TapTls`], the framing watcher and the book ([`sqlstate_for`]). Must not:
//! change a byte of the stream, buffer anything but error bodies (bounded), or keep more than the
//! last [`BOOK_SIZE`] errors.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_util::TryFutureExt;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

/// Errors remembered at most (the lookup happens right after the error arrives).
pub const BOOK_SIZE: usize = 128;

/// Error bodies longer than this are skipped (the server's are a few hundred bytes).
const MAX_ERROR_BODY: usize = 16 * 1024;

/// The most recent server errors of every session of this process.
static BOOK: Mutex<Book> = Mutex::new(Book::new());

/// Server errors, newest last: (message, SQLSTATE), at most [`BOOK_SIZE`].
#[derive(Debug)]
struct Book(VecDeque<(String, String)>);

impl Book {
    const fn new() -> Self {
        Self(VecDeque::new())
    }

    fn note(&mut self, message: &str, sqlstate: &str) {
        if let Some(at) = self.0.iter().position(|(m, _)| m == message) {
            self.0.remove(at);
        }
        if self.0.len() >= BOOK_SIZE {
            self.0.pop_front();
        }
        self.0
            .push_back((message.to_string(), sqlstate.to_string()));
    }

    fn find(&self, message: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(m, _)| m == message)
            .map(|(_, code)| code.clone())
    }
}

/// The SQLSTATE the server sent with `message`, if it did so recently on one of our sessions.
pub fn sqlstate_for(message: &str) -> Option<String> {
    BOOK.lock().find(message)
}

/// Notes that the server sent `message` with `sqlstate` (tests use it to stand in for a server).
pub fn record(message: &str, sqlstate: &str) {
    BOOK.lock().note(message, sqlstate);
}

/// Where the watcher is in the backend's message stream: each message is a type byte, a
/// big-endian length that counts itself, then the body.
#[derive(Debug)]
enum Frame {
    Header { bytes: [u8; 5], have: usize },
    Body { kind: u8, remaining: usize },
}

/// Follows the framing of what the server sends and records each `ErrorResponse`.
#[derive(Debug)]
struct ErrorWatch {
    frame: Frame,
    body: Vec<u8>,
}

impl ErrorWatch {
    fn new() -> Self {
        Self {
            frame: Frame::Header {
                bytes: [0; 5],
                have: 0,
            },
            body: Vec::new(),
        }
    }

    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match &mut self.frame {
                Frame::Header { bytes, have } => {
                    let n = (5 - *have).min(input.len());
                    bytes[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    input = &input[n..];
                    if *have == 5 {
                        let kind = bytes[0];
                        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                        let remaining =
                            usize::try_from(len).unwrap_or(usize::MAX).saturating_sub(4);
                        self.body.clear();
                        self.frame = Frame::Body { kind, remaining };
                        if remaining == 0 {
                            self.finish(kind);
                        }
                    }
                }
                Frame::Body { kind, remaining } => {
                    let kind = *kind;
                    let n = (*remaining).min(input.len());
                    if kind == b'E' && self.body.len() + n <= MAX_ERROR_BODY {
                        self.body.extend_from_slice(&input[..n]);
                    }
                    *remaining -= n;
                    input = &input[n..];
                    if *remaining == 0 {
                        self.finish(kind);
                    }
                }
            }
        }
    }

    fn finish(&mut self, kind: u8) {
        if kind == b'E' {
            if let Some((message, code)) = error_fields(&self.body) {
                record(&message, &code);
            }
        }
        self.body.clear();
        self.frame = Frame::Header {
            bytes: [0; 5],
            have: 0,
        };
    }
}

/// The message (`M`) and SQLSTATE (`C`) fields of an `ErrorResponse` body: pairs of a field type
/// byte and a NUL-terminated string, ended by a zero byte.
fn error_fields(body: &[u8]) -> Option<(String, String)> {
    let (mut message, mut code) = (None, None);
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match field {
            b'M' => message = Some(value),
            b'C' => code = Some(value),
            _ => {}
        }
        rest = &tail[end + 1..];
    }
    let code = code.filter(|c| c.len() == 5)?;
    Some((message?, code))
}

/// A stream to the server whose incoming bytes are watched for `ErrorResponse`s, unchanged.
pub struct Tapped<S> {
    inner: S,
    watch: ErrorWatch,
}

impl<S> Tapped<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            watch: ErrorWatch::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tapped<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.watch.feed(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tapped<S> {
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

impl<S: TlsStream + Unpin> TlsStream for Tapped<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose sessions are [`Tapped`] above the encryption, where the protocol is
/// readable.
pub struct TapTls<T>(pub T);

impl<S, T> TlsConnect<S> for TapTls<T>
where
    T: TlsConnect<S>,
    T::Stream: Unpin,
{
    type Stream = Tapped<T::Stream>;
    type Error = T::Error;
    type Future = futures_util::future::MapOk<T::Future, fn(T::Stream) -> Tapped<T::Stream>>;

    fn connect(self, stream: S) -> Self::Future {
        self.0.connect(stream).map_ok(Tapped::new as fn(_) -> _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![kind];
        out.extend_from_slice(&(u32::try_from(body.len() + 4).unwrap()).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn error_response(code: &str, text: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (field, value) in [
            (b'S', "FEHLER"),
            (b'V', "ERROR"),
            (b'C', code),
            (b'M', text),
        ] {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        message(b'E', &body)
    }

    #[test]
    fn error_responses_are_recorded_however_the_reads_split_them() {
        let text = "Abbruch der Anweisung wegen Zeitüberschreitung (wire test)";
        let mut stream = message(b'D', &[0, 1, 0, 0, 0, 1, b'E']); // a data row holding 'E'
        stream.extend(message(b'Z', b"I"));
        stream.extend(error_response("57014", text));
        stream.extend(message(b'Z', b"I"));
        for chunk in [1, 2, 3, 7, stream.len()] {
            BOOK.lock().0.retain(|(m, _)| m != text);
            let mut watch = ErrorWatch::new();
            for piece in stream.chunks(chunk) {
                watch.feed(piece);
            }
            assert_eq!(
                sqlstate_for(text).as_deref(),
                Some("57014"),
                "chunk {chunk}"
            );
            assert!(matches!(watch.frame, Frame::Header { have: 0, .. }));
        }
    }

    #[test]
    fn the_book_keeps_the_latest_code_and_stays_bounded() {
        let mut book = Book::new();
        book.note("same text", "42501");
        book.note("same text", "25006");
        assert_eq!(book.find("same text").as_deref(), Some("25006"));
        for i in 0..BOOK_SIZE * 2 {
            book.note(&format!("filler {i}"), "XX000");
        }
        assert_eq!(book.0.len(), BOOK_SIZE);
        assert_eq!(book.find("same text"), None, "the oldest went first");
        assert_eq!(
            book.find(&format!("filler {}", BOOK_SIZE * 2 - 1))
                .as_deref(),
            Some("XX000")
        );
    }
}
