//! OpenTelemetry export of the worker's spans (the `otel` feature): when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, every span, one per attempt among them, goes there over OTLP/HTTP.
//! An attempt's span is a child of the job's `traceparent`, so the producer's
//! trace continues in the worker.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The export layer, when an OTLP endpoint is configured.
pub(crate) fn layer<S>() -> anyhow::Result<Option<OpenTelemetryLayer<S, SdkTracer>>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let configured = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !configured {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up the OTLP exporter: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("jobfleet-worker")
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("jobfleet-worker");
    let _ = PROVIDER.set(provider);
    Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
}

/// Makes `span` a child of `traceparent` and returns the span's own context
/// (its trace, its span id), when spans are exported.
pub(crate) fn adopt(span: &tracing::Span, traceparent: &str) -> Option<jobfleet_core::TraceContext> {
    PROVIDER.get()?;
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    span.set_parent(TraceContextPropagator::new().extract(&carrier))
        .ok()?;
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid().then(|| jobfleet_core::TraceContext {
        trace_id: u128::from_be_bytes(own.trace_id().to_bytes()),
        span_id: u64::from_be_bytes(own.span_id().to_bytes()),
        flags: own.trace_flags().to_u8(),
    })
}

/// Sends what is still buffered; called once the worker has stopped.
pub(crate) fn shutdown() {
    if let Some(Err(e)) = PROVIDER.get().map(SdkTracerProvider::shutdown) {
        eprintln!("warning: exporting the last spans failed: {e}");
    }
}
