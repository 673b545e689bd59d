//! `truto_response_format=normalized`: a mapped record checked against the unified model. Only the
//! model's fields (recursively), no `remote_data`, datetimes as RFC 3339 UTC, booleans and strings
//! coerced from their common spellings, enum values matched ignoring case (a value outside the
//! enum keeps its raw form, as the spec says for `status`). A value that cannot take its field's
//! type is dropped rather than passed off as that type.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use unigate_unified::FieldType;
use unigate_unified::model::FieldSpec;
use unigate_unified::time::{format_rfc3339, parse_json_timestamp};

pub(crate) fn normalize_record(
    record: &Map<String, Value>,
    fields: &BTreeMap<String, FieldSpec>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in record {
        if let Some(spec) = fields.get(name)
            && let Some(normalized) = normalize_value(value, spec)
        {
            out.insert(name.clone(), normalized);
        }
    }
    out
}

fn normalize_value(value: &Value, spec: &FieldSpec) -> Option<Value> {
    if value.is_null() {
        return Some(Value::Null);
    }
    match spec.field_type {
        FieldType::String => {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                _ => return None,
            };
            if spec.allowed.is_empty() {
                return Some(Value::String(text));
            }
            let canonical = spec
                .allowed
                .iter()
                .find(|allowed| allowed.eq_ignore_ascii_case(text.trim()));
            Some(Value::String(canonical.cloned().unwrap_or(text)))
        }
        FieldType::Boolean => match value {
            Value::Bool(flag) => Some(Value::Bool(*flag)),
            Value::String(text) => match text.to_ascii_lowercase().as_str() {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            _ => None,
        },
        FieldType::Number => match value {
            Value::Number(_) => Some(value.clone()),
            Value::String(text) => text
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
            _ => None,
        },
        FieldType::Datetime => {
            parse_json_timestamp(value).map(|millis| Value::String(format_rfc3339(millis)))
        }
        FieldType::Object => match value {
            Value::Object(object) if spec.fields.is_empty() => Some(Value::Object(object.clone())),
            Value::Object(object) => Some(Value::Object(normalize_record(object, &spec.fields))),
            _ => None,
        },
        FieldType::Array => {
            let items: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                single => vec![single],
            };
            let Some(item_spec) = &spec.items else {
                return Some(Value::Array(items.into_iter().cloned().collect()));
            };
            Some(Value::Array(
                items
                    .into_iter()
                    .filter_map(|item| normalize_value(item, item_spec))
                    .collect(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(field_type: FieldType) -> FieldSpec {
        FieldSpec {
            field_type,
            description: None,
            required: false,
            allowed: vec![],
            items: None,
            fields: BTreeMap::new(),
        }
    }

    #[test]
    fn keeps_schema_fields_in_schema_types() {
        let mut status = field(FieldType::String);
        status.allowed = vec!["active".into(), "inactive".into()];
        let mut email = field(FieldType::Object);
        email.fields = BTreeMap::from([
            ("email".to_owned(), field(FieldType::String)),
            ("is_primary".to_owned(), field(FieldType::Boolean)),
        ]);
        let mut emails = field(FieldType::Array);
        emails.items = Some(Box::new(email));
        let fields = BTreeMap::from([
            ("id".to_owned(), field(FieldType::String)),
            ("status".to_owned(), status),
            ("created_at".to_owned(), field(FieldType::Datetime)),
            ("is_2fa_enabled".to_owned(), field(FieldType::Boolean)),
            ("emails".to_owned(), emails),
        ]);
        let record = json!({
            "id": 42, "status": "ACTIVE", "created_at": "2024-01-01T12:00:00+02:00", "is_2fa_enabled": "TRUE",
            "emails": [{"email": "a@x", "is_primary": "false", "type_hint": "x"}], "remote_data": {"a": 1}, "extra": 1
        });
        assert_eq!(
            Value::Object(normalize_record(record.as_object().unwrap(), &fields)),
            json!({"id": "42", "status": "active", "created_at": "2024-01-01T10:00:00Z", "is_2fa_enabled": true,
                   "emails": [{"email": "a@x", "is_primary": false}]})
        );
        let odd = json!({"status": "LOCKED", "created_at": "soon", "is_2fa_enabled": "maybe"});
        assert_eq!(
            Value::Object(normalize_record(odd.as_object().unwrap(), &fields)),
            json!({"status": "LOCKED"})
        );
    }
}
