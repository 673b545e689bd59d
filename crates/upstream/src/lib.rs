//! The upstream room: the one HTTP client that talks to providers.
//!
//! Owns connection pooling, connect and total timeouts, the response size cap, the body as the
//! provider meant it (asked uncoded, read past a byte order mark), the origin
//! policy (next URLs and redirects never leave the integration's origin) and the rule that
//! credentials travel only as [`Secret`]s, which log and error paths cannot print. It does not
//! know about mappings, pagination or the unified model.

pub mod dpop;
pub mod tokens;

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use unigate_unified::Secret;
pub use url::{ParseError as UrlParseError, Url};

/// Limits for provider calls.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    /// Whole call, from connect to the last body byte.
    pub timeout: Duration,
    /// Largest provider body accepted.
    pub max_body_bytes: usize,
    /// The User-Agent of calls whose mapping sets none (default `unigate/<version>`).
    pub user_agent: Option<String>,
    /// Replay only (the fixtures harness; never read from the config file): every request goes
    /// to this origin instead, its `Host` header naming the host it was for, so that URLs a
    /// mapping fixes (a token endpoint, a regional host) reach the stub provider too.
    pub replay_origin: Option<Url>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_body_bytes: 32 * 1024 * 1024,
            user_agent: None,
            replay_origin: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One provider call.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    pub method: Method,
    /// Full URL including the non-secret query.
    pub url: Url,
    pub headers: Vec<(String, String)>,
    /// Credential headers (and any header rendered from an account's context), added when the
    /// request is sent.
    pub secret_headers: Vec<(String, Secret)>,
    /// Credential query parameters (and any rendered from an account's context), added to the
    /// URL when the request is sent.
    pub secret_query: Vec<(String, Secret)>,
    /// A request body (sent with the headers given; JSON bodies add their content type).
    pub body: Option<Vec<u8>>,
    /// A DPoP proof to sign at each send (a sender-constrained token, or its token request).
    pub proof: Option<dpop::Proof>,
}

#[derive(Debug, Clone)]
pub struct ProviderResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ProviderResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Every header as (lower-case name, value), lent from the response (a page's answer is
    /// read two or three times, and owned copies cost two allocations a header each time);
    /// values that are not visible ASCII are left out.
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("could not connect to the provider: {0}")]
    Connect(String),
    #[error("the provider's response is larger than the {0}-byte limit")]
    BodyTooLarge(usize),
    #[error("the provider connection failed mid-response: {0}")]
    Body(String),
    #[error("the request could not be built: {0}")]
    Request(String),
    /// The answer came in a content coding (`gzip`, `br`, …) the gateway did not ask for and
    /// does not read.
    #[error(
        "the provider answered in the `{0}` content coding, which the gateway neither asked for (it sends `Accept-Encoding: identity`) nor reads"
    )]
    Encoded(String),
}

/// The UTF-8 encoding of U+FEFF, the byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Whether two URLs share scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The pooled client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: reqwest::Client,
    config: UpstreamConfig,
}

/// Describes an error without the URL: a URL may carry a credential query parameter.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.without_url_ref().to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        if self.is_timeout() {
            "timed out".to_owned()
        } else if self.is_connect() {
            "connection failed".to_owned()
        } else if self.is_body() || self.is_decode() {
            "body error".to_owned()
        } else if self.is_redirect() {
            "redirect refused".to_owned()
        } else {
            "request error".to_owned()
        }
    }
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Without an Accept-Encoding "any content coding is considered acceptable" (RFC 9110
            // §12.5.3), and some servers and CDNs compress then; the client reads none.
            .default_headers(HeaderMap::from_iter([(
                reqwest::header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            )]))
            .user_agent(
                config
                    .user_agent
                    .clone()
                    .unwrap_or_else(|| concat!("unigate/", env!("CARGO_PKG_VERSION")).to_owned()),
            )
            // A redirect may only stay on the origin it started from, at most 5 times.
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                let stays = attempt
                    .previous()
                    .first()
                    .is_some_and(|first| same_origin(first, attempt.url()));
                if attempt.previous().len() >= 5 || !stays {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            }))
            .build()
            .map_err(|error| UpstreamError::Request(describe(&error)))?;
        Ok(Upstream { client, config })
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// Sends one request and reads the whole body, within the size cap.
    pub async fn send(&self, request: &ProviderRequest) -> Result<ProviderResponse, UpstreamError> {
        let mut url = request.url.clone();
        if !request.secret_query.is_empty() {
            url.query_pairs_mut().extend_pairs(
                request
                    .secret_query
                    .iter()
                    .map(|(name, value)| (name, value.expose())),
            );
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &request.headers {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| UpstreamError::Request(format!("bad header name `{name}`")))?,
                HeaderValue::from_str(value).map_err(|_| {
                    UpstreamError::Request(format!("bad value for header `{name}`"))
                })?,
            );
        }
        for (name, value) in &request.secret_headers {
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
                UpstreamError::Request(format!(
                    "the credential for header `{name}` is not a valid header value"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| UpstreamError::Request(format!("bad header name `{name}`")))?,
                value,
            );
        }
        if let Some(proof) = &request.proof {
            let method = match request.method {
                Method::Get => "GET",
                Method::Post => "POST",
            };
            // Signed here, per send: a retried request carries a proof of its own (`jti`).
            let signed = proof
                .key
                .proof(
                    method,
                    &request.url,
                    proof.access_token.as_ref(),
                    proof.nonce.as_deref(),
                    tokens::now_epoch(),
                )
                .map_err(UpstreamError::Request)?;
            let mut value = HeaderValue::from_str(signed.expose())
                .map_err(|_| UpstreamError::Request("bad DPoP proof".to_owned()))?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static("dpop"), value);
        }
        if let Some(origin) = &self.config.replay_origin
            && !same_origin(&url, origin)
        {
            let host = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            };
            let mut replayed = origin.clone();
            replayed.set_path(url.path());
            replayed.set_query(url.query());
            url = replayed;
            headers.insert(
                reqwest::header::HOST,
                HeaderValue::from_str(&host)
                    .map_err(|_| UpstreamError::Request("bad host".to_owned()))?,
            );
        }
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        // Host and path only: a query may carry a value rendered from the account context
        // (e.g. an API key a mapping passes as a plain query template).
        tracing::debug!(
            method = ?request.method,
            host = request.url.host_str().unwrap_or_default(),
            path = request.url.path(),
            "provider call"
        );
        let mut builder = self.client.request(method, url).headers(headers);
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder
            .send()
            .await
            .map_err(|error| self.classify(&error))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let length = response.content_length();
        if let Some(length) = length
            && length > self.config.max_body_bytes as u64
        {
            return Err(UpstreamError::BodyTooLarge(self.config.max_body_bytes));
        }
        // A body that arrives as one chunk (a page read whole, as most are) is kept as the
        // client handed it, a slice of its read buffer: copying it would be its only copy. A
        // second chunk starts a joined copy, with room for the body as announced so that a
        // page in many chunks is not copied on each doubling; bounded, since the announcement
        // is the provider's word.
        let mut first = Bytes::new();
        let mut joined: Option<Vec<u8>> = None;
        let mut received = 0usize;
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.classify(&error))?
        {
            received += chunk.len();
            if received > self.config.max_body_bytes {
                return Err(UpstreamError::BodyTooLarge(self.config.max_body_bytes));
            }
            match &mut joined {
                Some(joined) => joined.extend_from_slice(&chunk),
                None if first.is_empty() => first = chunk,
                None => {
                    let room = length.map_or(0, |length| length.min(1 << 20) as usize);
                    let mut body = Vec::with_capacity(room.max(received));
                    body.extend_from_slice(&first);
                    body.extend_from_slice(&chunk);
                    joined = Some(body);
                }
            }
        }
        let mut body = joined.map_or(first, Bytes::from);
        if let Some(coding) = headers
            .get(reqwest::header::CONTENT_ENCODING)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
            .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
            .filter(|_| !body.is_empty())
        {
            // A page must be read, never taken as empty; an error keeps its status (a 401 still
            // renews a token, a 429 still waits), its unreadable body left out.
            if (200..300).contains(&status) {
                return Err(UpstreamError::Encoded(coding));
            }
            body = Bytes::new();
        }
        // A UTF-8 byte order mark is not part of a JSON text (RFC 8259 §8.1 lets a parser ignore
        // it; some .NET and Windows servers write one), nor of the XML or text after it.
        if body.starts_with(UTF8_BOM) {
            body = body.slice(UTF8_BOM.len()..);
        }
        Ok(ProviderResponse {
            status,
            headers,
            body,
        })
    }

    fn classify(&self, error: &reqwest::Error) -> UpstreamError {
        if error.is_timeout() {
            UpstreamError::Timeout(self.config.timeout)
        } else if error.is_connect() {
            UpstreamError::Connect(describe(error))
        } else if error.is_body() || error.is_decode() {
            UpstreamError::Body(describe(error))
        } else {
            UpstreamError::Connect(describe(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let base = Url::parse("https://acme.okta.com/api/v1").unwrap();
        assert!(same_origin(
            &base,
            &Url::parse("https://acme.okta.com:443/api/v1/users?after=x").unwrap()
        ));
        assert!(!same_origin(
            &base,
            &Url::parse("https://evil.test/api/v1/users").unwrap()
        ));
        assert!(!same_origin(
            &base,
            &Url::parse("http://acme.okta.com/api/v1/users").unwrap()
        ));
        assert!(!same_origin(
            &base,
            &Url::parse("https://acme.okta.com:8443/").unwrap()
        ));
    }

    #[tokio::test]
    async fn connection_refused_is_a_connect_error_without_the_credential() {
        let upstream = Upstream::new(UpstreamConfig::default()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let request = ProviderRequest {
            method: Method::Get,
            url: Url::parse(&format!("http://127.0.0.1:{port}/users")).unwrap(),
            headers: vec![],
            secret_headers: vec![],
            secret_query: vec![("api_key".into(), Secret::new("TOPSECRET"))],
            body: None,
            proof: None,
        };
        let error = upstream.send(&request).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Connect(_)), "{error:?}");
        assert!(!format!("{error} {error:?}").contains("TOPSECRET"));
    }

    /// A provider on loopback that answers each request with the request's own head (lower
    /// case), so a test reads what was sent; the origin to call.
    async fn echoing_provider() -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        let read = socket.read(&mut buffer).await.unwrap();
                        if read == 0 {
                            return;
                        }
                        request.extend_from_slice(&buffer[..read]);
                    }
                    let head = String::from_utf8_lossy(&request).to_lowercase();
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{head}",
                        head.len()
                    );
                    socket.write_all(answer.as_bytes()).await.unwrap();
                });
            }
        });
        Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()
    }

    /// The configured User-Agent goes with calls whose mapping sets none; a mapping's own wins.
    #[tokio::test]
    async fn the_configured_user_agent_goes_where_the_mapping_sets_none() {
        let origin = echoing_provider().await;
        let upstream = Upstream::new(UpstreamConfig {
            user_agent: Some("acme-sync/1.0 (ops@acme.example)".to_owned()),
            ..UpstreamConfig::default()
        })
        .unwrap();
        let sent = |response: ProviderResponse| String::from_utf8(response.body.to_vec()).unwrap();
        let head = sent(
            upstream
                .send(&get(origin.join("/users").unwrap()))
                .await
                .unwrap(),
        );
        assert!(
            head.contains("\r\nuser-agent: acme-sync/1.0 (ops@acme.example)\r\n"),
            "{head}"
        );
        let mut own = get(origin.join("/users").unwrap());
        own.headers
            .push(("User-Agent".to_owned(), "DiscordBot (x, 1.0)".to_owned()));
        let head = sent(upstream.send(&own).await.unwrap());
        assert!(
            head.contains("\r\nuser-agent: discordbot (x, 1.0)\r\n"),
            "{head}"
        );
        assert!(!head.contains("acme-sync"), "{head}");
    }

    /// Every call asks for the body as it is (`Accept-Encoding: identity`); an answer in a
    /// content coding anyway is an error that names it, not a body read as garbage.
    #[tokio::test]
    async fn bodies_are_asked_uncoded_and_a_coded_one_is_refused() {
        let origin = echoing_provider().await;
        let upstream = Upstream::new(UpstreamConfig::default()).unwrap();
        let head = upstream
            .send(&get(origin.join("/users").unwrap()))
            .await
            .unwrap();
        let head = String::from_utf8(head.body.to_vec()).unwrap();
        assert!(head.contains("\r\naccept-encoding: identity\r\n"), "{head}");

        /// A provider answering one request with `status` and a gzip-coded body of `body`.
        async fn gzipping(status: &'static str, body: &'static [u8]) -> Url {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await.unwrap();
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                socket.write_all(head.as_bytes()).await.unwrap();
                socket.write_all(body).await.unwrap();
            });
            Url::parse(&format!("http://127.0.0.1:{port}/users")).unwrap()
        }
        let gzipped: &'static [u8] = &[0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00];
        let error = upstream
            .send(&get(gzipping("200 OK", gzipped).await))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the provider answered in the `gzip` content coding, which the gateway neither asked for (it sends `Accept-Encoding: identity`) nor reads"
        );
        // An error keeps its status, without the body it cannot read; nothing to read is fine.
        let refused = upstream
            .send(&get(gzipping("401 Unauthorized", gzipped).await))
            .await
            .unwrap();
        assert_eq!((refused.status, refused.body.len()), (401, 0));
        let empty = upstream
            .send(&get(gzipping("204 No Content", b"").await))
            .await
            .unwrap();
        assert_eq!(empty.status, 204);
    }

    /// Replay: a call for another host reaches the replay origin, its Host header naming the
    /// host it was for; a call for the replay origin itself is left alone.
    #[tokio::test]
    async fn replay_sends_every_call_to_the_stub_with_its_host() {
        let origin = echoing_provider().await;
        let upstream = Upstream::new(UpstreamConfig {
            replay_origin: Some(origin.clone()),
            ..UpstreamConfig::default()
        })
        .unwrap();
        let sent = |response: ProviderResponse| String::from_utf8(response.body.to_vec()).unwrap();
        let head = sent(
            upstream
                .send(&get(Url::parse(
                    "https://login.example.test/oauth/token?a=1",
                )
                .unwrap()))
                .await
                .unwrap(),
        );
        assert!(
            head.starts_with("get /oauth/token?a=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nhost: login.example.test\r\n"), "{head}");
        let head = sent(
            upstream
                .send(&get(origin.join("/users").unwrap()))
                .await
                .unwrap(),
        );
        let own_host = format!("\r\nhost: 127.0.0.1:{}\r\n", origin.port().unwrap());
        assert!(head.contains(&own_host), "{head}");
    }

    /// A provider on loopback that answers one request with `head` and then each of `parts`
    /// written apart (a pause between them), so that the client receives them as separate
    /// chunks; the URL to call.
    async fn provider(head: &'static str, parts: Vec<Vec<u8>>) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..read]);
            }
            socket.write_all(head.as_bytes()).await.unwrap();
            for part in parts {
                socket.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
                socket.write_all(&part).await.unwrap();
            }
            socket.flush().await.unwrap();
        });
        Url::parse(&format!("http://127.0.0.1:{port}/users")).unwrap()
    }

    fn get(url: Url) -> ProviderRequest {
        ProviderRequest {
            method: Method::Get,
            url,
            headers: vec![],
            secret_headers: vec![],
            secret_query: vec![],
            body: None,
            proof: None,
        }
    }

    /// One chunk of HTTP/1.1 chunked transfer coding.
    fn chunk(data: &[u8]) -> Vec<u8> {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                           transfer-encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn a_body_in_chunks_arrives_whole_and_in_order() {
        let url = provider(
            CHUNKED,
            vec![
                chunk(br#"[{"id":"u1"},"#),
                chunk(br#"{"id":"u2"},"#),
                [chunk(br#"{"id":"u3"}]"#), b"0\r\n\r\n".to_vec()].concat(),
            ],
        )
        .await;
        let upstream = Upstream::new(UpstreamConfig::default()).unwrap();
        let response = upstream.send(&get(url)).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(
            &response.body[..],
            br#"[{"id":"u1"},{"id":"u2"},{"id":"u3"}]"#
        );
    }

    #[tokio::test]
    async fn a_body_in_one_read_arrives_as_sent() {
        let body = br#"[{"id":"u1"},{"id":"u2"}]"#;
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 25\r\n\r\n";
        let url = provider(head, vec![body.to_vec()]).await;
        let upstream = Upstream::new(UpstreamConfig::default()).unwrap();
        let response = upstream.send(&get(url)).await.unwrap();
        assert_eq!(&response.body[..], body);
    }

    #[tokio::test]
    async fn chunks_past_the_body_limit_are_refused_without_a_length() {
        let url = provider(
            CHUNKED,
            vec![
                chunk(&[b'x'; 600]),
                chunk(&[b'y'; 600]),
                b"0\r\n\r\n".to_vec(),
            ],
        )
        .await;
        let config = UpstreamConfig {
            max_body_bytes: 1000,
            ..UpstreamConfig::default()
        };
        let upstream = Upstream::new(config).unwrap();
        let error = upstream.send(&get(url)).await.unwrap_err();
        assert!(
            matches!(error, UpstreamError::BodyTooLarge(1000)),
            "{error:?}"
        );
    }
}
