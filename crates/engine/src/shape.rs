//! Shaping mapped records for the caller: `truto_exclude_fields` and `truto_key_by`.

use serde_json::{Map, Value};
use unigate_unified::{ApiError, ListQuery};

/// Removes a dotted path (`emails.type` removes `type` from every item of `emails`).
fn remove_path(value: &mut Value, path: &[&str]) {
    match value {
        Value::Object(object) => match path {
            [] => {}
            // `shift_remove`: the record keeps its keys' order (`remove` would move the
            // last key into the removed one's place).
            [last] => {
                object.shift_remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(inner) = object.get_mut(*first) {
                    remove_path(inner, rest);
                }
            }
        },
        Value::Array(items) => items.iter_mut().for_each(|item| remove_path(item, path)),
        _ => {}
    }
}

fn key_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// Removes every field of `truto_exclude_fields` (top-level or dotted) from one record.
pub(crate) fn exclude_fields(record: &mut Value, fields: &[String]) {
    for field in fields {
        let path: Vec<&str> = field.split('.').collect();
        remove_path(record, &path);
    }
}

pub(crate) fn shape_result(mut records: Vec<Value>, query: &ListQuery) -> Result<Value, ApiError> {
    records
        .iter_mut()
        .for_each(|record| exclude_fields(record, &query.exclude_fields));
    let Some(key_field) = &query.key_by else {
        return Ok(Value::Array(records));
    };
    let mut keyed = Map::new();
    for record in records {
        let key = record.get(key_field).and_then(key_text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`truto_key_by={key_field}`: a record has no usable `{key_field}` ({})",
                record
                    .get("id")
                    .and_then(key_text)
                    .map_or("no id".to_owned(), |id| format!("id `{id}`"))
            ))
        })?;
        if keyed.contains_key(&key) {
            return Err(ApiError::bad_request(format!(
                "`truto_key_by={key_field}`: two records share the value `{key}`"
            )));
        }
        keyed.insert(key, record);
    }
    Ok(Value::Object(keyed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(exclude: &[&str], key_by: Option<&str>) -> ListQuery {
        ListQuery {
            exclude_fields: exclude.iter().map(|s| s.to_string()).collect(),
            key_by: key_by.map(str::to_owned),
            ..ListQuery::default()
        }
    }

    #[test]
    fn excludes_top_level_and_dotted_fields() {
        let records =
            vec![json!({"id": "1", "name": "a", "emails": [{"email": "x", "type": "work"}]})];
        assert_eq!(
            shape_result(records, &query(&["name", "emails.type"], None)).unwrap(),
            json!([{"id": "1", "emails": [{"email": "x"}]}])
        );
    }

    #[test]
    fn excluding_a_field_keeps_the_order_of_the_others() {
        let records = vec![json!({"id": "1", "name": "a", "title": "b", "created_at": "c"})];
        let shaped = shape_result(records, &query(&["id"], None)).unwrap();
        assert_eq!(
            shaped.to_string(),
            r#"[{"name":"a","title":"b","created_at":"c"}]"#
        );
    }

    #[test]
    fn keys_by_a_field_and_refuses_missing_or_duplicate_keys() {
        let records = vec![json!({"id": "1"}), json!({"id": "2"})];
        assert_eq!(
            shape_result(records, &query(&[], Some("id"))).unwrap(),
            json!({"1": {"id": "1"}, "2": {"id": "2"}})
        );
        let duplicate = vec![json!({"id": "1", "k": "a"}), json!({"id": "2", "k": "a"})];
        assert_eq!(
            shape_result(duplicate, &query(&[], Some("k")))
                .unwrap_err()
                .message,
            "`truto_key_by=k`: two records share the value `a`"
        );
        let missing = vec![json!({"id": "1"})];
        assert_eq!(
            shape_result(missing, &query(&[], Some("k")))
                .unwrap_err()
                .message,
            "`truto_key_by=k`: a record has no usable `k` (id `1`)"
        );
    }
}
