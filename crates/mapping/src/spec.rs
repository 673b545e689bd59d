//! The file format of `mappings/<integration>.yaml` (`docs/mapping-format.md`), as serde types.
//!
//! Unknown keys are errors. Expressions and templates are kept with their YAML location
//! ([`Spanned`]) so that compile errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationSpec {
    pub name: String,
    pub docs: Text,
    pub base_url: Text,
    #[serde(default)]
    pub headers: BTreeMap<String, Text>,
    pub auth: AuthSpec,
    #[serde(default)]
    pub pagination: Option<PaginationSpec>,
    #[serde(default)]
    pub errors: Option<ErrorsSpec>,
    pub resources: BTreeMap<String, BTreeMap<String, ResourceSpec>>,
    #[serde(default)]
    pub unified: BTreeMap<String, BTreeMap<String, BTreeMap<String, UnifiedMethodSpec>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Header,
    Query,
    Basic,
    Bearer,
    None,
}

/// Flat on purpose: one struct keeps YAML locations, and `compile` checks which fields each
/// kind needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    pub kind: Spanned<AuthKind>,
    #[serde(default)]
    pub header: Option<Text>,
    #[serde(default)]
    pub param: Option<Text>,
    #[serde(default)]
    pub value: Option<Text>,
    #[serde(default)]
    pub username: Option<Text>,
    #[serde(default)]
    pub password: Option<Text>,
    #[serde(default)]
    pub token: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StyleName {
    Cursor,
    PageToken,
    NextUrl,
    LinkHeader,
    Offset,
    Page,
    Scim,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationSpec {
    pub style: Spanned<StyleName>,
    #[serde(default)]
    pub page_size_param: Option<String>,
    #[serde(default)]
    pub max_page_size: Option<u32>,
    #[serde(default)]
    pub default_page_size: Option<u32>,
    #[serde(default)]
    pub max_pages: Option<u32>,
    #[serde(default)]
    pub cursor_param: Option<String>,
    #[serde(default)]
    pub next_cursor: Option<Text>,
    #[serde(default)]
    pub token_param: Option<String>,
    #[serde(default)]
    pub next_token: Option<Text>,
    #[serde(default)]
    pub next_url: Option<Text>,
    #[serde(default)]
    pub offset_param: Option<String>,
    #[serde(default)]
    pub page_param: Option<String>,
    #[serde(default)]
    pub first_page: Option<u64>,
    #[serde(default)]
    pub start_index_param: Option<String>,
    #[serde(default)]
    pub has_more: Option<Text>,
    #[serde(default)]
    pub total: Option<Text>,
    #[serde(default)]
    pub total_pages: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsSpec {
    pub when: Text,
    #[serde(default)]
    pub status: Option<Text>,
    #[serde(default)]
    pub message: Option<Text>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum HttpMethod {
    #[default]
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default)]
    pub method: HttpMethod,
    pub path: Text,
    #[serde(default)]
    pub query: BTreeMap<String, Text>,
    pub records: Text,
    #[serde(default)]
    pub pagination: Option<PaginationSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiedMethodSpec {
    pub resource: Text,
    #[serde(default)]
    pub partial: bool,
    #[serde(default)]
    pub native_filters: Vec<Text>,
    #[serde(default)]
    pub native_sorts: Vec<Text>,
    #[serde(default)]
    pub query_mapping: Option<Text>,
    pub response_mapping: Text,
}
