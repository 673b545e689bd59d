//! Property tests for the qs-style query parser: it never panics, what an SDK encodes parses back
//! to the JSON it meant, and the limits always answer with an error.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value};
use unigate_unified::qs::{MAX_DEPTH, MAX_INDEX, MAX_PARAMS, parse};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// Pieces that make query strings interesting: separators, brackets (raw and encoded), percent
/// escapes (valid, truncated, invalid UTF-8), `+`, digits and plain letters.
fn query_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "&", "=", "[", "]", "[]", "%", "+", "%5B", "%5D", "%5b", "%26", "%3D", "%2", "%FF",
            "%C3%A9", "%C3", "%00", "%%", "==", "&&", "[[", "]]", "[0]", "[100]", "[101]",
            "[9999]", "[00001]",
        ])
        .prop_map(str::to_owned),
        3 => "[a-c0-9]{1,3}",
        1 => any::<char>().prop_map(String::from),
    ]
}

fn bracket_heavy() -> impl Strategy<Value = String> {
    prop::collection::vec(query_piece(), 0..48).prop_map(|pieces| pieces.concat())
}

/// Counts the string leaves of a parsed value: every pair of the query becomes exactly one.
fn leaves(value: &Value) -> usize {
    match value {
        Value::String(_) => 1,
        Value::Array(items) => items.iter().map(leaves).sum(),
        Value::Object(map) => map.values().map(leaves).sum(),
        other => panic!("qs::parse produced a non-string leaf: {other}"),
    }
}

fn pairs(raw: &str) -> usize {
    raw.split('&').filter(|pair| !pair.is_empty()).count()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn never_panics_on_arbitrary_strings(raw in any::<String>()) {
        if let Err(message) = parse(&raw) {
            prop_assert!(!message.is_empty());
        }
    }

    #[test]
    fn never_panics_on_bracket_heavy_strings(raw in bracket_heavy()) {
        match parse(&raw) {
            // Each value lands in the result once: nothing is duplicated or blown up.
            Ok(object) => prop_assert!(leaves(&Value::Object(object)) <= pairs(&raw)),
            Err(message) => prop_assert!(!message.is_empty()),
        }
    }
}

/// Queries over a tiny alphabet of keys, so that the same key comes back with `[]`, `[0]`, names
/// and nothing.
fn colliding_query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "a", "a[]", "a[x]", "a[y]", "a[0]", "a[1]", "a[x][]", "a[][x]", "a[0][x]", "b",
    ]);
    prop::collection::vec((key, "[0-9]"), 1..8).prop_map(|pairs| {
        pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

proptest! {
    #![proptest_config(config())]

    /// Every pair of an accepted query shows up in the result: a value is kept or the query is
    /// refused, never silently dropped.
    /// (It found `a[]=0&a[x]=0&a[]=0` losing a value; such queries are now refused.)
    #[test]
    fn no_value_is_dropped(raw in colliding_query()) {
        if let Ok(object) = parse(&raw) {
            prop_assert_eq!(leaves(&Value::Object(object)), pairs(&raw), "query: {}", raw);
        }
    }
}

/// What one top-level key carries in a generated query.
#[derive(Debug, Clone)]
enum Param {
    /// `k=v`
    Scalar(String),
    /// `k[a]=x&k[b]=y`, distinct sub-keys.
    Nested(Vec<(String, String)>),
    /// `k[]=x&k[]=y`
    Pushed(Vec<String>),
    /// `k[1]=y&k[0]=x`, indexes 0..n in any order.
    Indexed(Vec<String>, Vec<usize>),
}

fn value_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z0-9]{0,6}", any::<String>(), "[ +&=%\\[\\]#?/]{0,6}",]
}

fn key_text() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,8}"
}

fn param() -> impl Strategy<Value = Param> {
    prop_oneof![
        value_text().prop_map(Param::Scalar),
        prop::collection::btree_map(key_text(), value_text(), 1..5)
            .prop_map(|map| Param::Nested(map.into_iter().collect())),
        prop::collection::vec(value_text(), 1..5).prop_map(Param::Pushed),
        prop::collection::vec(value_text(), 1..5)
            .prop_flat_map(|values| {
                let order: Vec<usize> = (0..values.len()).collect();
                (Just(values), Just(order).prop_shuffle())
            })
            .prop_map(|(values, order)| Param::Indexed(values, order)),
    ]
}

/// Encodes like the SDKs do: everything but letters and digits percent-encoded, spaces
/// optionally as `+`, brackets optionally left raw.
fn encode(text: &str, plus_for_space: bool) -> String {
    let encoded = utf8_percent_encode(text, NON_ALPHANUMERIC).to_string();
    if plus_for_space {
        encoded.replace("%20", "+")
    } else {
        encoded
    }
}

fn key_with(key: &str, inner: &str, raw_brackets: bool) -> String {
    if raw_brackets {
        format!("{key}[{inner}]")
    } else {
        format!("{key}%5B{inner}%5D")
    }
}

fn build(
    params: &[(String, Param)],
    plus_for_space: bool,
    raw_brackets: bool,
) -> (String, Map<String, Value>) {
    let mut query = Vec::new();
    let mut expected = Map::new();
    for (key, param) in params {
        let string = |text: &String| Value::String(text.clone());
        match param {
            Param::Scalar(value) => {
                query.push(format!("{key}={}", encode(value, plus_for_space)));
                expected.insert(key.clone(), string(value));
            }
            Param::Nested(entries) => {
                for (inner, value) in entries {
                    let name = key_with(key, inner, raw_brackets);
                    query.push(format!("{name}={}", encode(value, plus_for_space)));
                }
                let object = entries
                    .iter()
                    .map(|(k, v)| (k.clone(), string(v)))
                    .collect();
                expected.insert(key.clone(), Value::Object(object));
            }
            Param::Pushed(values) => {
                let name = key_with(key, "", raw_brackets);
                for value in values {
                    query.push(format!("{name}={}", encode(value, plus_for_space)));
                }
                expected.insert(
                    key.clone(),
                    Value::Array(values.iter().map(string).collect()),
                );
            }
            Param::Indexed(values, order) => {
                for index in order {
                    let name = key_with(key, &index.to_string(), raw_brackets);
                    query.push(format!(
                        "{name}={}",
                        encode(&values[*index], plus_for_space)
                    ));
                }
                expected.insert(
                    key.clone(),
                    Value::Array(values.iter().map(string).collect()),
                );
            }
        }
    }
    (query.join("&"), expected)
}

fn depth_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z]{1,4}",
        (0..=MAX_INDEX + 50).prop_map(|index| index.to_string()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encoded_params_round_trip(
        params in prop::collection::btree_map(key_text(), param(), 0..6),
        plus_for_space in any::<bool>(),
        raw_brackets in any::<bool>(),
    ) {
        let params: Vec<(String, Param)> = params.into_iter().collect();
        let (query, expected) = build(&params, plus_for_space, raw_brackets);
        let parsed = parse(&query).map_err(|error| TestCaseError::fail(format!("{query}: {error}")))?;
        prop_assert_eq!(Value::Object(parsed), Value::Object(expected), "query: {}", query);
    }

    #[test]
    fn too_many_params_is_an_error(
        extra in 1..200usize,
        keys in prop::collection::vec(key_text(), 1..8),
        empties in prop::collection::vec(any::<Index>(), 0..20),
    ) {
        let mut query: Vec<String> = (0..MAX_PARAMS + extra)
            .map(|i| format!("{}={i}", keys[i % keys.len()]))
            .collect();
        // Empty pairs (`&&`) do not count, wherever they stand.
        for at in empties {
            let position = at.index(query.len() + 1);
            query.insert(position, String::new());
        }
        let error = parse(&query.join("&")).expect_err("more than MAX_PARAMS pairs");
        prop_assert!(error.contains("too many"), "{}", error);
    }

    #[test]
    fn exactly_max_params_is_fine(keys in prop::collection::vec(key_text(), 1..8)) {
        let query: Vec<String> = (0..MAX_PARAMS)
            .map(|i| format!("{}={i}", keys[i % keys.len()]))
            .collect();
        let parsed = parse(&query.join("&")).map_err(TestCaseError::fail)?;
        prop_assert_eq!(leaves(&Value::Object(parsed)), MAX_PARAMS);
    }

    #[test]
    fn too_deep_keys_are_an_error(
        key in key_text(),
        segments in prop::collection::vec(depth_segment(), MAX_DEPTH + 1..MAX_DEPTH + 64),
        prefix in prop::collection::vec("[a-z]=[a-z]", 0..4),
    ) {
        let mut name = key.clone();
        for segment in &segments {
            name.push_str(&format!("[{segment}]"));
        }
        let mut pairs = prefix;
        pairs.push(format!("{name}=x"));
        let error = parse(&pairs.join("&")).expect_err("deeper than MAX_DEPTH");
        prop_assert!(!error.is_empty());
    }

    #[test]
    fn keys_within_the_depth_limit_parse(
        key in key_text(),
        segments in prop::collection::vec(depth_segment(), 0..=MAX_DEPTH),
    ) {
        let mut name = key.clone();
        for segment in &segments {
            name.push_str(&format!("[{segment}]"));
        }
        let parsed = parse(&format!("{name}=x")).map_err(TestCaseError::fail)?;
        prop_assert_eq!(leaves(&Value::Object(parsed)), 1);
    }

    #[test]
    fn large_indexes_stay_object_keys(key in key_text(), index in MAX_INDEX + 1..usize::MAX) {
        let parsed = parse(&format!("{key}[{index}]=x")).map_err(TestCaseError::fail)?;
        let mut inner = Map::new();
        inner.insert(index.to_string(), Value::String("x".into()));
        prop_assert_eq!(parsed.get(&key), Some(&Value::Object(inner)));
    }
}
