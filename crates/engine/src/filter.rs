//! Filters applied in the gateway, on mapped records, for every filter the integration does not
//! push down natively. The rules (written down in the README):
//! - a filter looks at the record paths its model declares (`emails.email`), arrays traversed;
//!   it matches when any value found there matches;
//! - text compares ignoring case unless the model marks the filter `case_sensitive`;
//! - datetimes compare as instants (ISO 8601 with any offset, or epoch seconds/millis), with
//!   `eq`, `gt`, `gte`, `lt`, `lte`;
//! - `in` matches any listed value; `ne` matches when no value found equals it (also when the
//!   record lacks the field); every other operator needs the field present.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use unigate_unified::FieldType;
use unigate_unified::model::FilterSpec;
use unigate_unified::time::{parse_iso8601, parse_json_timestamp};

/// One filter the gateway applies.
#[derive(Debug, Clone)]
pub(crate) struct GatewayFilter {
    pub spec: FilterSpec,
    /// `(operator, operand)` pairs, all of which must hold.
    pub conditions: Vec<(String, Value)>,
}

impl GatewayFilter {
    /// From a checked filter value: a plain value is `eq`, an object holds operators.
    pub fn new(spec: &FilterSpec, value: &Value) -> Self {
        let conditions = match value {
            Value::Object(operators) => operators
                .iter()
                .map(|(operator, operand)| (operator.clone(), operand.clone()))
                .collect(),
            plain => vec![("eq".to_owned(), plain.clone())],
        };
        GatewayFilter {
            spec: spec.clone(),
            conditions,
        }
    }

    pub fn matches(&self, record: &Map<String, Value>) -> bool {
        let mut found = Vec::new();
        for path in &self.spec.fields {
            let segments: Vec<&str> = path.split('.').collect();
            collect(record.get(segments[0]), &segments[1..], &mut found);
        }
        self.conditions.iter().all(|(operator, operand)| {
            let equal_to = |wanted: &Value| {
                found
                    .iter()
                    .any(|value| self.compare(value, wanted) == Some(Ordering::Equal))
            };
            match operator.as_str() {
                "eq" => equal_to(operand),
                "ne" => !equal_to(operand),
                "in" => operand
                    .as_array()
                    .is_some_and(|items| items.iter().any(equal_to)),
                "gt" | "gte" | "lt" | "lte" => found.iter().any(|value| {
                    matches!(
                        (operator.as_str(), self.compare(value, operand)),
                        ("gt", Some(Ordering::Greater))
                            | ("gte", Some(Ordering::Greater | Ordering::Equal))
                            | ("lt", Some(Ordering::Less))
                            | ("lte", Some(Ordering::Less | Ordering::Equal))
                    )
                }),
                _ => false,
            }
        })
    }

    /// Orders a record's value against the caller's operand; `None` when they do not compare.
    fn compare(&self, value: &Value, operand: &Value) -> Option<Ordering> {
        match self.spec.filter_type {
            FieldType::Datetime => {
                let left = parse_json_timestamp(value)?;
                let right = operand.as_str().and_then(parse_iso8601)?;
                Some(left.cmp(&right))
            }
            FieldType::Boolean => {
                let left = match value {
                    Value::Bool(flag) => *flag,
                    Value::String(text) => text.parse().ok()?,
                    _ => return None,
                };
                (Some(left) == operand.as_bool()).then_some(Ordering::Equal)
            }
            _ => {
                let left = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => return None,
                };
                let right = operand.as_str()?;
                Some(if self.spec.case_sensitive {
                    left.as_str().cmp(right)
                } else {
                    left.to_lowercase().cmp(&right.to_lowercase())
                })
            }
        }
    }
}

/// Every scalar at `path` under `value`, traversing arrays.
fn collect<'a>(value: Option<&'a Value>, path: &[&str], out: &mut Vec<&'a Value>) {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => items.iter().for_each(|item| collect(Some(item), path, out)),
        Some(Value::Object(object)) => {
            if let Some((first, rest)) = path.split_first() {
                collect(object.get(*first), rest, out);
            }
        }
        Some(scalar) => {
            if path.is_empty() {
                out.push(scalar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(filter_type: FieldType, fields: &[&str], case_sensitive: bool) -> FilterSpec {
        FilterSpec {
            filter_type,
            description: None,
            allowed: vec![],
            operators: vec![],
            fields: fields.iter().map(|f| f.to_string()).collect(),
            case_sensitive,
        }
    }

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn text_filters_ignore_case_and_traverse_arrays() {
        let email = GatewayFilter::new(
            &spec(FieldType::String, &["emails.email"], false),
            &json!("ADA@x.test"),
        );
        assert!(email.matches(&record(
            json!({"emails": [{"email": "b@x.test"}, {"email": "ada@X.test"}]})
        )));
        assert!(!email.matches(&record(json!({"emails": [{"email": "b@x.test"}]}))));
        assert!(!email.matches(&record(json!({}))));
        let id = GatewayFilter::new(
            &spec(FieldType::String, &["roles.id"], true),
            &json!("Admin"),
        );
        assert!(!id.matches(&record(json!({"roles": [{"id": "admin"}]}))));
        assert!(id.matches(&record(json!({"roles": [{"id": "Admin"}]}))));
    }

    #[test]
    fn operators_on_enums_and_datetimes() {
        let status = spec(FieldType::String, &["status"], false);
        let active = record(json!({"status": "active"}));
        assert!(
            GatewayFilter::new(&status, &json!({"in": ["invited", "active"]})).matches(&active)
        );
        assert!(!GatewayFilter::new(&status, &json!({"in": ["invited"]})).matches(&active));
        assert!(GatewayFilter::new(&status, &json!({"ne": "invited"})).matches(&active));
        assert!(GatewayFilter::new(&status, &json!({"ne": "invited"})).matches(&record(json!({}))));

        let created = spec(FieldType::Datetime, &["created_at"], false);
        let user = record(json!({"created_at": "2024-01-01T12:00:00+02:00"}));
        let check = |operators: Value| GatewayFilter::new(&created, &operators).matches(&user);
        assert!(check(json!({"gt": "2024-01-01T09:59:59Z"})));
        assert!(!check(json!({"gt": "2024-01-01T10:00:00Z"})));
        assert!(check(
            json!({"gte": "2024-01-01T10:00:00Z", "lt": "2024-01-02"})
        ));
        assert!(check(json!({"eq": "2024-01-01T10:00:00.000Z"})));
        assert!(check(json!("2024-01-01T10:00:00Z")));
        assert!(!check(json!({"lte": "2023-12-31"})));
        assert!(
            !GatewayFilter::new(&created, &json!({"gt": "2000-01-01"}))
                .matches(&record(json!({"created_at": "garbage"})))
        );
    }
}
