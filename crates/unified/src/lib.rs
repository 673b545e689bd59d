//! The unified room: what a caller sees, independent of any provider.
//!
//! Owns the error table and the one JSON error shape ([`error`]), qs-style query-string parsing
//! ([`qs`]), the unified model's compiled form ([`model`]) and the parsed list and get queries
//! ([`list_query`], [`get_query`]). It knows nothing about HTTP servers, providers or mapping files.

pub mod error;
pub mod get_query;
pub mod list_query;
pub mod model;
pub mod qs;
pub mod secret;
pub mod time;

pub use error::{ApiError, ErrorKind};
pub use get_query::{GetParameter, GetQuery};
pub use list_query::{ListParameter, ListQuery, MAX_LIMIT, ResponseFormat};
pub use model::{FieldType, UnifiedModel, UnifiedResource};
pub use secret::{JwtAlgorithm, Secret};
