//! The parsed, validated query of a unified get call (`GET /unified/{model}/{resource}/{id}`):
//! the parameters Truto documents for get — the account, the response format, `remote_data`,
//! excluded fields and `remote_query`. Anything else (filters, `limit`, cursors, `truto_key_by`,
//! `truto_ignore_limit`) is a 400: a get fetches one record.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::list_query::{ResponseFormat, boolean, scalar, string_list};

/// The query parameters a get call takes: the table the parser matches on and the OpenAPI
/// document is written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetParameter {
    IntegratedAccountId,
    ResponseFormat,
    IgnoreRemoteData,
    ExcludeFields,
    RemoteQuery,
}

impl GetParameter {
    pub const ALL: [GetParameter; 5] = [
        GetParameter::IntegratedAccountId,
        GetParameter::ResponseFormat,
        GetParameter::IgnoreRemoteData,
        GetParameter::ExcludeFields,
        GetParameter::RemoteQuery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GetParameter::IntegratedAccountId => "integrated_account_id",
            GetParameter::ResponseFormat => "truto_response_format",
            GetParameter::IgnoreRemoteData => "truto_ignore_remote_data",
            GetParameter::ExcludeFields => "truto_exclude_fields",
            GetParameter::RemoteQuery => "remote_query",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|parameter| parameter.name() == name)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GetQuery {
    pub integrated_account_id: String,
    /// `unified`, `normalized` or `raw` (a single record is not streamed).
    pub response_format: ResponseFormat,
    pub remote_query: Map<String, Value>,
    pub ignore_remote_data: bool,
    pub exclude_fields: Vec<String>,
}

impl GetQuery {
    pub fn parse(params: Map<String, Value>) -> Result<Self, ApiError> {
        let mut query = GetQuery::default();
        for (name, value) in params {
            match GetParameter::from_name(&name) {
                Some(GetParameter::IntegratedAccountId) => {
                    query.integrated_account_id = scalar(&name, &value)?.to_owned();
                }
                Some(GetParameter::ResponseFormat) => {
                    let text = scalar(&name, &value)?;
                    query.response_format = match ResponseFormat::parse(text) {
                        Some(ResponseFormat::Stream) | None => {
                            return Err(ApiError::bad_request(format!(
                                "`truto_response_format` of a get must be one of unified, normalized, raw; got `{text}`"
                            )));
                        }
                        Some(format) => format,
                    };
                }
                Some(GetParameter::IgnoreRemoteData) => {
                    query.ignore_remote_data = boolean(&name, &value)?
                }
                Some(GetParameter::ExcludeFields) => {
                    query.exclude_fields = string_list(&name, &value)?
                }
                Some(GetParameter::RemoteQuery) => match value {
                    Value::Object(object) => query.remote_query = object,
                    _ => {
                        return Err(ApiError::bad_request(
                            "`remote_query` must be an object: `remote_query[param]=value`",
                        ));
                    }
                },
                None => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{name}` (a get takes integrated_account_id, truto_response_format, truto_ignore_remote_data, truto_exclude_fields and remote_query)"
                    )));
                }
            }
        }
        if query.integrated_account_id.is_empty() {
            return Err(ApiError::bad_request("`integrated_account_id` is required"));
        }
        Ok(query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<GetQuery, ApiError> {
        GetQuery::parse(value.as_object().unwrap().clone())
    }

    #[test]
    fn reads_the_get_parameters_and_refuses_the_rest() {
        let query = parse(json!({
            "integrated_account_id": "a",
            "truto_response_format": "normalized",
            "truto_exclude_fields": ["emails", "phones"],
            "truto_ignore_remote_data": "true",
            "remote_query": {"expand": "x"},
        }))
        .unwrap();
        assert_eq!(query.response_format, ResponseFormat::Normalized);
        assert_eq!(query.exclude_fields, ["emails", "phones"]);
        assert!(query.ignore_remote_data);
        for (params, message) in [
            (json!({}), "`integrated_account_id` is required"),
            (
                json!({"integrated_account_id": "a", "limit": "2"}),
                "unknown query parameter `limit`",
            ),
            (
                json!({"integrated_account_id": "a", "truto_response_format": "stream"}),
                "must be one of unified, normalized, raw; got `stream`",
            ),
        ] {
            let error = parse(params).unwrap_err();
            assert_eq!(error.status(), 400);
            assert!(error.message.contains(message), "{}", error.message);
        }
    }
}
