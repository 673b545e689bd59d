//! Sorting in the gateway, for a `sort_by` the integration cannot push down, once every page is
//! fetched. Keys: text ignoring case, datetimes as instants, numbers as numbers; for arrays
//! (`emails`, `roles`, `groups`) the primary (else first) item's email, name or id. Records
//! without the key come last in either direction; ties keep the provider's order.

use std::cmp::Ordering;

use serde_json::Value;
use unigate_unified::time::parse_json_timestamp;

#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Number(f64),
    Text(String),
}

fn key(record: &Value, field: &str) -> Option<Key> {
    let value = record.get(field)?;
    let value = match value {
        Value::Array(items) => {
            let item = items
                .iter()
                .find(|item| item.get("is_primary") == Some(&Value::Bool(true)))
                .or_else(|| items.first())?;
            match item {
                Value::Object(object) => ["email", "name", "id"]
                    .iter()
                    .find_map(|k| object.get(*k))?,
                scalar => scalar,
            }
        }
        other => other,
    };
    match value {
        Value::Number(number) => number.as_f64().map(Key::Number),
        Value::Bool(flag) => Some(Key::Number(f64::from(u8::from(*flag)))),
        Value::String(text) => match parse_json_timestamp(value) {
            Some(millis) if field.ends_with("_at") => Some(Key::Number(millis as f64)),
            _ => Some(Key::Text(text.to_lowercase())),
        },
        _ => None,
    }
}

/// Sorts records (unified records, `remote_data` and all) by `field`.
pub(crate) fn sort_records(records: &mut [Value], field: &str, descending: bool) {
    let mut keyed: Vec<(Option<Key>, usize)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (key(r, field), i))
        .collect();
    keyed.sort_by(|(a, ia), (b, ib)| {
        let order = match (a, b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => {
                let natural = a.partial_cmp(b).unwrap_or(Ordering::Equal);
                if descending {
                    natural.reverse()
                } else {
                    natural
                }
            }
        };
        order.then(ia.cmp(ib))
    });
    let order: Vec<usize> = keyed.into_iter().map(|(_, index)| index).collect();
    let mut taken: Vec<Option<Value>> = records
        .iter_mut()
        .map(|r| Some(std::mem::take(r)))
        .collect();
    for (slot, index) in records.iter_mut().zip(order) {
        *slot = taken[index].take().unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(records: &[Value]) -> Vec<&str> {
        records.iter().map(|r| r["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn sorts_text_dates_and_arrays_with_missing_last() {
        let mut records = vec![
            json!({"id": "1", "name": "bob", "created_at": "2024-01-02T00:00:00Z", "emails": [{"email": "z@x"}, {"email": "a@x", "is_primary": true}]}),
            json!({"id": "2", "name": "Alice", "created_at": "2024-01-01T23:00:00-02:00"}),
            json!({"id": "3", "created_at": "2023-12-31", "emails": [{"email": "m@x"}]}),
        ];
        sort_records(&mut records, "name", false);
        assert_eq!(ids(&records), vec!["2", "1", "3"]);
        sort_records(&mut records, "name", true);
        assert_eq!(ids(&records), vec!["1", "2", "3"]);
        // "2024-01-01T23:00:00-02:00" is 01:00 UTC on the 2nd, after record 1's midnight.
        sort_records(&mut records, "created_at", false);
        assert_eq!(ids(&records), vec!["3", "1", "2"]);
        sort_records(&mut records, "emails", false);
        assert_eq!(ids(&records), vec!["1", "3", "2"]);
    }
}
