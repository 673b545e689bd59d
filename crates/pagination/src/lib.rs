//! The pagination room: how a walk over a provider's pages starts, advances and stops, and how
//! its position travels to the caller as an opaque `next_cursor`.
//!
//! Pure: strategies receive facts the engine read off a response (the next token, the `Link`
//! header, the record count, a digest of the page) and answer with the next position or an
//! error. Guards stop a repeated cursor, an identical page and an endless walk. It does no I/O,
//! evaluates no expressions and knows nothing about HTTP clients.

pub mod cursor;
pub mod strategy;

pub use cursor::{CatalogAt, CursorCodec, CursorError, CursorState};
pub use strategy::{
    PageFacts, PageRequest, Pagination, PaginationError, Position, Style, link_next,
};
