//! The mapping room: integration files as data.
//!
//! Owns the YAML file format ([`spec`]), loading and validating a mappings directory into
//! compiled integrations ([`catalog`], [`integration`]) with every error named by file, line and
//! field path, `{{context.…}}` templates, the JSONata seam and its function library, the pure
//! stages `render_request` / `map_query` / `map_response`, and what a provider's answer means
//! (`answer`: errors, rate limits, page facts). It does no HTTP and no pagination walking.

pub mod answer;
pub mod catalog;
pub mod coverage;
pub mod diagnostics;
pub mod doc;
pub mod expression;
mod fast;
mod functions;
pub mod integration;
pub mod reads;
pub mod render;
mod scan;
pub mod spec;
pub mod template;
pub mod xml;

pub use answer::{
    Answer, Fault, PageReading, RateLimitReading, RequestBody, body_fault, credential_rejected,
    extract_records, extract_records_of, fault_message, mark_omitted, rate_limited, raw_body,
    read_body, read_exchange_token, read_page, render_body, status_fault, token_refused,
};
pub use catalog::{Catalog, Source};
pub use diagnostics::{LoadError, LoadErrors};
pub use expression::{EvalError, Expression, FastOutcome, Scope};
pub use integration::{
    Auth, CompiledPagination, CredentialRefusal, Exchange, FollowUp, FollowUpBatch, Grant,
    Integration, Method, MethodKey, OAuth2, Pace, PaceScope, PassIds, PassOver, ProviderErrors,
    RateLimit, Resource, Retired, TokenAuth, TokenSource, UnifiedMethod, Variant, flag_set,
};
pub use render::{
    Credential, MapError, RenderedAssertion, RenderedClientKey, RenderedExchange,
    RenderedExchangeJwt, RenderedOAuth2, RenderedRequest, RenderedSigning, RenderedSource,
    RenderedToken, SignedParts, canonical_query, flatten_query, map_doc_response_json, map_query,
    map_response, map_response_json, merge_query, render_credential, render_pass_url,
    render_request, render_resource_credential, sign_request,
};
pub use spec::{BodyFormat, ClientAuth, HttpMethod, JwtAlgorithm, TokenBody};
pub use template::{ID_PART_SEPARATOR, RenderError, Template, Vars};
