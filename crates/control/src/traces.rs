//! OpenTelemetry traces (`--otlp-endpoint`, or `OTEL_EXPORTER_OTLP_ENDPOINT`):
//! the SDK's tracer provider, batching spans to an OTLP/HTTP (protobuf)
//! receiver, installed as the global one that `ferry-server` records its
//! request spans through, with the W3C trace-context propagator. Off unless
//! an endpoint is given: then no span is made at all.
//!
//! The batch processor exports from a thread of its own, on a blocking
//! client, so a slow or absent receiver never holds up a request; spans it
//! cannot send are dropped (the SDK logs why).

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The installed provider: flushed and shut down when dropped.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// Installs the global tracer provider, exporting to `endpoint` (a base URL,
/// as `OTEL_EXPORTER_OTLP_ENDPOINT` is: spans go to `<endpoint>/v1/traces`).
/// Call it outside any async runtime.
pub fn start(endpoint: &str) -> anyhow::Result<Traces> {
    let client = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(ferry_api::https::tls_config()?)
        .timeout(Duration::from_secs(10))
        .build()
        .context("setting up the OTLP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .with_context(|| format!("setting up the OTLP exporter for {endpoint}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("ferry").build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(Traces { provider })
}

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("exporting the last spans: {e}");
        }
    }
}
