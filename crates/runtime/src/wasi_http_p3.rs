//! Running a WASI 0.3 `wasi:http/service` component for one request.
//!
//! Same sandbox and limits as the 0.2 executor (`http.rs`), but the guest is
//! driven by wasmtime's concurrent event loop (`run_concurrent`), on an engine
//! with component-model concurrency enabled. The handler returns its response
//! as a value; its body is a stream the guest may keep writing after
//! returning, so the event loop keeps running until the body has been
//! consumed (or the client went away, or the deadline passed).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::body::{BoxError, NotifyOnEnd, ResponseBody};
use crate::http::{
    AfterHead, HeadResult, HttpState, instantiate_within, limited_request, new_store, respond,
    settle,
};
use crate::sandbox::{RequestLog, RequestStats, Sandbox};
use crate::{GuestError, Limits};

pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<HttpState>> {
    let mut linker = Linker::new(engine);
    // Rust's std in a 0.3 component still imports WASI 0.2 interfaces.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    // So may its runtime's 0.2 HTTP (componentize-py's does): outgoing
    // requests through it pass the same `OutboundHooks`.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::variables::add_to_linker_concurrent(&mut linker)?;
    crate::key_value::add_to_linker_concurrent(&mut linker)?;
    crate::sqlite::add_to_linker_concurrent(&mut linker)?;
    crate::redis::add_to_linker_concurrent(&mut linker)?;
    crate::rdbms::add_to_linker_concurrent(&mut linker)?;
    crate::mqtt::add_to_linker_concurrent(&mut linker)?;
    Ok(linker)
}

pub(crate) fn pre(
    linker: &Linker<HttpState>,
    component: &wasmtime::component::Component,
) -> anyhow::Result<ServicePre<HttpState>> {
    Ok(ServicePre::new(linker.instantiate_pre(component)?)?)
}

type RequestIo =
    std::pin::Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>>;

pub(crate) async fn handle<B>(
    engine: &Engine,
    pre: &ServicePre<HttpState>,
    sandbox: &Sandbox,
    limits: &Limits,
    request: http::Request<B>,
    guard: impl Send + 'static,
) -> Result<http::Response<ResponseBody>, GuestError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let timeout = limits.request_timeout;
    let started = Instant::now();
    let log = request.extensions().get::<RequestLog>().cloned();
    let stats = request.extensions().get::<Arc<RequestStats>>().cloned();
    let (request, request_body) = limited_request(request, limits.max_request_body);

    let mut store = new_store(engine, sandbox, limits, log.as_ref(), stats.clone())
        .map_err(GuestError::Instantiation)?;
    let instantiating = Instant::now();
    let service = instantiate_within(timeout, pre.instantiate_async(&mut store)).await?;
    if let Some(stats) = &stats {
        stats.instantiated(instantiating.elapsed());
    }

    let (tx, rx) = tokio::sync::oneshot::channel::<HeadResult>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let failed = Arc::new(AtomicBool::new(false));
    let after_head = AfterHead::new(sandbox.component.clone(), timeout);
    let task = {
        let failed = failed.clone();
        let after_head = after_head.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let run = store.run_concurrent(async move |accessor| -> wasmtime::Result<()> {
                let (request, request_io) = accessor.with(|mut store| {
                    let http = store.data_mut().http();
                    let (request, io) =
                        wasmtime_wasi_http::p3::Request::from_http(http.hooks, request);
                    // The future is 'static; boxing ends its borrow of the hooks.
                    let io: RequestIo = Box::pin(io);
                    (request, io)
                });
                match service.handle(accessor, request).await? {
                    Ok(response) => {
                        let response = accessor
                            .with(|mut store| response.into_http(&mut store, request_io))?;
                        let response =
                            response.map(|body| NotifyOnEnd::new(body, done_tx).boxed_unsync());
                        if tx.send(Ok(response)).is_ok() {
                            // Keep the guest running while its body streams.
                            let _ = done_rx.await;
                        }
                    }
                    Err(code) => {
                        let _ = tx.send(Err(format!("{code:?}")));
                    }
                }
                Ok(())
            });
            let result = tokio::time::timeout(timeout.saturating_sub(started.elapsed()), run)
                .await
                .map(|r| r.and_then(|inner| inner));
            let result = settle(result, &failed);
            drop(store);
            after_head.guest_ended(&result);
            Ok(result)
        })
    };
    respond(rx, task, failed, after_head, &request_body, limits).await
}
