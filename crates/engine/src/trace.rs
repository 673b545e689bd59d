//! Tracing provider calls for `unigate try`: while a trace is installed (a task-local), every
//! provider call the engine sends is recorded — method, URL without its secret parameters,
//! headers with credential values redacted, the body, and the answer's status and body. Any
//! value of the account's context long enough to be a credential (8 characters or more, not a
//! URL) is redacted wherever it appears — a request body built from the context, an answer that echoes
//! a key. Token requests are not recorded (their bodies are credentials). Without a trace this
//! costs one task-local lookup per call.

use std::sync::{Arc, Mutex};

use unigate_upstream::{ProviderRequest, ProviderResponse, UpstreamError};

use crate::redact::{REDACTED, Secrets};

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

/// The account's context values that may be credentials (every string of
/// [`SECRET_LENGTH`](crate::redact::SECRET_LENGTH) or more that is not a URL): a trace shows
/// the whole exchange, so it hides more than an error answer does.
fn context_secrets(context: &serde_json::Value) -> Secrets {
    let mut secrets = Secrets::default();
    secrets.add_value(context);
    secrets
}

/// `text` with every value of `context` long enough to be a credential replaced by
/// `[redacted]`: for what `unigate try` prints besides the provider calls (the unified answer).
pub fn redact_context_values(text: &str, context: &serde_json::Value) -> String {
    context_secrets(context).text(text)
}

pub(crate) fn record(
    request: &ProviderRequest,
    result: &Result<ProviderResponse, UpstreamError>,
    context: &serde_json::Value,
) {
    let _ = TRACE.try_with(|trace| {
        let secrets = context_secrets(context);
        let mut url = request.url.clone();
        if !request.secret_query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (name, _) in &request.secret_query {
                pairs.append_pair(name, REDACTED);
            }
        }
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), secrets.text(value)))
            .collect();
        headers.extend(
            request
                .secret_headers
                .iter()
                .map(|(name, _)| (name.clone(), REDACTED.to_owned())),
        );
        let (answer, response_body) = match result {
            Ok(response) => (
                Ok(response.status),
                secrets.text(&String::from_utf8_lossy(&response.body)),
            ),
            Err(error) => (Err(error.to_string()), String::new()),
        };
        trace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(TracedCall {
                method: format!("{:?}", request.method).to_uppercase(),
                url: secrets.text(url.as_str()),
                headers,
                body: request
                    .body
                    .as_ref()
                    .map(|body| secrets.text(&String::from_utf8_lossy(body))),
                answer,
                response_body,
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_is_redacted_as_a_body_escapes_it() {
        let context = serde_json::json!({"password": "p&ss<wo\"rd>", "region": "eu"});
        let xml = r#"<credentials password="p&amp;ss&lt;wo&quot;rd&gt;" region="eu"/>"#;
        assert_eq!(
            redact_context_values(xml, &context),
            r#"<credentials password="[redacted]" region="eu"/>"#
        );
        let json = r#"{"password":"p&ss<wo\"rd>"}"#;
        assert_eq!(
            redact_context_values(json, &context),
            r#"{"password":"[redacted]"}"#
        );
    }
}
