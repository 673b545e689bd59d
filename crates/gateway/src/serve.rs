//! Serving room: the accept loop and what bounds it — the connection timer (a client has
//! `header_read_timeout` to send a request head, which also bounds an idle keep-alive
//! connection), the bound on requests in flight (a 503 envelope when full), the per-request
//! deadline (a 504 envelope), every error status the HTTP layer produces put in the envelope, and
//! the drain on shutdown (stop accepting, let requests in flight finish until `drain_timeout`,
//! then cut them). Routing and handlers are `lib.rs`'s; streams bound their own body (see
//! `ndjson_response`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use unigate_unified::{ApiError, ErrorKind};

use crate::ErrorResponse;

/// The bounds of serving; `server:` in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time a connection has to send a whole request head, counted from when the server starts
    /// waiting for one: a slow or silent client (and an idle keep-alive connection) is closed.
    pub header_read_timeout: Duration,
    /// Time to the whole answer of a JSON request (a `truto_ignore_limit` walk included), and
    /// to the first line of a stream.
    pub request_timeout: Duration,
    /// Time a stream may run in all; when it passes, the stream ends with its error line.
    pub stream_timeout: Duration,
    /// Requests handled at once; one more is answered 503 at once.
    pub max_concurrent_requests: usize,
    /// On shutdown, time requests in flight have to finish before they are cut.
    pub drain_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            stream_timeout: Duration::from_secs(3600),
            max_concurrent_requests: 1024,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What the serving middleware shares.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    pub(crate) limits: Arc<ServeLimits>,
    permits: Arc<Semaphore>,
}

impl Bounds {
    pub(crate) fn new(limits: ServeLimits) -> Self {
        Bounds {
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            limits: Arc::new(limits),
        }
    }
}

/// Takes a permit for the request (or answers 503), and holds it until the answer's body is
/// sent, so a stream counts for as long as it runs; cuts the request at its deadline.
pub(crate) async fn bound_request(
    State(bounds): State<Bounds>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = bounds.permits.clone().try_acquire_owned() else {
        let mut error = ApiError::new(
            ErrorKind::Overloaded,
            format!(
                "the gateway is serving {} requests, its configured maximum (server.max_concurrent_requests); retry shortly",
                bounds.limits.max_concurrent_requests
            ),
        );
        error
            .headers
            .push(("retry-after".to_owned(), "1".to_owned()));
        return ErrorResponse(error).into_response();
    };
    let deadline = bounds.limits.request_timeout;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response.map(|body| Body::new(PermitBody { body, _permit: permit })),
        Err(_) => ErrorResponse(ApiError::new(
            ErrorKind::Deadline,
            format!(
                "the request did not finish within {} s (server.request_timeout_s): ask for fewer records per call, or page with next_cursor",
                deadline.as_secs()
            ),
        ))
        .into_response(),
    }
}

/// A response body that holds a request permit until it is sent or dropped.
struct PermitBody {
    body: Body,
    _permit: OwnedSemaphorePermit,
}

impl HttpBody for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body sent as the chunks it is made of (a list answer's envelope and the page buffers its
/// records are in), its length known so it goes with `Content-Length`. Each chunk is handed to
/// hyper as it is, which writes them with one vectored write rather than copying them together.
pub(crate) struct ChunksBody {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl ChunksBody {
    pub(crate) fn new(chunks: Vec<Bytes>) -> ChunksBody {
        let remaining = chunks.iter().map(|chunk| chunk.len() as u64).sum();
        ChunksBody {
            chunks: chunks
                .into_iter()
                .filter(|chunk| !chunk.is_empty())
                .collect(),
            remaining,
        }
    }
}

impl HttpBody for ChunksBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let chunk = self.chunks.pop_front();
        if let Some(chunk) = &chunk {
            self.remaining -= chunk.len() as u64;
        }
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Puts every error status the HTTP layer answers by itself (a body over the limit, a method a
/// route does not take, an unreadable body) in the envelope, with the same status.
pub(crate) async fn envelope_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::MethodNotAllowed,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        other => ErrorKind::Http {
            status: other.as_u16(),
        },
    };
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the request body is larger than {} bytes",
            crate::MAX_BODY_BYTES
        ),
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this route".to_owned(),
        other => format!(
            "the request was refused: {}",
            other.canonical_reason().unwrap_or("error")
        ),
    };
    let mut enveloped = ErrorResponse(ApiError::new(kind, message)).into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        enveloped.headers_mut().insert(header::ALLOW, allow.clone());
    }
    enveloped
}

/// Header fields hyper parses in a request head. Past it, hyper answers 431 itself, before any
/// layer of ours runs, so without a body (our envelope cannot be put on it); hyper's default of
/// 100 let a request with 101 short headers get that bare answer, while the gateway's own bound
/// is bytes (`MAX_HEADER_BYTES`, 32 KiB, answered in the envelope). At 1,024 fields a head
/// reaches 32 KiB as soon as its lines average 32 bytes, so hyper's bare 431 is left to heads
/// of more than 1,024 very short lines. The cost is hyper taking its field slots from the heap
/// (two 32 KiB blocks a request head, never touched past the fields it has) instead of the stack.
const MAX_HEADER_FIELDS: usize = 1024;

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(MAX_HEADER_FIELDS)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let service = TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = builder.serve_connection(TokioIo::new(stream), service.clone());
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    // A client that goes away or times out is not the gateway's error.
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        drain_timeout_s = limits.drain_timeout.as_secs(),
        "shutting down: no new connections; waiting for requests in flight"
    );
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the drain deadline passed; the requests still in flight are cut");
    }
    Ok(())
}
