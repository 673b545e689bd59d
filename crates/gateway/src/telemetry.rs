//! Logging and OpenTelemetry for `unigate serve`: the log format (text or one JSON object per
//! line) and, when the config names a collector, the export of spans — a gateway request and
//! the provider calls it made, nested, carrying the request id — over OTLP/HTTP with JSON
//! bodies. It owns the subscriber setup and the exporter's HTTP client; which spans exist is
//! the code's that opens them (`observe.rs`, the engine's provider-call policy).

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::OpenTelemetrySettings;

/// The exporter sends from the SDK's own batch thread, outside the Tokio runtime; each export
/// is handed to the runtime, where the gateway's reqwest client lives, and awaited from there.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let sent = self.runtime.spawn(async move {
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = sent.await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// One JSON object per line; the request's span (its id) is in `spans`.
    Json,
}

/// Installs the global subscriber: logs on stderr (filter `UNIGATE_LOG`, default `info`) and,
/// with `settings`, span export. Keep the returned provider and [`shutdown`] it at exit so the
/// last spans are sent.
pub fn install(
    format: LogFormat,
    settings: Option<&OpenTelemetrySettings>,
    runtime: tokio::runtime::Handle,
) -> Result<Option<SdkTracerProvider>, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("UNIGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a collector reading a pipe gets plain text.
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
    });
    let provider = match settings {
        None => None,
        Some(settings) => {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|error| format!("opentelemetry: {error}"))?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(settings.endpoint.clone())
                .with_http_client(OnRuntime { client, runtime })
                .build()
                .map_err(|error| format!("opentelemetry.endpoint: {error}"))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(settings.service_name.clone())
                            .build(),
                    )
                    .build(),
            )
        }
    };
    let spans = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("unigate")));
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(spans)
        .try_init()
        .map_err(|error| format!("cannot install logging: {error}"))?;
    Ok(provider)
}

/// Sends the spans still buffered; called once the server has stopped, while the runtime the
/// exporter sends on is still alive.
pub fn shutdown(provider: SdkTracerProvider) {
    if let Err(error) = provider.shutdown() {
        eprintln!("unigate: opentelemetry: the last spans were not sent: {error}");
    }
}
