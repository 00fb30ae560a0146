//! A span per request, for OpenTelemetry: recorded through the API's global
//! tracer (the binary installs the SDK and its OTLP exporter, or nothing),
//! parented by the request's W3C `traceparent` if it has one.
//!
//! The span is named `METHOD route` (the route as declared), carries the
//! app, component, request id and status, and has the instantiation of the
//! request's fresh instance as a child. Its own `traceparent` goes to the
//! runtime with the request, which adds it to the guest's outbound requests,
//! so a trace continues through the services a guest calls. Nothing here
//! runs unless the table was made with traces on.

use std::sync::Arc;
use std::time::SystemTime;

use ferry_runtime::RequestStats;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue, global};

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// What a span's start needs to know of its request.
pub(crate) struct Started<'a> {
    pub headers: &'a http::HeaderMap,
    pub method: &'a http::Method,
    pub path: &'a str,
    /// App, component and route; none when no route matched.
    pub route: Option<(&'a str, &'a str, &'a str)>,
    pub request_id: &'a str,
    pub at: SystemTime,
}

/// A request's span, ended with its response.
pub(crate) struct RequestSpan {
    span: global::BoxedSpan,
    /// `00-<trace id>-<span id>-<flags>`, for the guest's outbound requests.
    pub traceparent: Arc<str>,
}

impl RequestSpan {
    pub(crate) fn start(request: &Started<'_>) -> Self {
        let parent = global::get_text_map_propagator(|p| p.extract(&Headers(request.headers)));
        let tracer = global::tracer("ferry");
        let mut attributes = vec![
            KeyValue::new("http.request.method", request.method.as_str().to_owned()),
            KeyValue::new("url.path", request.path.to_owned()),
            KeyValue::new("ferry.request_id", request.request_id.to_owned()),
        ];
        let name = match request.route {
            Some((app, component, route)) => {
                attributes.extend([
                    KeyValue::new("http.route", route.to_owned()),
                    KeyValue::new("ferry.app", app.to_owned()),
                    KeyValue::new("ferry.component", component.to_owned()),
                ]);
                format!("{} {route}", request.method)
            }
            None => request.method.to_string(),
        };
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_start_time(request.at)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        let context = span.span_context();
        let traceparent = format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        );
        Self {
            span,
            traceparent: traceparent.into(),
        }
    }

    /// Ends the span with the response's status, and adds the
    /// instantiation `stats` recorded as a child span.
    pub(crate) fn finish(
        mut self,
        status: http::StatusCode,
        failure: Option<&str>,
        stats: Option<&RequestStats>,
    ) {
        self.span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            self.span
                .set_status(Status::error(failure.unwrap_or("server error").to_owned()));
        }
        let now = SystemTime::now();
        if let Some(took) = stats.and_then(RequestStats::instantiation) {
            // The wall clock and the monotonic one `took` is measured on
            // may disagree by a little: the child never ends after its
            // parent.
            let ended = stats
                .and_then(RequestStats::instantiated_at)
                .map_or(now, |at| (at + took).min(now));
            let parent = Context::new().with_remote_span_context(self.span.span_context().clone());
            let tracer = global::tracer("ferry");
            let mut child = tracer
                .span_builder("instantiate")
                .with_kind(SpanKind::Internal)
                .with_start_time(ended - took)
                .start_with_context(&tracer, &parent);
            child.end_with_timestamp(ended);
        }
        self.span.end_with_timestamp(now);
    }
}
