//! qs-style query-string parsing: `a[b]=c`, `a[]=x&a[]=y`, `a[0]=x&a[1]=y`.
//!
//! The Truto Python SDK sends the first two forms, the TypeScript SDK (`qs.stringify`) the
//! third. The result is a JSON object whose leaves are strings; typing the values is the job of
//! whoever reads a parameter. Limits bound the work one request can cause.

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

/// At most this many `key=value` pairs in one query string.
pub const MAX_PARAMS: usize = 1_000;
/// At most this many bracket levels in one key (`a[b][c]` has two).
pub const MAX_DEPTH: usize = 5;
/// Array indexes above this are kept as object keys, as qs does, so `a[999999]=x` cannot
/// allocate.
pub const MAX_INDEX: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Name(String),
    Index(usize),
    Push,
}

#[derive(Debug, Default)]
enum Node {
    #[default]
    Empty,
    Leaf(Vec<String>),
    Branch(Vec<(Segment, Node)>),
}

/// Parses a raw query string (without the leading `?`).
pub fn parse(raw: &str) -> Result<Map<String, Value>, String> {
    let mut root: Vec<(Segment, Node)> = Vec::new();
    for (count, pair) in raw.split('&').filter(|pair| !pair.is_empty()).enumerate() {
        if count >= MAX_PARAMS {
            return Err(format!("too many query parameters (at most {MAX_PARAMS})"));
        }
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key)?;
        let value = decode(raw_value)?;
        let segments = split_key(&key)?;
        insert(&mut root, &segments, value, &key)?;
    }
    let mut object = Map::new();
    for (segment, node) in root {
        let Segment::Name(name) = segment else {
            unreachable!("the first segment of a key is always a name")
        };
        object.insert(name, finish(node));
    }
    Ok(object)
}

fn decode(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| format!("query string is not valid UTF-8 near `{raw}`"))
}

/// `a[b][]` → `[Name(a), Name(b), Push]`. A key whose brackets do not close is one plain name,
/// as in qs.
fn split_key(key: &str) -> Result<Vec<Segment>, String> {
    let Some(open) = key.find('[') else {
        return Ok(vec![Segment::Name(key.to_owned())]);
    };
    if open == 0 {
        return Ok(vec![Segment::Name(key.to_owned())]);
    }
    let mut segments = vec![Segment::Name(key[..open].to_owned())];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            return Ok(vec![Segment::Name(key.to_owned())]);
        };
        let inner = &stripped[..close];
        segments.push(match inner {
            "" => Segment::Push,
            digits if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 4 => {
                match digits.parse::<usize>() {
                    Ok(index) if index <= MAX_INDEX => Segment::Index(index),
                    _ => Segment::Name(digits.to_owned()),
                }
            }
            name => Segment::Name(name.to_owned()),
        });
        rest = &stripped[close + 1..];
        if segments.len() > MAX_DEPTH + 1 {
            return Err(format!(
                "query parameter `{key}` is nested deeper than {MAX_DEPTH} levels"
            ));
        }
    }
    if !rest.is_empty() {
        // qs keeps trailing text after the last bracket as part of the last segment's name; a
        // caller who sends that means something we cannot guess, so say so.
        return Err(format!(
            "query parameter `{key}` has text after its last `]`"
        ));
    }
    Ok(segments)
}

fn insert(
    branch: &mut Vec<(Segment, Node)>,
    segments: &[Segment],
    value: String,
    key: &str,
) -> Result<(), String> {
    let (first, rest) = segments
        .split_first()
        .expect("a key has at least one segment");
    // `a[]` appends to a list, `a[key]` names a field: both under one parent would make a list
    // with names, and one of them would be lost. Refused, never guessed.
    let mixes = match first {
        Segment::Push => branch
            .iter()
            .any(|(segment, _)| matches!(segment, Segment::Name(_))),
        Segment::Name(_) => branch.iter().any(|(segment, _)| *segment == Segment::Push),
        Segment::Index(_) => false,
    };
    if mixes {
        return Err(format!(
            "query parameter `{key}` mixes `[]` with named keys under one parent"
        ));
    }
    let slot = if *first == Segment::Push {
        branch.push((Segment::Push, Node::Empty));
        let last = branch.len() - 1;
        &mut branch[last].1
    } else if let Some(position) = branch.iter().position(|(segment, _)| segment == first) {
        &mut branch[position].1
    } else {
        branch.push((first.clone(), Node::Empty));
        let last = branch.len() - 1;
        &mut branch[last].1
    };
    if rest.is_empty() {
        match slot {
            Node::Empty => *slot = Node::Leaf(vec![value]),
            Node::Leaf(values) => values.push(value),
            Node::Branch(_) => {
                return Err(format!(
                    "query parameter `{key}` is given both as a value and as an object"
                ));
            }
        }
        return Ok(());
    }
    match slot {
        Node::Empty => {
            *slot = Node::Branch(Vec::new());
            let Node::Branch(children) = slot else {
                unreachable!()
            };
            insert(children, rest, value, key)
        }
        Node::Branch(children) => insert(children, rest, value, key),
        Node::Leaf(_) => Err(format!(
            "query parameter `{key}` is given both as a value and as an object"
        )),
    }
}

fn finish(node: Node) -> Value {
    match node {
        Node::Empty => Value::String(String::new()),
        Node::Leaf(mut values) if values.len() == 1 => Value::String(values.remove(0)),
        Node::Leaf(values) => Value::Array(values.into_iter().map(Value::String).collect()),
        Node::Branch(children) => {
            let is_array = children
                .iter()
                .all(|(segment, _)| matches!(segment, Segment::Index(_) | Segment::Push));
            if is_array {
                let mut indexed: Vec<(usize, usize, Node)> = children
                    .into_iter()
                    .enumerate()
                    .map(|(order, (segment, node))| match segment {
                        Segment::Index(index) => (index, order, node),
                        _ => (usize::MAX, order, node),
                    })
                    .collect();
                indexed.sort_by_key(|(index, order, _)| (*index, *order));
                Value::Array(
                    indexed
                        .into_iter()
                        .map(|(_, _, node)| finish(node))
                        .collect(),
                )
            } else {
                let mut object = Map::new();
                for (segment, node) in children {
                    let name = match segment {
                        Segment::Name(name) => name,
                        Segment::Index(index) => index.to_string(),
                        Segment::Push => String::new(),
                    };
                    object.insert(name, finish(node));
                }
                Value::Object(object)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(raw: &str) -> Value {
        Value::Object(parse(raw).expect("parses"))
    }

    #[test]
    fn parses_the_three_forms_the_sdks_send() {
        assert_eq!(
            parsed(
                "integrated_account_id=a&remote_query%5Bstatus%5D=active&truto_exclude_fields%5B%5D=emails&truto_exclude_fields%5B%5D=phones"
            ),
            json!({"integrated_account_id": "a", "remote_query": {"status": "active"},
                   "truto_exclude_fields": ["emails", "phones"]})
        );
        assert_eq!(
            parsed("truto_exclude_fields[1]=b&truto_exclude_fields[0]=a"),
            json!({"truto_exclude_fields": ["a", "b"]})
        );
        assert_eq!(
            parsed("a[b][c]=1&a[b][d]=2&a[e]=x+y%20z"),
            json!({"a": {"b": {"c": "1", "d": "2"}, "e": "x y z"}})
        );
    }

    #[test]
    fn empty_values_and_repeats() {
        assert_eq!(
            parsed("next_cursor=&flag"),
            json!({"next_cursor": "", "flag": ""})
        );
        assert_eq!(parsed("a=1&a=2"), json!({"a": ["1", "2"]}));
        assert_eq!(parsed(""), json!({}));
    }

    #[test]
    fn odd_keys_are_kept_or_refused_never_guessed() {
        assert_eq!(parsed("a[b=1"), json!({"a[b": "1"}));
        assert_eq!(parsed("a[999]=1"), json!({"a": {"999": "1"}}));
        assert!(
            parse("a=1&a[b]=2")
                .unwrap_err()
                .contains("both as a value and as an object")
        );
        assert!(parse("a[b]c=1").is_err());
        assert!(
            parse("a[]=0&a[x]=0&a[]=0")
                .unwrap_err()
                .contains("mixes `[]` with named keys")
        );
        assert!(
            parse("a[1][2][3][4][5][6]=1")
                .unwrap_err()
                .contains("deeper")
        );
        assert!(parse("a=%FF").is_err());
        let many = vec!["x=1"; MAX_PARAMS + 1].join("&");
        assert!(parse(&many).unwrap_err().contains("too many"));
    }
}
