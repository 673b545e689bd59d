//! Truto-style extension functions for mappings (`research/truto-semantics.md` §3), bound as host
//! functions. Semantics follow `@truto/truto-jsonata` 3.0.6 where the user-directory mappings
//! need them; each is tested below against that behaviour.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use jlens_core::{Bindings, HostFunction};
use serde_json::{Map, Value};

fn arg(args: &[Option<Value>], index: usize) -> Option<&Value> {
    args.get(index).and_then(Option::as_ref)
}

fn as_array(value: Option<&Value>) -> Vec<Value> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
    }
}

fn is_empty_item(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_f64() == Some(0.0),
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(object) => object.is_empty(),
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

/// `$mapValues(value, mapping, lowerCase, default)`: case-insensitive lookup, recursive into
/// arrays and objects; unmapped values stay as they are unless a default is given.
fn map_values(value: &Value, mapping: &Map<String, Value>, fallback: Option<&Value>) -> Value {
    match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| map_values(item, mapping, fallback))
                .collect(),
        ),
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, item)| (key.clone(), map_values(item, mapping, fallback)))
                .collect(),
        ),
        scalar => {
            let Some(text) = key_text(scalar) else {
                return scalar.clone();
            };
            let found = mapping.get(&text).or_else(|| {
                mapping
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(&text))
                    .map(|(_, mapped)| mapped)
            });
            match (found, fallback) {
                (Some(mapped), _) => mapped.clone(),
                (None, Some(fallback)) if !fallback.is_null() => fallback.clone(),
                (None, _) => scalar.clone(),
            }
        }
    }
}

fn group(items: Vec<Value>, key: &str, keep_all: bool) -> Value {
    let mut out = Map::new();
    for item in items {
        let Some(group_key) = item.get(key).and_then(key_text) else {
            continue;
        };
        if keep_all {
            match out
                .entry(group_key)
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(members) => members.push(item),
                _ => unreachable!("groups are arrays"),
            }
        } else {
            out.insert(group_key, item);
        }
    }
    Value::Object(out)
}

fn key_list(value: Option<&Value>) -> Vec<String> {
    as_array(value).iter().filter_map(key_text).collect()
}

/// `$pick(obj, keys)` (`keep`) and `$omit(obj, keys)`: the object's entries whose key is, or is
/// not, among `keys`.
fn select_keys(args: &[Option<Value>], keep: bool) -> Value {
    let Some(Value::Object(object)) = arg(args, 0) else {
        return Value::Object(Map::new());
    };
    let keys = key_list(arg(args, 1));
    Value::Object(
        object
            .iter()
            .filter(|(key, _)| keys.contains(key) == keep)
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect(),
    )
}

/// The library, bound once and cloned (cheaply: the functions are shared) per evaluation scope.
pub fn library() -> Bindings {
    Bindings::new()
        .function(
            "firstNonEmpty",
            HostFunction::new(1, |args, _| {
                Ok(args
                    .iter()
                    .flatten()
                    .find(|value| !value.is_null())
                    .cloned())
            }),
        )
        .function(
            "removeEmpty",
            HostFunction::new(1, |args, _| {
                Ok(match arg(args, 0) {
                    Some(Value::Array(items)) if !items.is_empty() => {
                        Some(Value::Array(items.clone()))
                    }
                    Some(Value::Object(object)) if !object.is_empty() => {
                        Some(Value::Object(object.clone()))
                    }
                    _ => None,
                })
            }),
        )
        .function(
            "removeEmptyItems",
            HostFunction::new(1, |args, _| {
                Ok(Some(Value::Array(
                    as_array(arg(args, 0))
                        .into_iter()
                        .filter(|item| !is_empty_item(item))
                        .collect(),
                )))
            }),
        )
        .function(
            "compact",
            HostFunction::new(1, |args, _| {
                Ok(Some(Value::Array(
                    as_array(arg(args, 0))
                        .into_iter()
                        // lodash `compact`: JavaScript's falsy values go; `[]` and `{}` stay.
                        .filter(|item| {
                            matches!(item, Value::Array(_) | Value::Object(_))
                                || !is_empty_item(item)
                        })
                        .collect(),
                )))
            }),
        )
        .function(
            "mapValues",
            HostFunction::new(4, |args, _| {
                let Some(value) = arg(args, 0) else {
                    return Ok(None);
                };
                let mapping = match arg(args, 1) {
                    Some(Value::Object(mapping)) => mapping.clone(),
                    _ => Map::new(),
                };
                Ok(Some(map_values(value, &mapping, arg(args, 3))))
            }),
        )
        .function(
            "keyBy",
            HostFunction::new(2, |args, _| {
                let key = arg(args, 1).and_then(key_text).unwrap_or_default();
                Ok(Some(group(as_array(arg(args, 0)), &key, false)))
            }),
        )
        .function(
            "groupBy",
            HostFunction::new(2, |args, _| {
                let key = arg(args, 1).and_then(key_text).unwrap_or_default();
                Ok(Some(group(as_array(arg(args, 0)), &key, true)))
            }),
        )
        .function(
            "pick",
            HostFunction::new(2, |args, _| Ok(Some(select_keys(args, true)))),
        )
        .function(
            "omit",
            HostFunction::new(2, |args, _| Ok(Some(select_keys(args, false)))),
        )
        .function(
            "jsonParse",
            HostFunction::new(1, |args, _| {
                Ok(Some(match arg(args, 0) {
                    Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
                    _ => Value::Null,
                }))
            }),
        )
        .function(
            "toNumber",
            HostFunction::new(1, |args, _| {
                Ok(Some(match arg(args, 0) {
                    Some(Value::Number(number)) => Value::Number(number.clone()),
                    Some(Value::Bool(flag)) => Value::from(u8::from(*flag)),
                    Some(Value::String(text)) => match text.trim() {
                        "" => Value::from(0),
                        trimmed => trimmed
                            .parse::<i64>()
                            .map(Value::from)
                            .or_else(|_| trimmed.parse::<f64>().map(Value::from))
                            .unwrap_or(Value::Null),
                    },
                    _ => Value::Null,
                }))
            }),
        )
        .function(
            "base64encode",
            HostFunction::new(2, |args, _| {
                let Some(text) = arg(args, 0).and_then(Value::as_str) else {
                    return Ok(None);
                };
                let url_safe = matches!(arg(args, 1), Some(Value::Bool(true)));
                let engine = if url_safe { &URL_SAFE } else { &STANDARD };
                Ok(Some(Value::String(engine.encode(text))))
            }),
        )
        .function(
            "base64decode",
            HostFunction::new(2, |args, _| {
                let Some(text) = arg(args, 0).and_then(Value::as_str) else {
                    return Ok(None);
                };
                let url_safe = matches!(arg(args, 1), Some(Value::Bool(true)));
                let engine = if url_safe { &URL_SAFE } else { &STANDARD };
                Ok(engine
                    .decode(text)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .map(Value::String))
            }),
        )
}

#[cfg(test)]
mod tests {
    use crate::expression::{Expression, Scope};
    use serde_json::{Value, json};

    fn eval(source: &str, input: Value) -> Option<Value> {
        Expression::compile(source)
            .unwrap()
            .evaluate(&input, &Scope::new([]))
            .unwrap()
    }

    #[test]
    fn truto_functions_behave_like_truto_jsonata() {
        assert_eq!(
            eval("$firstNonEmpty(a, b, c)", json!({"b": null, "c": ""})),
            Some(json!(""))
        );
        assert_eq!(eval("$firstNonEmpty(a, b)", json!({})), None);
        assert_eq!(eval("$removeEmpty([])", json!({})), None);
        assert_eq!(eval("$removeEmpty(x)", json!({"x": [1]})), Some(json!([1])));
        assert_eq!(
            eval(
                "$removeEmptyItems([{}, [], 0, '', null, 'a', {'b': 1}])",
                json!({})
            ),
            Some(json!(["a", {"b": 1}]))
        );
        assert_eq!(
            eval(
                "$mapValues(s, {'ACTIVE': 'active'})",
                json!({"s": ["active", "GONE"]})
            ),
            Some(json!(["active", "GONE"]))
        );
        assert_eq!(
            eval("$mapValues('x', {'a': 1}, false, 'other')", json!({})),
            Some(json!("other"))
        );
        assert_eq!(
            eval(
                "$keyBy(u, 'id')",
                json!({"u": [{"id": "a", "n": 1}, {"id": "b"}]})
            ),
            Some(json!({"a": {"id": "a", "n": 1}, "b": {"id": "b"}}))
        );
        assert_eq!(
            eval(
                "$groupBy(u, 't')",
                json!({"u": [{"t": 1}, {"t": 1}, {"t": 2}]})
            ),
            Some(json!({"1": [{"t": 1}, {"t": 1}], "2": [{"t": 2}]}))
        );
        assert_eq!(
            eval("$pick($, ['a'])", json!({"a": 1, "b": 2})),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            eval("$omit($, 'a')", json!({"a": 1, "b": 2})),
            Some(json!({"b": 2}))
        );
        assert_eq!(
            eval("$jsonParse('{\"a\":1}')", json!({})),
            Some(json!({"a": 1}))
        );
        assert_eq!(eval("$jsonParse('nope')", json!({})), Some(json!(null)));
        assert_eq!(
            eval(
                "[$toNumber('42'), $toNumber('4.5'), $toNumber('x')]",
                json!({})
            ),
            Some(json!([42, 4.5, null]))
        );
        assert_eq!(
            eval("$base64encode('user:pw')", json!({})),
            Some(json!("dXNlcjpwdw=="))
        );
        assert_eq!(
            eval("$base64decode('dXNlcjpwdw==')", json!({})),
            Some(json!("user:pw"))
        );
        assert_eq!(
            eval("$compact([0, 1, false, '', null, 'a'])", json!({})),
            Some(json!([1, "a"]))
        );
    }
}
