//! Tracing provider calls for `unigate try`: while a trace is installed (a task-local), every
//! provider call the engine sends is recorded — method, URL without its secret parameters,
//! headers with credential values redacted, the body, and the answer's status and body. Token
//! requests are not recorded (their bodies are credentials). Without a trace this costs one
//! task-local lookup per call.

use std::sync::{Arc, Mutex};

use unigate_upstream::{ProviderRequest, ProviderResponse, UpstreamError};

/// One provider call as `unigate try` shows it.
#[derive(Debug, Clone)]
pub struct TracedCall {
    pub method: String,
    /// The URL as sent, minus credential query parameters (named, value `[redacted]`).
    pub url: String,
    /// Headers as sent; credential values are `[redacted]`.
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// The provider's status, or the error that stood for an answer.
    pub answer: Result<u16, String>,
    pub response_body: String,
}

pub type Trace = Arc<Mutex<Vec<TracedCall>>>;

tokio::task_local! {
    /// The trace calls are recorded to, when one is installed.
    pub static TRACE: Trace;
}

const REDACTED: &str = "[redacted]";

pub(crate) fn record(request: &ProviderRequest, result: &Result<ProviderResponse, UpstreamError>) {
    let _ = TRACE.try_with(|trace| {
        let mut url = request.url.clone();
        if !request.secret_query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, _) in &request.secret_query {
                pairs.append_pair(name, REDACTED);
            }
        }
        let mut headers = request.headers.clone();
        headers.extend(
            request
                .secret_headers
                .iter()
                .map(|(name, _)| (name.clone(), REDACTED.to_owned())),
        );
        let (answer, response_body) = match result {
            Ok(response) => (
                Ok(response.status),
                String::from_utf8_lossy(&response.body).into_owned(),
            ),
            Err(error) => (Err(error.to_string()), String::new()),
        };
        trace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(TracedCall {
                method: format!("{:?}", request.method).to_uppercase(),
                url: url.to_string(),
                headers,
                body: request
                    .body
                    .as_ref()
                    .map(|body| String::from_utf8_lossy(body).into_owned()),
                answer,
                response_body,
            });
    });
}
