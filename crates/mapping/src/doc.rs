//! The fast path's own record representation: a provider record parsed with only what its
//! mapping reads ([`crate::reads::ReadSet`]) into a tree that borrows the provider's text.
//!
//! Owns [`Doc`], [`parse_doc`] and the symbol table that numbers field names. A key the read
//! set names carries that name's symbol, and a plan's field step carries the symbol of its name
//! (both taken from one table at load), so a lookup compares two integers over the few fields a
//! pruned object keeps: no hashing, no string comparison, no allocation for keys or for strings
//! without escapes. A value the plan reads whole that is an array or an object stays a
//! `serde_json` tree ([`Doc::Whole`]), which the evaluator already walks and copies. It does not
//! evaluate anything (`fast` does) and never sees the JSONata engine, which always gets the
//! record re-read whole from its text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::reads::{Key, ReadSet};

/// A symbol no field name has: the key of a field the read set does not name.
pub(crate) const NO_SYMBOL: u32 = u32::MAX;

/// Field names numbered once for the process: names come from loaded mappings only, so the
/// table grows with the mappings, never with provider data.
static SYMBOLS: LazyLock<Mutex<HashMap<Box<str>, u32>>> = LazyLock::new(Default::default);

/// The symbol of a field name, made on first use. Called at load, never per request.
pub(crate) fn symbol(name: &str) -> u32 {
    let mut symbols = SYMBOLS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(&symbol) = symbols.get(name) {
        return symbol;
    }
    let symbol = u32::try_from(symbols.len())
        .ok()
        .filter(|&symbol| symbol != NO_SYMBOL)
        .unwrap_or(NO_SYMBOL);
    symbols.insert(name.into(), symbol);
    symbol
}

/// A parsed record holding only what its mapping reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    Null,
    Bool(bool),
    /// As the evaluator reads every JSON number: a double (`serde_json`'s `as_f64`).
    Num(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Doc<'a>>),
    /// The fields the read set names: those it walks into at the front (each before the ones
    /// met earlier), then the others in the order the text gives them ([`Kept::keep`]).
    Obj(Vec<Field<'a>>),
    /// An array or object read whole, as `serde_json` parses it (boxed: a `Value` is three
    /// times the size of the other variants).
    Whole(Box<Value>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    /// The name's [`symbol`], or [`NO_SYMBOL`].
    pub(crate) symbol: u32,
    pub key: Cow<'a, str>,
    pub value: Doc<'a>,
}

impl<'a> Doc<'a> {
    /// The field named `name` (whose symbol is `symbol`) of an object's fields. Every field a
    /// pruned object keeps is one its read set names, so it carries that name's symbol; a name
    /// without one (a key computed at run time) is compared as text.
    pub(crate) fn field<'d>(
        fields: &'d [Field<'a>],
        name: &str,
        symbol: u32,
    ) -> Option<&'d Doc<'a>> {
        fields
            .iter()
            .find(|field| match symbol {
                NO_SYMBOL => field.key == name,
                _ => field.symbol == symbol,
            })
            .map(|field| &field.value)
    }

    /// The value as `serde_json` holds it (numbers as the doubles they were read as).
    pub fn to_value(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Num(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
            Doc::Str(s) => Value::String(s.as_ref().to_owned()),
            Doc::Arr(items) => Value::Array(items.iter().map(Doc::to_value).collect()),
            Doc::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|field| (field.key.as_ref().to_owned(), field.value.to_value()))
                    .collect(),
            ),
            Doc::Whole(value) => (**value).clone(),
        }
    }
}

/// `text` parsed as JSON into a [`Doc`] holding only what `reads` reads. Errors as
/// `serde_json::from_str`'s for the same text (syntax, a number out of range where one is read,
/// the depth limit).
pub fn parse_doc<'a>(text: &'a str, reads: &ReadSet) -> serde_json::Result<Doc<'a>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let doc = Pruned(reads).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(doc)
}

/// The fields an object keeps, as its text gives them ([`Kept::keep`]).
pub(crate) struct Kept<'a> {
    fields: Vec<Field<'a>>,
    /// Bit `n`: the read set's field `n` is kept already (for its first 64 fields; past those
    /// a key is looked for among the kept ones).
    seen: u64,
}

impl<'a> Kept<'a> {
    pub(crate) fn for_set(reads: &ReadSet) -> Kept<'a> {
        Kept {
            fields: Vec::with_capacity(reads.field_count()),
            seen: 0,
        }
    }

    /// Keeps the read set's field `index`. A field the mapping walks into (its read set names
    /// fields below it: Okta's `profile`, read for a dozen of its fields) goes to the front,
    /// since every path through it looks it up again; the others keep their text order. Order
    /// does not matter otherwise: an object kept in part is only ever read by field steps
    /// (anything else the plan does with it keeps it whole, [`Doc::Whole`]). A repeated key:
    /// the last value counts, at the first one's place, as in `serde_json`'s map.
    #[inline(always)]
    pub(crate) fn keep(&mut self, index: usize, field: Field<'a>, reads: &ReadSet) {
        let bit = u32::try_from(index)
            .ok()
            .and_then(|index| 1u64.checked_shl(index))
            .unwrap_or(0);
        if (bit == 0 || self.seen & bit != 0)
            && let Some(kept) = self
                .fields
                .iter_mut()
                .find(|kept| kept.symbol == field.symbol)
        {
            kept.value = field.value;
            return;
        }
        self.seen |= bit;
        match reads.walks_into() {
            true => self.fields.insert(0, field),
            false => self.fields.push(field),
        }
    }

    pub(crate) fn into_doc(self) -> Doc<'a> {
        Doc::Obj(self.fields)
    }
}

/// Parses one record of a page into a [`Doc`] with what the set reads, within the page's parse
/// (`crate::reads::parse_pruned_with_docs`), and gives the record's first key as the text holds
/// it (see [`Pruned::object`]): where the record's bytes start, found without scanning the body
/// again.
pub(crate) struct RecordSeed<'s>(pub &'s ReadSet);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = (Doc<'de>, Option<&'de str>);

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<(Doc<'de>, Option<&'de str>), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Scalars as [`Pruned`] reads them, with no first key.
macro_rules! as_record {
    ($($name:ident($type:ty)),*) => {$(
        fn $name<E: de::Error>(self, value: $type) -> Result<Self::Value, E> {
            Pruned(self.0).$name(value).map(|doc| (doc, None))
        }
    )*};
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = (Doc<'de>, Option<&'de str>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    as_record!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_borrowed_str(&'de str),
        visit_str(&str),
        visit_string(String)
    );

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Doc::Null, None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Doc::Null, None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Pruned(self.0).visit_seq(seq).map(|doc| (doc, None))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut first_key = None;
        let doc = Pruned(self.0).object(map, &mut first_key)?;
        Ok((doc, first_key))
    }
}

struct Pruned<'s>(&'s ReadSet);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Doc<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Doc<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Num(value as f64))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Num(value as f64))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Doc<'de>, E> {
        // `serde_json::Value` holds a non-finite double as null.
        Ok(if value.is_finite() {
            Doc::Num(value)
        } else {
            Doc::Null
        })
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<Doc<'de>, E> {
        Ok(Doc::Str(Cow::Owned(value)))
    }

    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_none<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Doc<'de>, A::Error> {
        if self.0.reads_everything() {
            return Value::deserialize(de::value::SeqAccessDeserializer::new(seq))
                .map(|value| Doc::Whole(Box::new(value)));
        }
        let mut seq = seq;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Pruned(self.0))? {
            items.push(item);
        }
        Ok(Doc::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Doc<'de>, A::Error> {
        self.object(map, &mut None)
    }
}

impl Pruned<'_> {
    /// An object's fields; `first_key` gets its first key where the parser lends it from the
    /// text (no escapes in it), and stays `None` for an object read whole.
    fn object<'de, A: MapAccess<'de>>(
        self,
        map: A,
        first_key: &mut Option<&'de str>,
    ) -> Result<Doc<'de>, A::Error> {
        if self.0.reads_everything() {
            return Value::deserialize(de::value::MapAccessDeserializer::new(map))
                .map(|value| Doc::Whole(Box::new(value)));
        }
        let mut map = map;
        let mut kept = Kept::for_set(self.0);
        let mut first = true;
        while let Some(Key(key)) = map.next_key()? {
            if first {
                first = false;
                if let Cow::Borrowed(key) = key {
                    *first_key = Some(key);
                }
            }
            match self.0.field_set(key.as_ref()) {
                Some(read) => {
                    let value = map.next_value_seed(Pruned(read.set))?;
                    let symbol = read.symbol;
                    kept.keep(read.index, Field { symbol, key, value }, read.set);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(kept.into_doc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reads::tests::set;
    use serde_json::json;

    #[test]
    fn keeps_read_fields_borrows_plain_strings_and_keeps_whole_values_as_trees() {
        let body = r#"{"id":"u1","_links":{"self":{"href":"x"}},"profile":{"email":"a@b","bio":"long","name":"caf\u00e9"},"tags":[{"k":1,"v":2}],"n":12,"m":{"a":[1]},"n":13}"#;
        let reads = set(&[
            "id.*",
            "profile.email.*",
            "profile.name.*",
            "tags.k.*",
            "m.*",
            "n.*",
        ]);
        let doc = parse_doc(body, &reads).unwrap();
        assert_eq!(
            doc.to_value(),
            json!({"id": "u1", "profile": {"email": "a@b", "name": "café"}, "tags": [{"k": 1.0}], "n": 13.0, "m": {"a": [1]}})
        );
        let Doc::Obj(fields) = &doc else {
            panic!("{doc:?}")
        };
        // The fields walked into first (the later one before), then the others in text order.
        let keys: Vec<&str> = fields.iter().map(|field| field.key.as_ref()).collect();
        assert_eq!(keys, ["tags", "profile", "id", "n", "m"]);
        assert!(matches!(fields[2].value, Doc::Str(Cow::Borrowed("u1"))));
        assert!(
            matches!(fields[3].value, Doc::Num(13.0)),
            "the last of a repeated key counts, at the first one's place"
        );
        assert!(matches!(fields[4].value, Doc::Whole(_)));
        let Doc::Obj(profile) = &fields[1].value else {
            panic!()
        };
        assert!(
            matches!(profile[1].value, Doc::Str(Cow::Owned(_))),
            "unescaped into its own text"
        );
        assert_eq!(
            Doc::field(profile, "email", symbol("email")),
            Some(&Doc::Str(Cow::Borrowed("a@b")))
        );
        assert_eq!(Doc::field(profile, "bio", symbol("bio")), None);
    }

    /// Repeated keys among a set's first 64 fields (told by a bit) and past them (looked for):
    /// the last value counts at the first one's place, by the scanner and by the serde parse.
    #[test]
    fn a_repeated_key_counts_last_wherever_it_is_in_a_large_set() {
        let names: Vec<String> = (0..70).map(|n| format!("f{n:02}.*")).collect();
        let reads = set(&names.iter().map(String::as_str).collect::<Vec<_>>());
        let body = r#"{"f03":1,"f67":2,"x":0,"f03":3,"f65":4,"f67":5,"f69":6,"f65":7}"#;
        let keys = |doc: &Doc<'_>| match doc {
            Doc::Obj(fields) => fields
                .iter()
                .map(|field| (field.key.to_string(), field.value.to_value()))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let expected = [("f03", 3.0), ("f67", 5.0), ("f65", 7.0), ("f69", 6.0)]
            .map(|(key, value)| (key.to_owned(), json!(value)));
        assert_eq!(keys(&parse_doc(body, &reads).unwrap()), expected);
        let page = format!("[{body}]");
        let (_, docs) =
            crate::scan::scan_page_docs(&page, &ReadSet::default(), &reads, &[]).unwrap();
        assert_eq!(keys(&docs.docs[0]), expected);
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let reads = set(&["id.*", "n.*"]);
        for broken in [
            r#"{"id":"1","x":}"#,
            r#"{"id":"1""#,
            r#"{"id":"1"} x"#,
            r#"{"x":[1,]}"#,
            r#"{"n":1e400}"#,
        ] {
            assert!(parse_doc(broken, &reads).is_err(), "{broken}");
            assert!(serde_json::from_str::<Value>(broken).is_err(), "{broken}");
        }
        assert!(
            parse_doc(r#"{"x":1e400,"id":"1"}"#, &reads).is_ok(),
            "an unread number is skipped"
        );
    }
}
