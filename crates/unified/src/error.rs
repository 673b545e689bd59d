//! The one error table and the one JSON error shape.
//!
//! Every failure anywhere in unigate ends as an [`ApiError`]: a cause ([`ErrorKind`]) that fixes
//! the HTTP status, a message for humans, and for provider-caused errors the provider's own
//! status and body. The envelope is Truto's: `{statusCode, error, message}` plus
//! `truto_is_remote_error` and `raw_response` when the provider caused it.

use serde_json::{Map, Value, json};

/// Why a request failed. Each kind maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller's request is malformed: missing or invalid parameter, bad cursor. 400.
    BadRequest,
    /// No valid gateway API token. 401.
    Unauthorized,
    /// Unknown integrated account, or a model/resource/method its integration does not map. 404.
    NotFound,
    /// A route that exists, called with another HTTP method. 405.
    MethodNotAllowed,
    /// The request conflicts with what exists (an account id taken). 409.
    Conflict,
    /// The provider answered with an error status (or a 2xx body its mapping declares an
    /// error). The caller gets the provider's 4xx status, or 502 for a provider 5xx.
    Remote {
        /// The status the provider answered with.
        provider_status: u16,
    },
    /// The provider rate-limited the call and the wait was longer than the gateway sits out.
    /// 429, remote, with `Retry-After` and `ratelimit-*` headers.
    RateLimited { provider_status: u16 },
    /// The provider could not be reached or its answer was unusable (connect error,
    /// malformed body, a pagination loop). 502, remote.
    BadGateway,
    /// The provider did not answer in time. 504, remote.
    GatewayTimeout,
    /// A mapping expression failed on this response. 500, names the integration.
    Mapping,
    /// The HTTP layer refused the request before a handler saw it (a body, URI or header block
    /// too large, an unreadable body); the status is the layer's (413, 414, 431, …).
    Http { status: u16 },
    /// The gateway is serving as many requests as it is configured to. 503, with
    /// `Retry-After`.
    Overloaded,
    /// The request ran past the gateway's own deadline (`server.request_timeout_s`, or for a
    /// stream `server.stream_timeout_s`). 504, not remote: the gateway cut it.
    Deadline,
    /// A bug or an impossible state in unigate. 500.
    Internal,
}

impl ErrorKind {
    /// The HTTP status a caller receives for this cause.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::Remote { provider_status } => match provider_status {
                400..=499 => provider_status,
                _ => 502,
            },
            ErrorKind::RateLimited { .. } => 429,
            ErrorKind::BadGateway => 502,
            ErrorKind::GatewayTimeout => 504,
            ErrorKind::Mapping | ErrorKind::Internal => 500,
            ErrorKind::Http { status } => status,
            ErrorKind::Overloaded => 503,
            ErrorKind::Deadline => 504,
        }
    }

    /// Whether the provider caused the error (`truto_is_remote_error`).
    pub fn is_remote(self) -> bool {
        matches!(
            self,
            ErrorKind::Remote { .. }
                | ErrorKind::RateLimited { .. }
                | ErrorKind::BadGateway
                | ErrorKind::GatewayTimeout
        )
    }
}

/// The canonical reason phrase for a status, as Truto's `error` field carries it.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        423 => "Locked",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ if (400..500).contains(&status) => "Bad Request",
        _ => "Internal Server Error",
    }
}

/// A failure on its way to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// The provider's body (JSON when it parses, else text) for remote errors.
    pub raw_response: Option<Value>,
    /// Response headers the caller gets with the envelope (`Retry-After`, `ratelimit-*`).
    pub headers: Vec<(String, String)>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            raw_response: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorKind::Unauthorized,
            "Missing or invalid API token: send `Authorization: Bearer <token>`.",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// A provider error: its status, the message extracted from its body, and the body.
    pub fn remote(provider_status: u16, message: impl Into<String>, raw_response: Value) -> Self {
        ApiError {
            kind: ErrorKind::Remote { provider_status },
            message: message.into(),
            raw_response: Some(raw_response),
            headers: Vec::new(),
        }
    }

    pub fn with_raw_response(mut self, raw_response: Value) -> Self {
        self.raw_response = Some(raw_response);
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON error envelope.
    pub fn to_envelope(&self) -> Value {
        let status = self.status();
        let mut body = Map::new();
        body.insert("statusCode".into(), json!(status));
        body.insert("error".into(), json!(reason_phrase(status)));
        body.insert("message".into(), json!(self.message));
        if self.kind.is_remote() {
            body.insert("truto_is_remote_error".into(), Value::Bool(true));
            if let ErrorKind::Remote { provider_status }
            | ErrorKind::RateLimited { provider_status } = self.kind
                && provider_status != status
            {
                body.insert("remote_status".into(), json!(provider_status));
            }
            if let Some(raw) = &self.raw_response {
                body.insert("raw_response".into(), raw.clone());
            }
        }
        Value::Object(body)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Keys providers put their human-readable error text under, most specific first.
const MESSAGE_KEYS: &[&str] = &[
    "message",
    "error_description",
    "errorSummary",
    "errorMessage",
    "error_message",
    "detail",
    "msg",
    "description",
    "summary",
    "title",
    "reason",
    "error_summary",
];

/// Finds the provider's error message in a body: a known key at the top level, inside an
/// `error`/`errors` object or first array element, or the `error` string itself. Shapes only one
/// provider uses are read by that provider's mapping (`errors.message`), not here.
pub fn extract_remote_message(body: &Value) -> Option<String> {
    fn from_object(object: &Map<String, Value>, depth: u8) -> Option<String> {
        for key in MESSAGE_KEYS {
            if let Some(Value::String(text)) = object.get(*key)
                && !text.is_empty()
            {
                return Some(text.clone());
            }
        }
        if depth == 0 {
            return None;
        }
        for key in ["error", "errors", "fault"] {
            match object.get(key) {
                Some(Value::Object(inner)) => {
                    if let Some(text) = from_object(inner, depth - 1) {
                        return Some(text);
                    }
                }
                Some(Value::Array(items)) => {
                    if let Some(Value::Object(inner)) = items.first()
                        && let Some(text) = from_object(inner, depth - 1)
                    {
                        return Some(text);
                    }
                }
                Some(Value::String(text)) if !text.is_empty() => return Some(text.clone()),
                _ => {}
            }
        }
        None
    }
    match body {
        Value::Object(object) => from_object(object, 2),
        Value::String(text) if !text.trim().is_empty() => {
            Some(text.chars().take(500).collect::<String>())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_5xx_becomes_502_and_keeps_the_provider_status() {
        let error = ApiError::remote(503, "down", json!({"message": "down"}));
        assert_eq!(
            error.to_envelope(),
            json!({"statusCode": 502, "error": "Bad Gateway", "message": "down",
                   "truto_is_remote_error": true, "remote_status": 503,
                   "raw_response": {"message": "down"}})
        );
    }

    #[test]
    fn provider_4xx_passes_through() {
        let error = ApiError::remote(401, "bad token", json!("nope"));
        assert_eq!(
            error.to_envelope(),
            json!({"statusCode": 401, "error": "Unauthorized", "message": "bad token",
                   "truto_is_remote_error": true, "raw_response": "nope"})
        );
    }

    #[test]
    fn local_errors_have_three_fields() {
        assert_eq!(
            ApiError::bad_request("x").to_envelope(),
            json!({"statusCode": 400, "error": "Bad Request", "message": "x"})
        );
        assert_eq!(ApiError::unauthorized().status(), 401);
        assert_eq!(ErrorKind::GatewayTimeout.status(), 504);
        assert!(ErrorKind::GatewayTimeout.is_remote());
        assert!(!ErrorKind::Mapping.is_remote());
    }

    #[test]
    fn extracts_messages_from_common_provider_shapes() {
        let cases = [
            (
                json!({"errorCode": "E0000011", "errorSummary": "Invalid token provided"}),
                Some("Invalid token provided"),
            ),
            (
                json!({"error": {"code": 403, "message": "Not Authorized"}}),
                Some("Not Authorized"),
            ),
            (
                json!({"ok": false, "error": "invalid_auth"}),
                Some("invalid_auth"),
            ),
            (
                json!({"schemas": [], "status": "401", "detail": "no"}),
                Some("no"),
            ),
            (
                json!({"errors": [{"title": "Forbidden"}]}),
                Some("Forbidden"),
            ),
            (
                json!({"error": "invalid_grant", "error_description": "expired"}),
                Some("expired"),
            ),
            // Provider-specific shapes belong to their mappings (Salesforce, Jira, Datadog).
            (
                json!([{"message": "Session expired", "errorCode": "INVALID_SESSION_ID"}]),
                None,
            ),
            (
                json!({"errorMessages": ["You do not have permission"], "errors": {}}),
                None,
            ),
            (json!({"errors": ["Forbidden"]}), None),
            (
                json!({"error_summary": "expired_access_token/...", "error": {".tag": "expired_access_token"}}),
                Some("expired_access_token/..."),
            ),
            (json!({"x": 1}), None),
        ];
        for (body, expected) in cases {
            assert_eq!(extract_remote_message(&body).as_deref(), expected, "{body}");
        }
    }
}
