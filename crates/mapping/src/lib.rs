//! The mapping room: integration files as data.
//!
//! Owns the YAML file format ([`spec`]), loading and validating a mappings directory into
//! compiled integrations ([`catalog`], [`integration`]) with every error named by file, line and
//! field path, `{{context.…}}` templates, the JSONata seam and its function library, and the pure
//! stages `render_request` / `map_query` / `map_response`. It does no HTTP and no pagination
//! walking.

pub mod catalog;
pub mod coverage;
pub mod diagnostics;
pub mod expression;
mod fast;
mod functions;
pub mod integration;
pub mod render;
pub mod spec;
pub mod template;

pub use catalog::{Catalog, Source};
pub use diagnostics::{LoadError, LoadErrors};
pub use expression::{EvalError, Expression, FastOutcome, Scope};
pub use integration::{
    Auth, CompiledPagination, Grant, Integration, OAuth2, RateLimit, Resource, UnifiedMethod,
};
pub use render::{
    Credential, MapError, RenderedOAuth2, RenderedRequest, extract_records, flatten_query,
    map_query, map_response, map_response_json, merge_query, render_request,
};
pub use spec::{ClientAuth, HttpMethod};
pub use template::{RenderError, Template};
