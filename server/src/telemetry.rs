//! Logs and traces: `tracing` to stderr (filtered by `RUST_LOG`, default
//! `info`), and with the `otel` cargo feature and `--otlp-endpoint`, the
//! same spans exported to an OpenTelemetry collector over OTLP/HTTP.
//!
//! The spans that matter for tracing a change: `sync_conn{conn, request_id,
//! user, device}` (one per WebSocket connection) → `sync_msg{doc}` (each
//! sync message the doc actor handles) → `commit{changes}`, and the writer
//! thread's `commit_batch{messages}`, which follows from every message it
//! commits; `doc_actor{doc}` for loading and eviction; and
//! `http_request{request_id, method, path}` for every HTTP request
//! (`request_id.rs`).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Flushes exported spans when dropped (at exit).
pub struct Flush {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Flush {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: could not flush traces to the OTLP endpoint: {e}");
            }
        }
    }
}

/// Installs the global subscriber. `otlp_endpoint` is always None without
/// the `otel` feature.
pub fn init(otlp_endpoint: Option<&str>) -> anyhow::Result<Flush> {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        let provider = otlp_endpoint.map(otel::provider).transpose()?;
        let layer = provider.as_ref().map(|p| {
            use opentelemetry::trace::TracerProvider;
            tracing_opentelemetry::layer().with_tracer(p.tracer("fieldsync"))
        });
        registry.with(layer).init();
        Ok(Flush { provider })
    }
    #[cfg(not(feature = "otel"))]
    {
        debug_assert!(otlp_endpoint.is_none());
        registry.init();
        Ok(Flush {})
    }
}

#[cfg(feature = "otel")]
mod otel {
    use anyhow::Context;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;

    /// `http://host:4318` → `http://host:4318/v1/traces`; a full URL as is.
    pub fn traces_url(endpoint: &str) -> String {
        let trimmed = endpoint.trim_end_matches('/');
        let has_path = trimmed
            .split_once("://")
            .is_some_and(|(_, rest)| rest.contains('/'));
        if has_path {
            trimmed.to_string()
        } else {
            format!("{trimmed}/v1/traces")
        }
    }

    /// Spans are batched and sent from the SDK's own thread.
    pub fn provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint))
            .build()
            .with_context(|| format!("OTLP exporter for {endpoint}"))?;
        let resource = Resource::builder()
            .with_service_name("fieldsync")
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn a_bare_address_gets_the_traces_path() {
            assert_eq!(
                super::traces_url("http://c:4318"),
                "http://c:4318/v1/traces"
            );
            assert_eq!(
                super::traces_url("http://c:4318/"),
                "http://c:4318/v1/traces"
            );
            assert_eq!(super::traces_url("http://c/x/traces"), "http://c/x/traces");
        }
    }
}
