//! The parsed, validated query of a unified list call.
//!
//! Every parameter of `spec/list-users.md` is recognised here; an unknown parameter, a value of
//! the wrong type or outside its enum is a 400 that says which and why. What a parameter then
//! does is the engine's business.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::model::{FieldType, FilterSpec, UnifiedResource};
use crate::time::{format_rfc3339, parse_iso8601};

/// `truto_response_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    #[default]
    Unified,
    Normalized,
    Raw,
    Stream,
}

impl ResponseFormat {
    const ALLOWED: &'static str = "unified, normalized, raw, stream";

    pub(crate) fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "unified" => ResponseFormat::Unified,
            "normalized" => ResponseFormat::Normalized,
            "raw" => ResponseFormat::Raw,
            "stream" => ResponseFormat::Stream,
            _ => return None,
        })
    }
}

/// The query parameters a list call takes besides the resource's filters: one table that the
/// parser matches on and the OpenAPI document is written from, so neither can name a parameter
/// the other lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListParameter {
    IntegratedAccountId,
    Limit,
    NextCursor,
    ResponseFormat,
    KeyBy,
    IgnoreLimit,
    IgnoreRemoteData,
    ExcludeFields,
    RemoteQuery,
    SortBy,
    SortOrder,
}

impl ListParameter {
    pub const ALL: [ListParameter; 11] = [
        ListParameter::IntegratedAccountId,
        ListParameter::Limit,
        ListParameter::NextCursor,
        ListParameter::ResponseFormat,
        ListParameter::KeyBy,
        ListParameter::IgnoreLimit,
        ListParameter::IgnoreRemoteData,
        ListParameter::ExcludeFields,
        ListParameter::RemoteQuery,
        ListParameter::SortBy,
        ListParameter::SortOrder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ListParameter::IntegratedAccountId => "integrated_account_id",
            ListParameter::Limit => "limit",
            ListParameter::NextCursor => "next_cursor",
            ListParameter::ResponseFormat => "truto_response_format",
            ListParameter::KeyBy => "truto_key_by",
            ListParameter::IgnoreLimit => "truto_ignore_limit",
            ListParameter::IgnoreRemoteData => "truto_ignore_remote_data",
            ListParameter::ExcludeFields => "truto_exclude_fields",
            ListParameter::RemoteQuery => "remote_query",
            ListParameter::SortBy => "sort_by",
            ListParameter::SortOrder => "sort_order",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|parameter| parameter.name() == name)
    }
}

/// A unified list query, checked against the unified resource's filters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    pub integrated_account_id: String,
    /// Requested page size; `None` means the configured default.
    pub limit: Option<u32>,
    /// The opaque cursor of the previous page; `None` (or an empty parameter) = first page.
    pub next_cursor: Option<String>,
    pub response_format: ResponseFormat,
    /// Filters by name: a string, `{op: value}` for operator forms, an array for `in`.
    pub filters: Map<String, Value>,
    pub sort_by: Option<String>,
    /// `asc` unless `sort_order=desc`.
    pub sort_descending: bool,
    /// `remote_query[...]`, passed to the provider verbatim.
    pub remote_query: Map<String, Value>,
    pub key_by: Option<String>,
    pub ignore_limit: bool,
    pub ignore_remote_data: bool,
    pub exclude_fields: Vec<String>,
}

/// Largest `limit` a caller may ask for; integrations clamp further to their `max_page_size`.
pub const MAX_LIMIT: u32 = 10_000;

impl ListQuery {
    /// Reads a qs-parsed query string.
    pub fn parse(params: Map<String, Value>, resource: &UnifiedResource) -> Result<Self, ApiError> {
        let mut query = ListQuery::default();
        let mut account_id = None;
        for (name, value) in params {
            match ListParameter::from_name(&name) {
                Some(ListParameter::IntegratedAccountId) => {
                    account_id = Some(scalar(&name, &value)?.to_owned())
                }
                Some(ListParameter::Limit) => {
                    let text = scalar(&name, &value)?;
                    if !text.is_empty() {
                        query.limit = Some(parse_limit(text)?);
                    }
                }
                Some(ListParameter::NextCursor) => {
                    let text = scalar(&name, &value)?;
                    query.next_cursor = (!text.is_empty()).then(|| text.to_owned());
                }
                Some(ListParameter::ResponseFormat) => {
                    let text = scalar(&name, &value)?;
                    query.response_format = ResponseFormat::parse(text).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "`truto_response_format` must be one of {}; got `{text}`",
                            ResponseFormat::ALLOWED
                        ))
                    })?;
                }
                Some(ListParameter::KeyBy) => {
                    let text = scalar(&name, &value)?;
                    if text.is_empty() {
                        return Err(ApiError::bad_request("`truto_key_by` needs a field name"));
                    }
                    query.key_by = Some(text.to_owned());
                }
                Some(ListParameter::IgnoreLimit) => query.ignore_limit = boolean(&name, &value)?,
                Some(ListParameter::IgnoreRemoteData) => {
                    query.ignore_remote_data = boolean(&name, &value)?
                }
                Some(ListParameter::ExcludeFields) => {
                    query.exclude_fields = string_list(&name, &value)?
                }
                Some(ListParameter::RemoteQuery) => match value {
                    Value::Object(object) => query.remote_query = object,
                    _ => {
                        return Err(ApiError::bad_request(
                            "`remote_query` must be an object: `remote_query[param]=value`",
                        ));
                    }
                },
                Some(ListParameter::SortBy) => {
                    let text = scalar(&name, &value)?;
                    if !resource.sorts.iter().any(|sort| sort == text) {
                        return Err(ApiError::bad_request(format!(
                            "`sort_by` must be one of {}; got `{text}`",
                            resource.sorts.join(", ")
                        )));
                    }
                    query.sort_by = Some(text.to_owned());
                }
                Some(ListParameter::SortOrder) => {
                    query.sort_descending = match scalar(&name, &value)? {
                        "asc" | "" => false,
                        "desc" => true,
                        other => {
                            return Err(ApiError::bad_request(format!(
                                "`sort_order` must be `asc` or `desc`; got `{other}`"
                            )));
                        }
                    }
                }
                None => match resource.filters.get(&name) {
                    Some(filter) => {
                        let checked = check_filter(&name, filter, value)?;
                        query.filters.insert(name, checked);
                    }
                    None => {
                        return Err(ApiError::bad_request(format!(
                            "unknown query parameter `{name}`"
                        )));
                    }
                },
            }
        }
        query.integrated_account_id = match account_id {
            Some(id) if !id.is_empty() => id,
            _ => {
                return Err(ApiError::bad_request("`integrated_account_id` is required"));
            }
        };
        Ok(query)
    }
}

pub(crate) fn scalar<'v>(name: &str, value: &'v Value) -> Result<&'v str, ApiError> {
    value.as_str().ok_or_else(|| {
        ApiError::bad_request(format!("`{name}` must be given once, as a plain value"))
    })
}

fn parse_limit(text: &str) -> Result<u32, ApiError> {
    match text.parse::<u32>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::bad_request(format!(
            "`limit` must be an integer from 1 to {MAX_LIMIT}; got `{text}`"
        ))),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "1" | "" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

pub(crate) fn boolean(name: &str, value: &Value) -> Result<bool, ApiError> {
    let text = scalar(name, value)?;
    parse_bool(text).ok_or_else(|| {
        ApiError::bad_request(format!("`{name}` must be `true` or `false`; got `{text}`"))
    })
}

/// `a[]=x&a[]=y`, `a[0]=x`, and `a=x,y` all give `[x, y]`.
pub(crate) fn string_list(name: &str, value: &Value) -> Result<Vec<String>, ApiError> {
    let items: Vec<&str> = match value {
        Value::String(text) => text.split(',').collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| ApiError::bad_request(format!("`{name}` must hold strings")))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(ApiError::bad_request(format!(
                "`{name}` must be a list of fields"
            )));
        }
    };
    Ok(items
        .into_iter()
        .flat_map(|item| item.split(','))
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect())
}

fn check_filter(name: &str, filter: &FilterSpec, value: Value) -> Result<Value, ApiError> {
    match value {
        Value::String(text) => check_filter_value(name, filter, text, "eq"),
        Value::Object(operators) if !filter.operators.is_empty() => {
            let mut checked = Map::new();
            for (operator, operand) in operators {
                if !filter.operators.contains(&operator) {
                    return Err(ApiError::bad_request(format!(
                        "filter `{name}` does not take operator `{operator}` (it takes: {})",
                        filter.operators.join(", ")
                    )));
                }
                let text = scalar(&format!("{name}[{operator}]"), &operand)?.to_owned();
                checked.insert(
                    operator.clone(),
                    check_filter_value(name, filter, text, &operator)?,
                );
            }
            Ok(Value::Object(checked))
        }
        _ => Err(ApiError::bad_request(format!(
            "filter `{name}` must be a plain value{}",
            if filter.operators.is_empty() {
                String::new()
            } else {
                format!(
                    " or `{name}[op]=value` with op one of {}",
                    filter.operators.join(", ")
                )
            }
        ))),
    }
}

fn check_filter_value(
    name: &str,
    filter: &FilterSpec,
    text: String,
    operator: &str,
) -> Result<Value, ApiError> {
    if operator == "in" {
        let items = text
            .split(',')
            .map(|item| check_filter_value(name, filter, item.trim().to_owned(), "eq"))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Value::Array(items));
    }
    // A native filter's empty value reaches no provider (query mappings drop "" parameters, so
    // every user is listed), while a gateway filter would match no record: the answer would
    // depend on the integration. Neither is what an empty value asks, so it is refused.
    if text.is_empty() {
        return Err(ApiError::bad_request(format!(
            "filter `{name}` is empty: give it a value, or leave it out to list without it"
        )));
    }
    if !filter.allowed.is_empty() && !filter.allowed.contains(&text) {
        return Err(ApiError::bad_request(format!(
            "filter `{name}` must be one of {}; got `{text}`",
            filter.allowed.join(", ")
        )));
    }
    match filter.filter_type {
        FieldType::Boolean => parse_bool(&text).map(Value::Bool).ok_or_else(|| {
            ApiError::bad_request(format!(
                "filter `{name}` must be `true` or `false`; got `{text}`"
            ))
        }),
        // Every mapping receives one form: RFC 3339 in UTC, whatever offset the caller used.
        FieldType::Datetime => parse_iso8601(&text)
            .map(|millis| Value::String(format_rfc3339(millis)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "filter `{name}` must be an ISO-8601 date or date-time; got `{text}`"
                ))
            }),
        _ => Ok(Value::String(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FieldType;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn resource() -> UnifiedResource {
        let filter = |filter_type, allowed: &[&str], operators: &[&str]| FilterSpec {
            filter_type,
            description: None,
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            operators: operators.iter().map(|s| s.to_string()).collect(),
            fields: Vec::new(),
            case_sensitive: false,
        };
        UnifiedResource {
            fields: BTreeMap::new(),
            filters: BTreeMap::from([
                ("email".to_owned(), filter(FieldType::String, &[], &[])),
                (
                    "status".to_owned(),
                    filter(FieldType::String, &["active", "inactive"], &["eq", "in"]),
                ),
                (
                    "created_at".to_owned(),
                    filter(FieldType::Datetime, &[], &["eq", "gt", "gte", "lt", "lte"]),
                ),
                (
                    "include_inherited".to_owned(),
                    filter(FieldType::Boolean, &[], &[]),
                ),
            ]),
            sorts: vec!["id".to_owned()],
        }
    }

    fn parse(value: Value) -> Result<ListQuery, ApiError> {
        let Value::Object(params) = value else {
            panic!()
        };
        ListQuery::parse(params, &resource())
    }

    #[test]
    fn reads_every_kind_of_parameter() {
        let query = parse(json!({
            "integrated_account_id": "acc", "limit": "50", "next_cursor": "",
            "truto_response_format": "raw", "truto_exclude_fields": ["a", "b,c"],
            "remote_query": {"x": {"y": "1"}}, "status": {"in": "active,inactive"},
            "created_at": {"gt": "2024-01-01T01:00:00+01:00", "lte": "2024-02-01"}, "email": "A@b.c",
            "include_inherited": "true", "sort_by": "id", "truto_ignore_remote_data": "true"
        }))
        .expect("valid");
        assert_eq!(query.integrated_account_id, "acc");
        assert_eq!(query.limit, Some(50));
        assert_eq!(query.next_cursor, None);
        assert_eq!(query.response_format, ResponseFormat::Raw);
        assert_eq!(query.exclude_fields, vec!["a", "b", "c"]);
        assert_eq!(
            query.remote_query,
            json!({"x": {"y": "1"}}).as_object().cloned().unwrap()
        );
        assert_eq!(
            Value::Object(query.filters),
            json!({"status": {"in": ["active", "inactive"]},
                   "created_at": {"gt": "2024-01-01T00:00:00Z", "lte": "2024-02-01T00:00:00Z"}, "email": "A@b.c",
                   "include_inherited": true})
        );
        assert!(query.ignore_remote_data);
        assert_eq!(query.sort_by.as_deref(), Some("id"));
    }

    #[test]
    fn refuses_bad_input_with_the_reason() {
        let message = |value| parse(value).unwrap_err().message;
        assert_eq!(message(json!({})), "`integrated_account_id` is required");
        assert_eq!(
            message(json!({"integrated_account_id": ""})),
            "`integrated_account_id` is required"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "limit": "0"})),
            "`limit` must be an integer from 1 to 10000; got `0`"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "status": "foo"})),
            "filter `status` must be one of active, inactive; got `foo`"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "created_at": {"between": "x"}})),
            "filter `created_at` does not take operator `between` (it takes: eq, gt, gte, lt, lte)"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "created_at": "yesterday"})),
            "filter `created_at` must be an ISO-8601 date or date-time; got `yesterday`"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "email": ""})),
            "filter `email` is empty: give it a value, or leave it out to list without it"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "status": {"in": "active,"}})),
            "filter `status` is empty: give it a value, or leave it out to list without it"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "colour": "red"})),
            "unknown query parameter `colour`"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "sort_by": "shoe_size"})),
            "`sort_by` must be one of id; got `shoe_size`"
        );
        assert_eq!(
            message(json!({"integrated_account_id": "a", "truto_response_format": "xml"})),
            "`truto_response_format` must be one of unified, normalized, raw, stream; got `xml`"
        );
        assert_eq!(
            message(json!({"integrated_account_id": ["a", "b"]})),
            "`integrated_account_id` must be given once, as a plain value"
        );
    }
}
