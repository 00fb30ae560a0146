//! The access log: one line per request, written when its response has
//! been sent whole or was cut short, not when its head was ready.
//!
//! A streamed response can take minutes after its head; the line says how
//! long the head took, how long the whole response took, how many body bytes
//! were handed to the connection, and whether the body ended as the guest
//! meant it to. Field formats are fixed (see ARCHITECTURE.md, Style): names
//! and paths are strings, quoted in text logs; times are whole microseconds;
//! sizes whole bytes.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_runtime::{BoxError, ResponseBody};
use http::{Method, StatusCode};
use http_body::{Body, Frame, SizeHint};

use crate::Observation;

/// Everything the line says but the body's fate.
pub(crate) struct AccessEntry {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub app: Option<Arc<str>>,
    pub component: Option<Arc<str>>,
    pub client: SocketAddr,
    /// Why the response is an error response, where it is one.
    pub error: Option<String>,
    /// What failed, as the metrics' `kind` label says it.
    pub failure: Option<&'static str>,
    /// Its metrics and span, finished with the line.
    pub observation: Observation,
    /// The id the client was told (`x-request-id`) and the guest's log
    /// lines carry.
    pub request_id: Arc<str>,
    pub started: Instant,
    /// From receiving the request to having the response head.
    pub head: Duration,
}

/// How a response body ended.
enum Ended {
    Complete,
    CutShort(String),
}

/// A response body that writes the request's access-log line when it ends.
pub(crate) struct LoggedBody {
    inner: ResponseBody,
    entry: Option<AccessEntry>,
    bytes: u64,
}

impl LoggedBody {
    pub fn new(inner: ResponseBody, entry: AccessEntry) -> Self {
        Self {
            inner,
            entry: Some(entry),
            bytes: 0,
        }
    }

    fn finish(&mut self, ended: Ended) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        let total = entry.started.elapsed();
        let observation = std::mem::take(&mut entry.observation);
        let stats = observation.stats.as_deref();
        if let Some(in_flight) = observation.in_flight {
            in_flight.finish(
                entry.status,
                entry.head,
                total,
                self.bytes,
                entry.failure,
                stats,
            );
        }
        if let Some(span) = observation.span {
            span.finish(entry.status, entry.failure, stats);
        }
        let outcome = match &ended {
            Ended::Complete => "complete",
            Ended::CutShort(why) => why.as_str(),
        };
        tracing::info!(
            target: "ferry::access",
            method = entry.method.as_str(),
            path = entry.path.as_str(),
            status = entry.status.as_u16(),
            app = entry.app.as_deref().unwrap_or("-"),
            component = entry.component.as_deref().unwrap_or("-"),
            client = %entry.client,
            request_id = &*entry.request_id,
            head_us = micros(entry.head),
            total_us = micros(total),
            bytes = self.bytes,
            outcome,
            error = entry.error.as_deref(),
        );
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
                // hyper stops polling a body that says it has ended.
                if this.inner.is_end_stream() {
                    this.finish(Ended::Complete);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.finish(Ended::CutShort(format!("cut short: {error}")));
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => {
                this.finish(Ended::Complete);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let Some(entry) = &self.entry else {
            return;
        };
        // A response that has no body on the wire (HEAD, 204, 304) is
        // dropped unread, and that is its whole response.
        let bodyless = entry.method == Method::HEAD
            || entry.status == StatusCode::NO_CONTENT
            || entry.status == StatusCode::NOT_MODIFIED
            || entry.status.is_informational();
        if bodyless || self.inner.is_end_stream() {
            self.finish(Ended::Complete);
        } else {
            self.finish(Ended::CutShort(
                "cut short: the connection closed before the body was sent".into(),
            ));
        }
    }
}
