//! Body wrappers that enforce size limits while streaming.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response produced by a guest.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Fails the stream once more than `limit` bytes have passed through it,
/// recording that it did in `exceeded`.
pub struct Limited<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
    on_exceeded: Option<Box<dyn FnOnce() + Send>>,
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
            exceeded: Arc::default(),
            on_exceeded: None,
        }
    }

    /// A flag that turns true once the limit has been exceeded.
    pub fn exceeded_flag(&self) -> Arc<AtomicBool> {
        self.exceeded.clone()
    }

    /// Runs `f` (once) when the limit is exceeded, e.g. to log it.
    pub fn on_exceeded(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_exceeded = Some(Box::new(f));
        self
    }
}

/// The error a [`Limited`] body fails with.
#[derive(Debug)]
pub struct BodyTooLarge {
    pub limit: u64,
}

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body larger than the limit of {} bytes", self.limit)
    }
}

impl std::error::Error for BodyTooLarge {}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.exceeded.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(BodyTooLarge { limit: this.limit }.into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.remaining = 0;
                        this.exceeded.store(true, Ordering::Relaxed);
                        if let Some(f) = this.on_exceeded.take() {
                            f();
                        }
                        return Poll::Ready(Some(Err(BodyTooLarge { limit: this.limit }.into())));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
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

/// Ends the stream with an error, instead of a clean end, when `failed` is
/// set by the time the inner body ends: a guest that trapped or timed out
/// mid-response must not look like a complete response to the client.
pub struct FailOnFlag<B> {
    inner: B,
    failed: Arc<AtomicBool>,
}

impl<B> FailOnFlag<B> {
    pub fn new(inner: B, failed: Arc<AtomicBool>) -> Self {
        Self { inner, failed }
    }
}

/// The error a [`FailOnFlag`] body ends with.
#[derive(Debug)]
pub struct GuestFailedMidResponse;

impl std::fmt::Display for GuestFailedMidResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the guest failed before finishing its response")
    }
}

impl std::error::Error for GuestFailedMidResponse {}

impl<B> Body for FailOnFlag<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) if this.failed.load(Ordering::Acquire) => {
                Poll::Ready(Some(Err(GuestFailedMidResponse.into())))
            }
            other => other,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Sends on `done` when the body ends or is dropped: a WASI 0.3 guest's
/// store must keep running until its response body has been consumed.
pub struct NotifyOnEnd<B> {
    inner: B,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl<B> NotifyOnEnd<B> {
    pub fn new(inner: B, done: tokio::sync::oneshot::Sender<()>) -> Self {
        Self {
            inner,
            done: Some(done),
        }
    }
}

impl<B> Drop for NotifyOnEnd<B> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl<B: Body + Unpin> Body for NotifyOnEnd<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None | Some(Err(_))) = &polled
            && let Some(done) = this.done.take()
        {
            let _ = done.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
