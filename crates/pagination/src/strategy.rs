//! Pagination styles as small strategies: what to send first, how to read "next", when to stop.

use serde::{Deserialize, Serialize};

/// The styles of `docs/mapping-format.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Style {
    /// Opaque token in the body, sent back as `cursor_param`, or in the request header
    /// `cursor_header` (Heroku's `Range`), or only in the request body when neither is set (the
    /// resource's body expression reads it).
    Cursor {
        cursor_param: Option<String>,
        cursor_header: Option<String>,
    },
    /// Google-style `pageToken`/`nextPageToken`; same mechanics as [`Style::Cursor`].
    PageToken { token_param: String },
    /// A full next URL in the body, followed verbatim.
    NextUrl,
    /// `Link: <…>; rel="next"`, followed verbatim.
    LinkHeader,
    /// Numeric offset advanced by the records received.
    Offset { offset_param: String },
    /// Page number advanced by one.
    Page { page_param: String, first_page: u64 },
    /// SCIM 2.0 `startIndex` (1-based) + `count`, stopping at `totalResults`.
    Scim { start_index_param: String },
    /// `after_param=<value read from the last record>`; stops on a short page.
    Keyset { after_param: String },
    /// A GraphQL connection: the cursor travels in the request body, `hasNextPage` stops it.
    Graphql,
    /// One response holds everything.
    None,
}

impl Style {
    /// The style's name in mapping files.
    pub fn name(&self) -> &'static str {
        match self {
            Style::Cursor { .. } => "cursor",
            Style::PageToken { .. } => "page_token",
            Style::NextUrl => "next_url",
            Style::LinkHeader => "link_header",
            Style::Offset { .. } => "offset",
            Style::Page { .. } => "page",
            Style::Scim { .. } => "scim",
            Style::Keyset { .. } => "keyset",
            Style::Graphql => "graphql",
            Style::None => "none",
        }
    }
}

/// A compiled pagination: a style and the page-size parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pagination {
    pub style: Style,
    pub page_size_param: Option<String>,
    pub max_page_size: Option<u32>,
    /// The least page size the provider accepts (Cloudflare refuses `per_page` below 5): a
    /// smaller `limit` is raised to it, so the page may hold more records than the caller asked,
    /// as a provider without a page-size parameter answers its own size.
    pub min_page_size: Option<u32>,
    pub default_page_size: Option<u32>,
    /// Most pages one walk may take before it is called endless.
    pub max_pages: u32,
    /// Whether a page shorter than asked ends a walk that has no other end signal (offset, page,
    /// scim without a total, keyset). `false` for a provider whose cap may be below the size
    /// asked: only an empty page ends it (one more request per walk, no records left behind).
    pub short_page_ends: bool,
    /// Whether the provider answers a page past the end with its last page again (LearnWorlds:
    /// "the results of last page will be returned"): a page identical to the one before then
    /// ends the walk, its records already read, instead of failing it as a loop.
    pub last_page_repeats: bool,
}

/// Where a walk stands: what the next request must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", content = "v", rename_all = "snake_case")]
pub enum Position {
    First,
    Token(String),
    Url(String),
    Offset(u64),
    Page(u64),
    StartIndex(u64),
}

/// What to send for one page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// An absolute URL to request as given (next-URL and Link styles), instead of the
    /// resource's own URL and query.
    pub url: Option<String>,
    /// Query parameters to add to the resource's own query.
    pub params: Vec<(String, String)>,
    /// Headers that replace the resource's headers of the same name.
    pub headers: Vec<(String, String)>,
}

/// What the engine read off one response, as far as the style needs it.
#[derive(Debug, Clone, Default)]
pub struct PageFacts {
    /// Next token (cursor styles) or absolute next URL (next-URL and Link styles).
    pub next: Option<String>,
    pub record_count: usize,
    /// An explicit "more pages" flag, when the mapping reads one.
    pub has_more: Option<bool>,
    /// Total record count (offset, SCIM) or total page count (page), when known.
    pub total: Option<u64>,
    /// A digest of the page as received, to catch a provider that repeats a page; `None` when
    /// no page came before this one (there is nothing to compare it with).
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaginationError {
    #[error(
        "the provider returned the same pagination cursor twice (`{0}`); stopping instead of looping"
    )]
    RepeatedCursor(String),
    #[error("the provider returned the same page twice; stopping instead of looping")]
    IdenticalPage,
    #[error("the provider kept returning a next page after {0} pages; stopping instead of looping")]
    Endless(u32),
}

impl Pagination {
    /// The page size to ask for: the caller's `limit`, else the default, clamped to the
    /// provider's maximum and raised to its minimum.
    pub fn page_size(&self, requested: Option<u32>, gateway_default: u32) -> u32 {
        let wanted = requested
            .or(self.default_page_size)
            .unwrap_or(gateway_default)
            .max(1);
        let capped = match self.max_page_size {
            Some(max) => wanted.min(max),
            None => wanted,
        };
        capped.max(self.min_page_size.unwrap_or(1))
    }

    /// The request for the page at `position`.
    pub fn request_for(&self, position: &Position, page_size: u32) -> PageRequest {
        let mut params = Vec::new();
        let mut headers = Vec::new();
        let mut url = None;
        let size_param = || {
            self.page_size_param
                .as_ref()
                .map(|name| (name.clone(), page_size.to_string()))
        };
        match (&self.style, position) {
            (_, Position::Url(next)) => url = Some(next.clone()),
            (
                Style::Cursor {
                    cursor_param,
                    cursor_header,
                },
                Position::Token(token),
            ) => {
                params.extend(size_param());
                if let Some(name) = cursor_param {
                    params.push((name.clone(), token.clone()));
                }
                if let Some(name) = cursor_header {
                    headers.push((name.clone(), token.clone()));
                }
            }
            (Style::PageToken { token_param: name }, Position::Token(token))
            | (Style::Keyset { after_param: name }, Position::Token(token)) => {
                params.extend(size_param());
                params.push((name.clone(), token.clone()));
            }
            (Style::Offset { offset_param }, position) => {
                params.extend(size_param());
                let offset = match position {
                    Position::Offset(offset) => *offset,
                    _ => 0,
                };
                params.push((offset_param.clone(), offset.to_string()));
            }
            (
                Style::Page {
                    page_param,
                    first_page,
                },
                position,
            ) => {
                params.extend(size_param());
                let page = match position {
                    Position::Page(page) => *page,
                    _ => *first_page,
                };
                params.push((page_param.clone(), page.to_string()));
            }
            (Style::Scim { start_index_param }, position) => {
                params.extend(size_param());
                let start = match position {
                    Position::StartIndex(start) => *start,
                    _ => 1,
                };
                params.push((start_index_param.clone(), start.to_string()));
            }
            (Style::None | Style::Graphql, _) => {}
            _ => params.extend(size_param()),
        }
        PageRequest {
            url,
            params,
            headers,
        }
    }

    /// The position after the page fetched at `current`, or `None` when the walk is over.
    /// `previous_digest` is the digest of the page before this one, `pages` how many pages the
    /// walk has taken including this one.
    pub fn next_position(
        &self,
        current: &Position,
        page_size: u32,
        facts: &PageFacts,
        previous_digest: Option<&str>,
        pages: u32,
    ) -> Result<Option<Position>, PaginationError> {
        if facts.record_count > 0
            && previous_digest.is_some()
            && previous_digest == facts.digest.as_deref()
        {
            return Err(PaginationError::IdenticalPage);
        }
        let next = self.advance(current, page_size, facts)?;
        if next.is_some() && pages >= self.max_pages {
            return Err(PaginationError::Endless(pages));
        }
        Ok(next)
    }

    fn advance(
        &self,
        current: &Position,
        page_size: u32,
        facts: &PageFacts,
    ) -> Result<Option<Position>, PaginationError> {
        let received = facts.record_count as u64;
        let short_page = received == 0 || (self.short_page_ends && received < u64::from(page_size));
        Ok(match &self.style {
            Style::Cursor { .. } | Style::PageToken { .. } => {
                match facts.next.as_deref().filter(|token| !token.is_empty()) {
                    None => None,
                    Some(token) => {
                        if *current == Position::Token(token.to_owned()) {
                            return Err(PaginationError::RepeatedCursor(token.to_owned()));
                        }
                        Some(Position::Token(token.to_owned()))
                    }
                }
            }
            Style::Keyset { .. } => match facts.next.as_deref().filter(|value| !value.is_empty()) {
                Some(value) if !short_page => {
                    if *current == Position::Token(value.to_owned()) {
                        return Err(PaginationError::RepeatedCursor(value.to_owned()));
                    }
                    Some(Position::Token(value.to_owned()))
                }
                _ => None,
            },
            Style::Graphql => match facts.next.as_deref().filter(|token| !token.is_empty()) {
                Some(token) if facts.has_more != Some(false) && received > 0 => {
                    if *current == Position::Token(token.to_owned()) {
                        return Err(PaginationError::RepeatedCursor(token.to_owned()));
                    }
                    Some(Position::Token(token.to_owned()))
                }
                _ => None,
            },
            Style::NextUrl | Style::LinkHeader => {
                match facts.next.as_deref().filter(|url| !url.is_empty()) {
                    None => None,
                    Some(url) => {
                        if *current == Position::Url(url.to_owned()) {
                            return Err(PaginationError::RepeatedCursor(url.to_owned()));
                        }
                        Some(Position::Url(url.to_owned()))
                    }
                }
            }
            Style::Offset { .. } => {
                let offset = match current {
                    Position::Offset(offset) => *offset,
                    _ => 0,
                };
                let next = offset + received;
                let more = match (facts.has_more, facts.total) {
                    (Some(more), _) => more && received > 0,
                    (None, Some(total)) => received > 0 && next < total,
                    (None, None) => !short_page,
                };
                more.then_some(Position::Offset(next))
            }
            Style::Page { first_page, .. } => {
                let page = match current {
                    Position::Page(page) => *page,
                    _ => *first_page,
                };
                let more = match (facts.has_more, facts.total) {
                    (Some(more), _) => more && received > 0,
                    (None, Some(total_pages)) => {
                        received > 0 && page + 1 - first_page < total_pages
                    }
                    (None, None) => !short_page,
                };
                more.then_some(Position::Page(page + 1))
            }
            Style::Scim { .. } => {
                let start = match current {
                    Position::StartIndex(start) => *start,
                    _ => 1,
                };
                let next = start + received;
                // A provider's own "more follow" flag wins, as for offsets and pages (Zoho
                // Sprints' index/range lists answer `next`).
                let more = match (facts.has_more, facts.total) {
                    (Some(more), _) => more && received > 0,
                    (None, Some(total)) => received > 0 && next <= total,
                    (None, None) => !short_page,
                };
                more.then_some(Position::StartIndex(next))
            }
            Style::None => None,
        })
    }
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub fn link_next(header: &str) -> Option<String> {
    for link in split_links(header) {
        let Some((target, params)) = link.split_once('>') else {
            continue;
        };
        let target = target.trim().strip_prefix('<')?.trim();
        // Sentry marks a next link that leads nowhere with `results="false"`.
        let exhausted = params.split(';').any(|param| {
            param.split_once('=').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("results")
                    && value.trim().trim_matches('"') == "false"
            })
        });
        let is_next = !exhausted
            && params.split(';').any(|param| {
                let Some((name, value)) = param.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            });
        if is_next {
            return Some(target.to_owned());
        }
    }
    None
}

/// Splits on the commas between links, not the ones inside `<…>`.
fn split_links(header: &str) -> Vec<&str> {
    let mut links = Vec::new();
    let mut inside_target = false;
    let mut start = 0;
    for (index, character) in header.char_indices() {
        match character {
            '<' => inside_target = true,
            '>' => inside_target = false,
            ',' if !inside_target => {
                links.push(header[start..index].trim());
                start = index + 1;
            }
            _ => {}
        }
    }
    links.push(header[start..].trim());
    links
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pagination(style: Style) -> Pagination {
        Pagination {
            style,
            page_size_param: Some("limit".into()),
            max_page_size: Some(200),
            min_page_size: None,
            default_page_size: None,
            max_pages: 5,
            short_page_ends: true,
            last_page_repeats: false,
        }
    }

    fn facts(next: Option<&str>, record_count: usize, digest: &str) -> PageFacts {
        PageFacts {
            next: next.map(str::to_owned),
            record_count,
            digest: Some(digest.to_owned()),
            ..PageFacts::default()
        }
    }

    /// A provider that caps pages below the size asked answers a short page with more to come:
    /// with `short_page_ends: false` only an empty page ends the walk.
    #[test]
    fn a_short_page_ends_the_walk_unless_the_mapping_says_it_may_be_a_cap() {
        let offset = |short_page_ends| Pagination {
            short_page_ends,
            last_page_repeats: false,
            ..pagination(Style::Offset {
                offset_param: "offset".into(),
            })
        };
        let short = facts(None, 50, "a");
        assert_eq!(
            offset(true).next_position(&Position::First, 100, &short, None, 1),
            Ok(None)
        );
        assert_eq!(
            offset(false).next_position(&Position::First, 100, &short, None, 1),
            Ok(Some(Position::Offset(50)))
        );
        let empty = facts(None, 0, "b");
        assert_eq!(
            offset(false).next_position(&Position::Offset(50), 100, &empty, Some("a"), 2),
            Ok(None)
        );
        let page = Pagination {
            short_page_ends: false,
            last_page_repeats: false,
            ..pagination(Style::Page {
                page_param: "page".into(),
                first_page: 1,
            })
        };
        assert_eq!(
            page.next_position(&Position::Page(1), 100, &short, None, 1),
            Ok(Some(Position::Page(2)))
        );
    }

    #[test]
    fn page_size_is_clamped_and_defaulted() {
        let p = pagination(Style::LinkHeader);
        assert_eq!(p.page_size(Some(500), 100), 200);
        assert_eq!(p.page_size(None, 100), 100);
        assert_eq!(p.page_size(Some(7), 100), 7);
        let floored = Pagination {
            min_page_size: Some(5),
            ..p.clone()
        };
        assert_eq!(floored.page_size(Some(2), 100), 5);
        assert_eq!(floored.page_size(Some(0), 100), 5);
        assert_eq!(floored.page_size(Some(7), 100), 7);
        assert_eq!(floored.page_size(Some(500), 100), 200);
    }

    #[test]
    fn cursor_walk_sends_the_token_and_stops_on_empty() {
        let p = pagination(Style::Cursor {
            cursor_param: Some("cursor".into()),
            cursor_header: None,
        });
        assert_eq!(
            p.request_for(&Position::First, 2),
            PageRequest {
                url: None,
                params: vec![("limit".into(), "2".into())],
                headers: vec![],
            }
        );
        let next = p.next_position(&Position::First, 2, &facts(Some("abc"), 2, "d1"), None, 1);
        assert_eq!(next, Ok(Some(Position::Token("abc".into()))));
        assert_eq!(
            p.request_for(&Position::Token("abc".into()), 2).params,
            vec![
                ("limit".into(), "2".into()),
                ("cursor".into(), "abc".into())
            ]
        );
        assert_eq!(
            p.next_position(
                &Position::Token("abc".into()),
                2,
                &facts(Some(""), 1, "d2"),
                Some("d1"),
                2
            ),
            Ok(None)
        );
    }

    #[test]
    fn guards_stop_loops() {
        let p = pagination(Style::Cursor {
            cursor_param: Some("cursor".into()),
            cursor_header: None,
        });
        let current = Position::Token("abc".into());
        assert_eq!(
            p.next_position(&current, 2, &facts(Some("abc"), 2, "d2"), Some("d1"), 2),
            Err(PaginationError::RepeatedCursor("abc".into()))
        );
        assert_eq!(
            p.next_position(&current, 2, &facts(Some("def"), 2, "same"), Some("same"), 2),
            Err(PaginationError::IdenticalPage)
        );
        assert_eq!(
            p.next_position(&current, 2, &facts(Some("def"), 2, "d6"), Some("d5"), 5),
            Err(PaginationError::Endless(5))
        );
        let link = pagination(Style::LinkHeader);
        let url = "https://x.test/users?after=1";
        assert_eq!(
            link.next_position(
                &Position::Url(url.into()),
                2,
                &facts(Some(url), 2, "d2"),
                Some("d1"),
                2
            ),
            Err(PaginationError::RepeatedCursor(url.into()))
        );
    }

    #[test]
    fn offset_page_and_scim_advance_by_what_arrived() {
        let offset = pagination(Style::Offset {
            offset_param: "offset".into(),
        });
        assert_eq!(
            offset.request_for(&Position::First, 10).params,
            vec![("limit".into(), "10".into()), ("offset".into(), "0".into())]
        );
        assert_eq!(
            offset.next_position(&Position::First, 10, &facts(None, 10, "a"), None, 1),
            Ok(Some(Position::Offset(10)))
        );
        assert_eq!(
            offset.next_position(
                &Position::Offset(10),
                10,
                &facts(None, 3, "b"),
                Some("a"),
                2
            ),
            Ok(None)
        );
        let with_total = PageFacts {
            total: Some(20),
            ..facts(None, 10, "c")
        };
        assert_eq!(
            offset.next_position(&Position::Offset(10), 10, &with_total, Some("b"), 2),
            Ok(None)
        );
        let flagged = PageFacts {
            has_more: Some(true),
            ..facts(None, 4, "c")
        };
        assert_eq!(
            offset.next_position(&Position::Offset(10), 10, &flagged, Some("b"), 2),
            Ok(Some(Position::Offset(14)))
        );

        let page = pagination(Style::Page {
            page_param: "page".into(),
            first_page: 1,
        });
        assert_eq!(
            page.request_for(&Position::First, 10).params,
            vec![("limit".into(), "10".into()), ("page".into(), "1".into())]
        );
        let total_pages = PageFacts {
            total: Some(2),
            ..facts(None, 10, "a")
        };
        assert_eq!(
            page.next_position(&Position::First, 10, &total_pages, None, 1),
            Ok(Some(Position::Page(2)))
        );
        let last = PageFacts {
            total: Some(2),
            ..facts(None, 10, "b")
        };
        assert_eq!(
            page.next_position(&Position::Page(2), 10, &last, Some("a"), 2),
            Ok(None)
        );

        let scim = Pagination {
            page_size_param: Some("count".into()),
            ..pagination(Style::Scim {
                start_index_param: "startIndex".into(),
            })
        };
        assert_eq!(
            scim.request_for(&Position::First, 2).params,
            vec![
                ("count".into(), "2".into()),
                ("startIndex".into(), "1".into())
            ]
        );
        let first = PageFacts {
            total: Some(5),
            ..facts(None, 2, "a")
        };
        assert_eq!(
            scim.next_position(&Position::First, 2, &first, None, 1),
            Ok(Some(Position::StartIndex(3)))
        );
        let last = PageFacts {
            total: Some(5),
            ..facts(None, 1, "c")
        };
        assert_eq!(
            scim.next_position(&Position::StartIndex(5), 2, &last, Some("b"), 3),
            Ok(None)
        );
        let exact = PageFacts {
            total: Some(4),
            ..facts(None, 2, "b")
        };
        assert_eq!(
            scim.next_position(&Position::StartIndex(3), 2, &exact, Some("a"), 2),
            Ok(None)
        );
        // A `has_more` flag decides where it is read: a full page with none to follow ends the
        // walk without an empty page after it, a short one with more to follow goes on.
        let full_and_done = PageFacts {
            has_more: Some(false),
            ..facts(None, 2, "d")
        };
        assert_eq!(
            scim.next_position(&Position::First, 2, &full_and_done, None, 1),
            Ok(None)
        );
        let short_with_more = PageFacts {
            has_more: Some(true),
            ..facts(None, 1, "e")
        };
        assert_eq!(
            scim.next_position(&Position::First, 2, &short_with_more, None, 1),
            Ok(Some(Position::StartIndex(2)))
        );
    }

    #[test]
    fn keyset_and_graphql() {
        let keyset = pagination(Style::Keyset {
            after_param: "after".into(),
        });
        assert_eq!(
            keyset.request_for(&Position::First, 2).params,
            vec![("limit".into(), "2".into())]
        );
        assert_eq!(
            keyset.request_for(&Position::Token("42".into()), 2).params,
            vec![("limit".into(), "2".into()), ("after".into(), "42".into())]
        );
        assert_eq!(
            keyset.next_position(&Position::First, 2, &facts(Some("42"), 2, "a"), None, 1),
            Ok(Some(Position::Token("42".into())))
        );
        assert_eq!(
            keyset.next_position(
                &Position::Token("42".into()),
                2,
                &facts(Some("43"), 1, "b"),
                Some("a"),
                2
            ),
            Ok(None)
        );

        let graphql = pagination(Style::Graphql);
        assert_eq!(
            graphql.request_for(&Position::Token("c1".into()), 2).params,
            vec![]
        );
        let more = PageFacts {
            has_more: Some(true),
            ..facts(Some("c1"), 2, "a")
        };
        assert_eq!(
            graphql.next_position(&Position::First, 2, &more, None, 1),
            Ok(Some(Position::Token("c1".into())))
        );
        let done = PageFacts {
            has_more: Some(false),
            ..facts(Some("c2"), 2, "b")
        };
        assert_eq!(
            graphql.next_position(&Position::Token("c1".into()), 2, &done, Some("a"), 2),
            Ok(None)
        );
    }

    #[test]
    fn a_header_cursor_travels_in_its_header_not_the_query() {
        let p = pagination(Style::Cursor {
            cursor_param: None,
            cursor_header: Some("Range".into()),
        });
        assert_eq!(
            p.request_for(&Position::First, 2),
            PageRequest {
                url: None,
                params: vec![("limit".into(), "2".into())],
                headers: vec![],
            }
        );
        assert_eq!(
            p.request_for(&Position::Token("]id 42..; max=2".into()), 2),
            PageRequest {
                url: None,
                params: vec![("limit".into(), "2".into())],
                headers: vec![("Range".into(), "]id 42..; max=2".into())],
            }
        );
    }

    #[test]
    fn next_url_styles_request_the_url_as_given() {
        let p = pagination(Style::NextUrl);
        let url = "https://graph.test/v1.0/users?$skiptoken=X";
        assert_eq!(
            p.request_for(&Position::Url(url.into()), 5),
            PageRequest {
                url: Some(url.into()),
                params: vec![],
                headers: vec![],
            }
        );
        assert_eq!(
            p.request_for(&Position::First, 5).params,
            vec![("limit".into(), "5".into())]
        );
        assert_eq!(
            pagination(Style::None)
                .request_for(&Position::First, 5)
                .params,
            vec![]
        );
    }

    #[test]
    fn link_header_parsing() {
        let header = r#"<https://acme.okta.com/api/v1/users?limit=2>; rel="self", <https://acme.okta.com/api/v1/users?after=00u2&limit=2>; rel="next""#;
        assert_eq!(
            link_next(header).as_deref(),
            Some("https://acme.okta.com/api/v1/users?after=00u2&limit=2")
        );
        assert_eq!(
            link_next(r#"<https://a.test/x?a=1,2>; rel="prev next""#).as_deref(),
            Some("https://a.test/x?a=1,2")
        );
        assert_eq!(link_next(r#"<https://a.test/x>; rel="self""#), None);
        assert_eq!(link_next(""), None);
        let sentry = r#"<https://sentry.io/api/0/x/?cursor=0:100:1>; rel="previous"; results="true"; cursor="0:100:1", <https://sentry.io/api/0/x/?cursor=0:200:0>; rel="next"; results="false"; cursor="0:200:0""#;
        assert_eq!(link_next(sentry), None);
        let more = sentry.replace(r#"results="false""#, r#"results="true""#);
        assert_eq!(
            link_next(&more).as_deref(),
            Some("https://sentry.io/api/0/x/?cursor=0:200:0")
        );
    }
}
