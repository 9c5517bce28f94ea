//! The server's listener: every connection goes to hyper, except one that opens with an
//! event-stream request (`GET /v1/realtime…`), which is served here by a lean HTTP/1.1 writer.
//!
//! Why: an SSE stream is a connection that stays open for hours and mostly waits. hyper keeps
//! an 8 KiB read buffer and an 8 KiB write buffer for every connection it serves, which made
//! up three quarters of an idle subscriber's memory (21 KiB each at 10,000 subscribers). A
//! stream never reads again after its request head, and writes one small event at a time, so
//! here it holds neither buffer: the head is read into a short-lived buffer, the request goes
//! through the same router (so authentication, CORS, limits and the request id are the same
//! code as on every other route), and each event is written as one chunk from the bytes the
//! router's body produced (events that are ready together go out in one write).
//!
//! Only a connection's first request can take this path; an event-stream request on a
//! keep-alive connection that carried other requests first is served by hyper as before, and
//! so is anything this writer does not handle (another HTTP version, a request body, an
//! upgrade, pipelining, a head over [`MAX_HEAD`]). Connections also get `TCP_NODELAY`: events
//! and responses are small writes that must not wait for the peer's delayed ACK.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, Version};
use bytes::{Buf, Bytes};
use futures::FutureExt;
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceExt;

/// What a connection's first bytes must start with to be served here.
const STREAM_PREFIX: &[u8] = b"GET /v1/realtime";
/// Longest request head served here; a longer one goes to hyper (which has its own limit).
pub const MAX_HEAD: usize = 8192;
/// Most request headers served here.
const MAX_HEADERS: usize = 64;
/// How long a connection may take to send its first request head before it is handed to
/// hyper as it is (hyper then applies its own rules to a slow client).
const HEAD_WAIT: Duration = Duration::from_secs(10);
/// How long one event may take to leave: a peer that reads nothing for this long is gone
/// (or hopelessly behind) and its stream is closed; it resumes with `Last-Event-ID`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of ready events gathered into one write.
const COALESCE: usize = 16 * 1024;
/// Connections accepted but not yet taken by hyper.
const BACKLOG: usize = 1024;

/// A [`TcpListener`] whose event-stream connections are served here and whose other
/// connections are handed to `axum::serve` through [`axum::serve::Listener`].
pub struct Listener {
    rx: mpsc::Receiver<(Rewind, SocketAddr)>,
    addr: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // axum drops the listener when it stops accepting (graceful shutdown).
        self.accepting.abort();
    }
}

impl Listener {
    /// Starts accepting on `listener`; event streams are served with `app`.
    pub fn new(listener: TcpListener, app: Router) -> io::Result<Listener> {
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        let accepting = tokio::spawn(accept(listener, app, tx));
        Ok(Listener {
            rx,
            addr,
            accepting,
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = Rewind;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Rewind, SocketAddr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

async fn accept(listener: TcpListener, app: Router, tx: mpsc::Sender<(Rewind, SocketAddr)>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                if !is_connection_error(&e) {
                    // Out of file descriptors, most likely: wait for some to be closed.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (tx, app) = (tx.clone(), app.clone());
        tokio::spawn(async move {
            match first_request(stream).await {
                First::Hyper(io) => {
                    let _ = tx.send((io, peer)).await;
                }
                First::Stream(stream, head) => serve_stream(stream, &head, peer, app).await,
                First::Closed => {}
            }
        });
    }
}

/// The errors a single connection causes, after which accepting goes on at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Where a new connection goes.
enum First {
    /// To hyper, with the bytes read so far put back in front.
    Hyper(Rewind),
    /// Served here: the connection and its first request head (nothing after it was sent).
    Stream(TcpStream, Vec<u8>),
    /// The peer closed (or failed) before sending anything.
    Closed,
}

/// Reads until the first request head is complete, or until it is clear this connection is
/// not one to serve here.
async fn first_request(mut stream: TcpStream) -> First {
    let deadline = tokio::time::Instant::now() + HEAD_WAIT;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_HEAD {
                return First::Hyper(Rewind::new(buf, stream));
            }
            buf.reserve(buf.len().min(MAX_HEAD - buf.len()));
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return First::Closed,
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return First::Hyper(Rewind::new(buf, stream)),
            Ok(Ok(_)) => {}
        }
        match classify(&buf) {
            Verdict::NotOurs => return First::Hyper(Rewind::new(buf, stream)),
            Verdict::NeedMore => {}
            Verdict::Stream => return First::Stream(stream, buf),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Not an event-stream request this writer serves: hyper's.
    NotOurs,
    /// Could still be one: read more.
    NeedMore,
    /// A complete head of a request served here, and nothing after it.
    Stream,
}

/// Decides on the bytes a connection sent so far.
fn classify(buf: &[u8]) -> Verdict {
    if buf.len() <= STREAM_PREFIX.len() {
        return if STREAM_PREFIX.starts_with(buf) {
            Verdict::NeedMore
        } else {
            Verdict::NotOurs
        };
    }
    if !buf.starts_with(STREAM_PREFIX) || !matches!(buf[STREAM_PREFIX.len()], b' ' | b'?') {
        return Verdict::NotOurs;
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Verdict::NeedMore,
        // Pipelined bytes after the head, or a head hyper should judge: hyper's.
        Ok(httparse::Status::Complete(len)) if len == buf.len() && servable(&req) => {
            Verdict::Stream
        }
        _ => Verdict::NotOurs,
    }
}

/// HTTP/1.1, no body, no upgrade, no `Expect`.
fn servable(req: &httparse::Request<'_, '_>) -> bool {
    req.version == Some(1)
        && req.headers.iter().all(|h| {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                h.value == b"0"
            } else {
                !(name.eq_ignore_ascii_case("transfer-encoding")
                    || name.eq_ignore_ascii_case("upgrade")
                    || name.eq_ignore_ascii_case("expect"))
            }
        })
}

/// The request `head` (a complete, [`servable`] head) as the router takes it.
fn to_request(head: &[u8], peer: SocketAddr) -> Option<Request<Body>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    let mut req = Request::new(Body::empty());
    *req.method_mut() = Method::GET;
    *req.version_mut() = Version::HTTP_11;
    *req.uri_mut() = parsed.path?.parse().ok()?;
    let map = req.headers_mut();
    for h in parsed.headers.iter() {
        map.append(
            HeaderName::from_bytes(h.name.as_bytes()).ok()?,
            HeaderValue::from_bytes(h.value).ok()?,
        );
    }
    req.extensions_mut().insert(ConnectInfo(peer));
    Some(req)
}

/// Answers one event-stream request on `stream`, then closes the connection.
async fn serve_stream(mut stream: TcpStream, head: &[u8], peer: SocketAddr, app: Router) {
    let Some(req) = to_request(head, peer) else {
        // `classify` parsed it; a name or value `http` refuses (rare) gets a plain 400.
        let _ = stream
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await;
        return;
    };
    // Boxed, so the router's (large) future is freed once the response is there instead of
    // sizing this task for as long as the stream lives.
    let response = match Box::pin(app.oneshot(req)).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
    let mut out = response_head(&parts);
    // The first chunk goes out with the head when it is ready (the `ready` event usually is).
    let mut probe = [0u8; 32];
    let (mut reader, mut writer) = stream.split();
    loop {
        tokio::select! {
            frame = body.frame() => {
                let mut step = add_frame(frame, &mut out);
                match step {
                    Step::Skipped => continue,
                    Step::Failed => return,
                    Step::Added | Step::Ended => {}
                }
                // Events that are ready too (a batch of commits reaches a subscriber at once)
                // go out in the same write: one system call and one packet, not one per event.
                while matches!(step, Step::Added | Step::Skipped) && out.len() < COALESCE {
                    match body.frame().now_or_never() {
                        Some(frame) => step = add_frame(frame, &mut out),
                        None => break,
                    }
                }
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&out)).await {
                    Ok(Ok(())) if matches!(step, Step::Added | Step::Skipped) => {}
                    // Ended, failed, gone, or reading nothing for a minute: it resumes with
                    // Last-Event-ID.
                    Ok(_) | Err(_) => return,
                }
                // Freed, not kept: an idle stream holds no buffer.
                out = Vec::new();
            }
            read = reader.read(&mut probe) => {
                match read {
                    // The peer closed or reset: dropping the body ends the subscription.
                    Ok(0) | Err(_) => return,
                    // A stream's request has no body and the connection closes after it;
                    // anything sent now is ignored.
                    Ok(_) => {}
                }
            }
        }
    }
}

/// What one frame of a stream's body did to the bytes to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Its data was added as a chunk.
    Added,
    /// Nothing to send (an empty or non-data frame).
    Skipped,
    /// The body ended: the last chunk was added.
    Ended,
    /// The body failed: nothing more is sent after what is gathered.
    Failed,
}

/// Adds one polled frame of a stream's body to `out`.
fn add_frame<E: std::fmt::Display>(
    frame: Option<Result<http_body::Frame<Bytes>, E>>,
    out: &mut Vec<u8>,
) -> Step {
    match frame {
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) if !data.is_empty() => {
                chunk(out, &data);
                Step::Added
            }
            _ => Step::Skipped,
        },
        Some(Err(e)) => {
            tracing::debug!(error = %e, "an event stream's body failed");
            Step::Failed
        }
        None => {
            out.extend_from_slice(b"0\r\n\r\n");
            Step::Ended
        }
    }
}

/// The status line and headers, framed as chunked with `connection: close`.
fn response_head(parts: &axum::http::response::Parts) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if matches!(
            name.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !parts.headers.contains_key(axum::http::header::DATE) {
        let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
        out.extend_from_slice(format!("date: {date}\r\n").as_bytes());
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    out
}

/// Appends `data` as one HTTP/1.1 chunk.
fn chunk(out: &mut Vec<u8>, data: &Bytes) {
    use std::io::Write as _;
    out.reserve(data.len() + 12);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A connection with the bytes read while classifying it put back in front.
pub struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
}

impl Rewind {
    fn new(read: Vec<u8>, inner: TcpStream) -> Rewind {
        Rewind {
            // Copied, so the buffer's spare capacity is not kept for the connection's life.
            prefix: Bytes::copy_from_slice(&read),
            inner,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_complete_bodyless_http11_stream_heads_are_served_here() {
        let ok = b"GET /v1/realtime?collections=posts HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(classify(ok), Verdict::Stream);
        assert_eq!(
            classify(b"GET /v1/realtime HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
            Verdict::Stream
        );
        // Every proper prefix may still become one.
        for n in 0..ok.len() {
            assert_eq!(classify(&ok[..n]), Verdict::NeedMore, "{n}");
        }
        for other in [
            &b"POST /v1/realtime HTTP/1.1\r\n\r\n"[..],
            b"GET /v1/realtimex HTTP/1.1\r\n\r\n",
            b"GET /v1/collections HTTP/1.1\r\n\r\n",
            b"GET /v1/realtime HTTP/1.0\r\n\r\n",
            b"GET /v1/realtime HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
            b"GET /v1/realtime HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /v1/realtime HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            b"GET /v1/realtime HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            // A second, pipelined request.
            b"GET /v1/realtime HTTP/1.1\r\n\r\nGET /v1/health HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /v1/realtime HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert_eq!(
                classify(other),
                Verdict::NotOurs,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn a_served_head_becomes_the_same_request() {
        let head = b"GET /v1/realtime?collections=a,b%2Fc HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\nX-A: 1\r\nX-A: 2\r\n\r\n";
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let req = to_request(head, peer).unwrap();
        assert_eq!(req.uri(), "/v1/realtime?collections=a,b%2Fc");
        assert_eq!(req.headers()["last-event-id"], "7");
        assert_eq!(req.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(
            req.extensions().get::<ConnectInfo<SocketAddr>>().unwrap().0,
            peer
        );
    }

    #[test]
    fn chunks_and_heads_are_framed() {
        let mut out = Vec::new();
        chunk(&mut out, &Bytes::from_static(b"data: hi\n\n"));
        assert_eq!(out, b"a\r\ndata: hi\n\n\r\n");
        let resp = axum::http::Response::builder()
            .status(429)
            .header("content-type", "application/problem+json")
            .header("content-length", "10")
            .header("date", "Wed, 02 Dec 2026 19:00:00 GMT")
            .body(())
            .unwrap();
        let (parts, ()) = resp.into_parts();
        let head = String::from_utf8(response_head(&parts)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/problem+json\r\n\
             date: Wed, 02 Dec 2026 19:00:00 GMT\r\ntransfer-encoding: chunked\r\n\
             connection: close\r\n\r\n"
        );
    }

    proptest! {
        /// Whatever a client sends first, the decision never panics, and a head judged
        /// servable always converts into a request.
        #[test]
        fn any_first_bytes_are_judged(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = STREAM_PREFIX.to_vec();
            bytes.extend_from_slice(&tail);
            for input in [&tail[..], &bytes[..]] {
                if classify(input) == Verdict::Stream {
                    let _ = to_request(input, "127.0.0.1:1".parse().unwrap());
                }
            }
        }
    }
}
