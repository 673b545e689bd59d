//! The gateway's OpenAPI 3.1 document, served at `/openapi.json`: written from the code, not
//! beside it. Paths come from the loaded unified models (one list, get and meta path per
//! resource), query parameters from the parsers' own tables (`ListParameter`, `GetParameter`)
//! and each resource's filters and sort keys, record schemas from the model's fields, and error
//! statuses from what each route can answer. It owns no routing: `tests/openapi.rs` checks the
//! document against the router, both ways.

use serde_json::{Map, Value, json};
use unigate_mapping::Catalog;
use unigate_unified::list_query::MAX_LIMIT;
use unigate_unified::model::{FieldSpec, FilterSpec};
use unigate_unified::{FieldType, GetParameter, ListParameter, UnifiedResource};

/// Answers every route can give: the request head refused before routing, the gateway full,
/// the request past its deadline.
const EVERY_ROUTE: &[u16] = &[414, 431, 503, 504];

/// The document for a loaded mapping set.
pub fn document(catalog: &Catalog) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    schemas.insert("Capabilities".into(), capabilities_schema());
    schemas.insert("IntegratedAccount".into(), account_schema());
    for (model_name, model) in &catalog.models {
        for (resource_name, resource) in &model.resources {
            let schema_name = schema_name(model_name, resource_name);
            schemas.insert(schema_name.clone(), record_schema(resource));
            let base = format!("/unified/{model_name}/{resource_name}");
            let tag = format!("{model_name}/{resource_name}");
            paths.insert(
                base.clone(),
                json!({"get": list_operation(model_name, resource_name, resource, &schema_name, &tag)}),
            );
            paths.insert(
                format!("{base}/{{id}}"),
                json!({"get": get_operation(model_name, resource_name, &schema_name, &tag)}),
            );
            paths.insert(
                format!("{base}/meta/{{method}}"),
                json!({"get": meta_operation(model_name, resource_name, &tag, true)}),
            );
            paths.insert(
                format!("{base}/{{integration}}/meta/{{method}}"),
                json!({"get": meta_operation(model_name, resource_name, &tag, false)}),
            );
        }
    }
    admin_paths(&mut paths);
    open_paths(&mut paths);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "unigate",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted unified API gateway, compatible with Truto's Unified API: the same URLs, query parameters and answer envelope. Errors share one envelope (`Error`); `truto_is_remote_error` marks those the provider caused.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "admin"}, {"name": "operations"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiToken": {"type": "http", "scheme": "bearer", "description": "One of the config's `api_tokens`."},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "One of the config's `admin_tokens`."},
            },
        },
    })
}

fn schema_name(model: &str, resource: &str) -> String {
    let mut name = String::new();
    for word in model.split(['-', '_']).chain(resource.split(['-', '_'])) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    name
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "The error envelope every non-2xx answer carries.",
        "required": ["statusCode", "error", "message"],
        "properties": {
            "statusCode": {"type": "integer", "description": "The HTTP status of the answer."},
            "error": {"type": "string", "description": "The status's reason phrase."},
            "message": {"type": "string"},
            "request_id": {"type": "string", "description": "The answer's `x-request-id`."},
            "truto_is_remote_error": {"type": "boolean", "description": "Present (true) when the provider caused the error."},
            "remote_status": {"type": "integer", "description": "The provider's own status, when it differs from `statusCode` (a provider 5xx is a 502)."},
            "raw_response": {"description": "The provider's answer body (JSON, or text)."},
        },
    })
}

fn capabilities_schema() -> Value {
    json!({
        "type": "object",
        "description": "What one integration's mapping of a unified method supports.",
    })
}

fn account_schema() -> Value {
    json!({
        "type": "object",
        "required": ["id", "integration", "status", "context_keys"],
        "properties": {
            "id": {"type": "string"},
            "integration": {"type": "string", "description": "The integration id (a mapping file's stem)."},
            "base_url": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["active", "needs_reauth"]},
            "last_error": {"type": ["string", "null"]},
            "mapping": {"type": ["string", "null"], "description": "The account's mapping override (YAML or JSON text)."},
            "context_keys": {"type": "array", "items": {"type": "string"}, "description": "The context's keys; values (credentials) never come back out."},
            "rate_limited": {
                "type": ["object", "null"],
                "description": "The wait a provider asked of the account's calls (a rate limit with Retry-After or a reset), if any: calls meanwhile wait it out or are answered 429 unsent. An admin change of the account releases it.",
                "properties": {
                    "seconds_left": {"type": "integer"},
                    "provider_status": {"type": "integer", "description": "The status of the answer that asked (429, or a provider's own: 403, 503)."},
                },
            },
        },
    })
}

fn field_schema(field: &FieldSpec) -> Value {
    let mut schema = match field.field_type {
        FieldType::String => json!({"type": "string"}),
        FieldType::Boolean => json!({"type": "boolean"}),
        FieldType::Number => json!({"type": "number"}),
        FieldType::Datetime => json!({"type": "string", "format": "date-time"}),
        FieldType::Object if field.fields.is_empty() => json!({"type": "object"}),
        FieldType::Object => {
            let properties: Map<String, Value> = field
                .fields
                .iter()
                .map(|(name, inner)| (name.clone(), field_schema(inner)))
                .collect();
            json!({"type": "object", "properties": properties})
        }
        FieldType::Array => match &field.items {
            Some(items) => json!({"type": "array", "items": field_schema(items)}),
            None => json!({"type": "array"}),
        },
    };
    let mut description = field.description.clone().unwrap_or_default();
    // A provider value with no clear unified counterpart is kept raw, so the enum is the usual
    // set, not a closed one.
    if !field.allowed.is_empty() {
        description = format!(
            "{description} Usually one of: {}.",
            field.allowed.join(", ")
        )
        .trim()
        .to_owned();
    }
    if !description.is_empty() {
        schema["description"] = json!(description);
    }
    schema
}

fn record_schema(resource: &UnifiedResource) -> Value {
    let mut properties: Map<String, Value> = resource
        .fields
        .iter()
        .map(|(name, field)| (name.clone(), field_schema(field)))
        .collect();
    properties.insert(
        "remote_data".into(),
        json!({"description": "The provider's record as it sent it (absent with `truto_ignore_remote_data=true`)."}),
    );
    let required: Vec<&String> = resource
        .fields
        .iter()
        .filter(|(_, field)| field.required)
        .map(|(name, _)| name)
        .collect();
    json!({"type": "object", "required": required, "properties": properties})
}

fn query(name: &str, required: bool, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema})
}

fn boolean_schema() -> Value {
    json!({"type": "string", "enum": ["true", "false", "1", "0"]})
}

fn list_parameter(parameter: ListParameter, resource: &UnifiedResource) -> Value {
    match parameter {
        ListParameter::IntegratedAccountId => query(
            parameter.name(),
            true,
            "The integrated account to list from.",
            json!({"type": "string", "minLength": 1}),
        ),
        ListParameter::Limit => query(
            parameter.name(),
            false,
            "Records per page (the integration clamps it to its provider's page size).",
            json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
        ),
        ListParameter::NextCursor => query(
            parameter.name(),
            false,
            "The `next_cursor` of the previous answer.",
            json!({"type": "string"}),
        ),
        ListParameter::ResponseFormat => query(
            parameter.name(),
            false,
            "`unified` (default), `normalized`, `raw` (the provider's records), or `stream` (one record per line, every page).",
            json!({"type": "string", "enum": ["unified", "normalized", "raw", "stream"]}),
        ),
        ListParameter::KeyBy => query(
            parameter.name(),
            false,
            "Answer `result` as an object keyed by this field.",
            json!({"type": "string", "minLength": 1}),
        ),
        ListParameter::IgnoreLimit => query(
            parameter.name(),
            false,
            "Walk every page into one answer (bounded by the gateway's record and byte budgets).",
            boolean_schema(),
        ),
        ListParameter::IgnoreRemoteData => query(
            parameter.name(),
            false,
            "Leave `remote_data` out of each record.",
            boolean_schema(),
        ),
        ListParameter::ExcludeFields => query(
            parameter.name(),
            false,
            "Fields to leave out of each record, comma-separated.",
            json!({"type": "string"}),
        ),
        ListParameter::RemoteQuery => json!({
            "name": parameter.name(), "in": "query", "required": false,
            "description": "Parameters passed to the provider as they are: `remote_query[param]=value`.",
            "style": "deepObject", "explode": true,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
        }),
        ListParameter::SortBy => query(
            parameter.name(),
            false,
            "Sort the answer by this field.",
            json!({"type": "string", "enum": resource.sorts}),
        ),
        ListParameter::SortOrder => query(
            parameter.name(),
            false,
            "With `sort_by`: ascending (default) or descending.",
            json!({"type": "string", "enum": ["asc", "desc"]}),
        ),
    }
}

fn get_parameter(parameter: GetParameter) -> Value {
    match parameter {
        GetParameter::IntegratedAccountId => query(
            parameter.name(),
            true,
            "The integrated account to read from.",
            json!({"type": "string", "minLength": 1}),
        ),
        GetParameter::ResponseFormat => query(
            parameter.name(),
            false,
            "`unified` (default), `normalized` or `raw`.",
            json!({"type": "string", "enum": ["unified", "normalized", "raw"]}),
        ),
        GetParameter::IgnoreRemoteData => query(
            parameter.name(),
            false,
            "Leave `remote_data` out of the record.",
            boolean_schema(),
        ),
        GetParameter::ExcludeFields => query(
            parameter.name(),
            false,
            "Fields to leave out of the record, comma-separated.",
            json!({"type": "string"}),
        ),
        GetParameter::RemoteQuery => json!({
            "name": parameter.name(), "in": "query", "required": false,
            "description": "Parameters passed to the provider as they are: `remote_query[param]=value`.",
            "style": "deepObject", "explode": true,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
        }),
    }
}

fn filter_parameter(name: &str, filter: &FilterSpec) -> Value {
    let mut value = match filter.filter_type {
        FieldType::Datetime => json!({"type": "string", "format": "date-time"}),
        FieldType::Boolean => boolean_schema(),
        FieldType::Number => json!({"type": "number"}),
        _ => json!({"type": "string"}),
    };
    if !filter.allowed.is_empty() {
        value = json!({"type": "string", "enum": filter.allowed});
    }
    let description = filter
        .description
        .clone()
        .unwrap_or_else(|| format!("Records whose `{name}` matches."));
    if filter.operators.is_empty() {
        return query(name, false, &description, value);
    }
    let operators: Map<String, Value> = filter
        .operators
        .iter()
        .map(|operator| {
            let operand = if operator == "in" {
                json!({"type": "string", "description": "Comma-separated values."})
            } else {
                value.clone()
            };
            (operator.clone(), operand)
        })
        .collect();
    json!({
        "name": name, "in": "query", "required": false,
        "description": format!("{description} A plain value, or `{name}[op]=value` with op one of {}.", filter.operators.join(", ")),
        "style": "deepObject", "explode": true,
        "schema": {"oneOf": [value, {"type": "object", "properties": operators, "additionalProperties": false, "minProperties": 1}]},
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    })
}

/// The error answers of a route: its own statuses plus those every route can give.
fn errors(own: &[u16]) -> Map<String, Value> {
    let mut responses = Map::new();
    for status in own.iter().chain(EVERY_ROUTE) {
        let description = match status {
            400 => "A parameter is missing, unknown or invalid.",
            401 => "No valid bearer token.",
            404 => {
                "Unknown account, integration, record, or a method the integration does not map."
            }
            409 => "An account with this id exists.",
            413 => "The request body is too large.",
            414 => "The request URI is too long.",
            429 => {
                "The provider rate-limited the call for longer than the gateway waits (remote; `Retry-After`)."
            }
            431 => "The request headers are too large.",
            500 => "A mapping failed on the provider's answer, or a gateway bug.",
            502 => {
                "The provider failed (5xx, unreachable, or an answer the mapping cannot serve): remote."
            }
            503 => {
                "The gateway is at its concurrency bound, or its account store is unreachable (`Retry-After`)."
            }
            504 => {
                "The provider did not answer in time (remote), or the request ran past the gateway's deadline."
            }
            _ => "An error.",
        };
        responses.insert(status.to_string(), error_response(description));
    }
    responses
}

/// The statuses of a call that reaches a provider: the provider's own 4xx pass through.
fn provider_errors() -> Map<String, Value> {
    let mut responses = errors(&[400, 401, 404, 429, 500, 502]);
    responses.insert(
        "4XX".into(),
        error_response("The provider's own 4xx answer, passed through (remote)."),
    );
    responses
}

fn list_operation(
    model: &str,
    resource_name: &str,
    resource: &UnifiedResource,
    schema_name: &str,
    tag: &str,
) -> Value {
    let mut parameters: Vec<Value> = ListParameter::ALL
        .into_iter()
        .map(|parameter| list_parameter(parameter, resource))
        .collect();
    parameters.extend(
        resource
            .filters
            .iter()
            .map(|(name, filter)| filter_parameter(name, filter)),
    );
    let record = json!({"$ref": format!("#/components/schemas/{schema_name}")});
    let mut responses = provider_errors();
    responses.insert(
        "200".into(),
        json!({
            "description": "One page of records (or every page with `truto_ignore_limit`).",
            "content": {
                "application/json": {"schema": {
                    "type": "object",
                    "required": ["result", "next_cursor", "result_count"],
                    "properties": {
                        "result": {"anyOf": [
                            {"type": "array", "items": record, "description": "unified and normalized records"},
                            {"type": "array", "items": {"type": "object"}, "description": "`truto_response_format=raw`: the provider's records"},
                            {"type": "object", "additionalProperties": record, "description": "`truto_key_by`"},
                        ]},
                        "next_cursor": {"type": ["string", "null"]},
                        "result_count": {"type": "integer", "minimum": 0},
                        "prev_cursor": {"type": "null"},
                        "is_partial_response": {"type": "boolean", "description": "Present (true) when the integration's list gives a subset of the model's fields: its get gives the rest."},
                    },
                }},
                "application/x-ndjson": {"schema": {
                    "type": "object",
                    "description": "`truto_response_format=stream`: one record per line; a failure mid-stream ends it with a line holding `truto_stream_error`.",
                }},
            },
        }),
    );
    json!({
        "operationId": format!("list_{}_{}", model.replace('-', "_"), resource_name.replace('-', "_")),
        "summary": format!("List {resource_name} of an integrated account"),
        "tags": [tag],
        "security": [{"apiToken": []}],
        "parameters": parameters,
        "responses": responses,
    })
}

fn get_operation(model: &str, resource_name: &str, schema_name: &str, tag: &str) -> Value {
    let mut parameters = vec![json!({
        "name": "id", "in": "path", "required": true, "schema": {"type": "string"},
        "description": "The provider's id of the record.",
    })];
    parameters.extend(GetParameter::ALL.into_iter().map(get_parameter));
    let mut responses = provider_errors();
    responses.insert(
        "200".into(),
        json!({
            "description": "The record.",
            "content": {"application/json": {"schema": {"anyOf": [
                {"$ref": format!("#/components/schemas/{schema_name}")},
                {"type": "object", "description": "`truto_response_format=raw`: the provider's record"},
            ]}}},
        }),
    );
    json!({
        "operationId": format!("get_{}_{}", model.replace('-', "_"), resource_name.replace('-', "_")),
        "summary": format!("Get one of the {resource_name} of an integrated account"),
        "tags": [tag],
        "security": [{"apiToken": []}],
        "parameters": parameters,
        "responses": responses,
    })
}

fn meta_operation(model: &str, resource_name: &str, tag: &str, by_account: bool) -> Value {
    let mut parameters = Vec::new();
    if !by_account {
        parameters.push(json!({
            "name": "integration", "in": "path", "required": true, "schema": {"type": "string"},
            "description": "An integration id.",
        }));
    }
    parameters.push(json!({
        "name": "method", "in": "path", "required": true,
        "schema": {"type": "string", "enum": ["list", "get"]},
    }));
    let mut own = vec![401, 404];
    if by_account {
        parameters.push(query(
            "integrated_account_id",
            true,
            "The account whose integration is described.",
            json!({"type": "string", "minLength": 1}),
        ));
        own.insert(0, 400);
    }
    let mut responses = errors(&own);
    responses.insert(
        "200".into(),
        json!({
            "description": "The filters, sorts and parameters this integration's mapping supports.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Capabilities"}}},
        }),
    );
    let scope = if by_account { "an account's" } else { "an" };
    json!({
        "operationId": format!(
            "meta_{}_{}_{}",
            model.replace('-', "_"),
            resource_name.replace('-', "_"),
            if by_account { "by_account" } else { "by_integration" }
        ),
        "summary": format!("What {scope} integration supports for {resource_name}"),
        "tags": [tag],
        "security": [{"apiToken": []}],
        "parameters": parameters,
        "responses": responses,
    })
}

fn admin_operation(
    id: &str,
    summary: &str,
    success: (u16, Value),
    own: &[u16],
    body: Option<Value>,
) -> Value {
    let mut responses = errors(own);
    responses.insert(
        success.0.to_string(),
        json!({"description": "Done.", "content": {"application/json": {"schema": success.1}}}),
    );
    let mut operation = json!({
        "operationId": id,
        "summary": summary,
        "tags": ["admin"],
        "security": [{"adminToken": []}],
        "responses": responses,
    });
    if let Some(schema) = body {
        operation["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    operation
}

fn admin_paths(paths: &mut Map<String, Value>) {
    let account = json!({"$ref": "#/components/schemas/IntegratedAccount"});
    let id_parameter =
        json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let mapping = json!({"description": "A mapping override: YAML or JSON text, or an object.", "type": ["string", "object", "null"]});
    let create_body = json!({
        "type": "object",
        "required": ["id", "integration"],
        "additionalProperties": false,
        "properties": {
            "id": {"type": "string"},
            "integration": {"type": "string"},
            "context": {"type": "object", "description": "Values the mapping's templates read (credentials)."},
            "base_url": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["active", "needs_reauth"], "description": "Ignored: a new account is active."},
            "last_error": {"type": ["string", "null"], "description": "Ignored."},
            "mapping": mapping,
        },
    });
    let patch_body = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "integration": {"type": "string"},
            "context": {"type": "object", "description": "Merged key by key; `null` removes a key."},
            "base_url": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["active"], "description": "Clears `needs_reauth` (a reconnect). A patch that changes the context, integration, base URL or mapping of a marked account clears it too."},
            "mapping": mapping,
        },
    });
    paths.insert(
        "/admin/integrated-accounts".into(),
        json!({
            "get": admin_operation(
                "list_integrated_accounts",
                "List integrated accounts",
                (200, json!({"type": "object", "required": ["result"], "properties": {"result": {"type": "array", "items": account}}})),
                &[401],
                None,
            ),
            "post": admin_operation(
                "create_integrated_account",
                "Create an integrated account",
                (201, account.clone()),
                &[400, 401, 409, 413],
                Some(create_body),
            ),
        }),
    );
    let mut show = admin_operation(
        "get_integrated_account",
        "Get an integrated account",
        (200, account.clone()),
        &[401, 404],
        None,
    );
    show["parameters"] = id_parameter.clone();
    let mut update = admin_operation(
        "update_integrated_account",
        "Change an integrated account",
        (200, account),
        &[400, 401, 404, 413],
        Some(patch_body),
    );
    update["parameters"] = id_parameter.clone();
    let mut remove = admin_operation(
        "delete_integrated_account",
        "Delete an integrated account",
        (
            200,
            json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}),
        ),
        &[401, 404],
        None,
    );
    remove["parameters"] = id_parameter;
    paths.insert(
        "/admin/integrated-accounts/{id}".into(),
        json!({"get": show, "patch": update, "delete": remove}),
    );
    let mut metrics = errors(&[401]);
    metrics.insert(
        "200".into(),
        json!({"description": "Prometheus / OpenMetrics text.", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {
            "operationId": "metrics",
            "summary": "Counters and histograms of requests, provider calls, retries, waits, tokens and mapping",
            "tags": ["operations"],
            "security": [{"adminToken": []}],
            "responses": metrics,
        }}),
    );
}

fn open_paths(paths: &mut Map<String, Value>) {
    let mut health = errors(&[]);
    health.insert(
        "200".into(),
        json!({"description": "Serving; `mappings` is the loaded mapping set's SHA-256.", "content": {"application/json": {"schema": {
            "type": "object", "required": ["status", "mappings"],
            "properties": {"status": {"const": "ok"}, "mappings": {"type": "string"}},
        }}}}),
    );
    paths.insert(
        "/health".into(),
        json!({"get": {"operationId": "health", "summary": "Liveness", "tags": ["operations"], "security": [], "responses": health}}),
    );
    let mut ready = errors(&[]);
    ready.insert(
        "200".into(),
        json!({"description": "The account store answers.", "content": {"application/json": {"schema": {
            "type": "object", "required": ["status"], "properties": {"status": {"const": "ready"}},
        }}}}),
    );
    paths.insert(
        "/ready".into(),
        json!({"get": {"operationId": "ready", "summary": "Readiness (503 while the account store is unreachable)", "tags": ["operations"], "security": [], "responses": ready}}),
    );
    let mut openapi = errors(&[]);
    openapi.insert(
        "200".into(),
        json!({"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"operationId": "openapi", "summary": "This OpenAPI document", "tags": ["operations"], "security": [], "responses": openapi}}),
    );
}
