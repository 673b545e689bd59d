//! The fast path's own record representation: a provider record parsed with only what its
//! mapping reads ([`crate::reads::ReadSet`]) into a tree that borrows the provider's text.
//!
//! Owns [`Doc`], [`parse_doc`] and the symbol table that numbers field names. A key the read
//! set names carries that name's symbol, and a plan's field step carries the symbol of its name
//! (both taken from one table at load), so a lookup compares two integers: no hashing, no
//! string comparison, no allocation for keys or for strings without escapes. An object of a
//! small read set keeps each of the set's fields at the same place in every record (absent
//! ones as [`Doc::Absent`]), so a step that remembers where it found its field (`Hint`)
//! compares one. A value the plan reads whole that is an array or an object stays a
//! `serde_json` tree ([`Doc::Whole`]), which the evaluator already walks and copies. It does not
//! evaluate anything (`fast` does) and never sees the JSONata engine, which always gets the
//! record re-read whole from its text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
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

/// The largest integer a double holds exactly, with every one below it: 2^53.
const EXACT_INTEGERS: u64 = 1 << 53;

/// Whether `number` is an integer a double cannot hold (beyond ±2^53).
fn is_inexact_integer(number: &serde_json::Number) -> bool {
    number.as_u64().is_some_and(|value| value > EXACT_INTEGERS)
        || number
            .as_i64()
            .is_some_and(|value| value.unsigned_abs() > EXACT_INTEGERS)
}

/// Whether a provider's value holds an integer beyond ±2^53 anywhere.
pub fn has_inexact_integers(value: &Value) -> bool {
    match value {
        Value::Number(number) => is_inexact_integer(number),
        Value::Array(items) => items.iter().any(has_inexact_integers),
        Value::Object(fields) => fields.values().any(has_inexact_integers),
        _ => false,
    }
}

/// A provider's value as the mappings read it: an integer beyond ±2^53, which JSONata's
/// numbers (doubles) would round (a 64-bit id: 1234567890123456789 read as
/// 1234567890123456800), is its digits as text instead, on the fast path and on the JSONata
/// engine alike. `remote_data` keeps the provider's own value.
pub fn with_exact_integers(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Number(number) if is_inexact_integer(number) => {
                *value = Value::String(number.to_string());
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            Value::Object(fields) => fields.values_mut().for_each(walk),
            _ => {}
        }
    }
    if has_inexact_integers(&value) {
        walk(&mut value);
    }
    value
}

/// [`with_exact_integers`] of a value borrowed: the value itself where it holds no such integer.
pub fn exact_integers(value: &Value) -> Cow<'_, Value> {
    match has_inexact_integers(value) {
        true => Cow::Owned(with_exact_integers(value.clone())),
        false => Cow::Borrowed(value),
    }
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
    /// The fields the read set names: in a set of at most `PLACED_FIELDS`, every one of them
    /// at its index in the set, [`Doc::Absent`] where the object lacks it; in a larger set only
    /// those the object has, those it walks into at the front (`Kept::keep`).
    Obj(Vec<Field<'a>>),
    /// An array or object read whole, as `serde_json` parses it (boxed: a `Value` is three
    /// times the size of the other variants).
    Whole(Box<Value>),
    /// The place of a field the read set names and the object does not have (`Kept`): a
    /// lookup that lands on it answers *undefined* without searching further.
    Absent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    /// The name's [`symbol`], or [`NO_SYMBOL`].
    pub(crate) symbol: u32,
    pub key: Cow<'a, str>,
    pub value: Doc<'a>,
}

impl<'a> Doc<'a> {
    /// The field named `name` (whose symbol is `symbol`) of an object's fields ([`Doc::Absent`]
    /// where the object keeps the place of a field it does not have). Every field a pruned
    /// object keeps is one its read set names, so it carries that name's symbol; a name
    /// without one (a key computed at run time) is compared as text.
    pub(crate) fn field<'d>(
        fields: &'d [Field<'a>],
        name: &str,
        symbol: u32,
    ) -> Option<&'d Doc<'a>> {
        fields
            .iter()
            .find(|field| match symbol {
                NO_SYMBOL => field.key == name && !matches!(field.value, Doc::Absent),
                _ => field.symbol == symbol,
            })
            .map(|field| &field.value)
    }

    /// The field whose symbol is `symbol` ([`Doc::Absent`] where the object keeps the place of
    /// a field it does not have), looked for first where `hint` says it was last found. The
    /// objects of one read set keep each of its fields at the same place ([`Kept`]), so once a
    /// plan's step has met one of them, it finds the field (or its absence) at once in every
    /// other; a wrong hint (an object of another set) costs the search it replaces.
    #[inline(always)]
    pub(crate) fn field_hinted<'d>(
        fields: &'d [Field<'a>],
        symbol: u32,
        hint: &Hint,
    ) -> Option<&'d Doc<'a>> {
        if let Some(field) = fields.get(hint.get())
            && field.symbol == symbol
        {
            return Some(&field.value);
        }
        let at = fields.iter().position(|field| field.symbol == symbol)?;
        hint.set(at);
        Some(&fields[at].value)
    }

    /// An object's fields it has (not the places of those it lacks).
    pub(crate) fn present<'d>(fields: &'d [Field<'a>]) -> impl Iterator<Item = &'d Field<'a>> {
        fields
            .iter()
            .filter(|field| !matches!(field.value, Doc::Absent))
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
                Doc::present(fields)
                    .map(|field| (field.key.as_ref().to_owned(), field.value.to_value()))
                    .collect(),
            ),
            Doc::Whole(value) => (**value).clone(),
            // Only ever a field's place, which the object above leaves out.
            Doc::Absent => Value::Null,
        }
    }
}

/// Where a plan's field step last found its field in an object's fields ([`Doc::field_hinted`]).
/// Shared by every evaluation of the plan, on every thread: a relaxed atomic, since any value
/// it holds is only a place to look first.
#[derive(Debug, Default)]
pub(crate) struct Hint(AtomicU32);

impl Hint {
    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed) as usize
    }

    fn set(&self, at: usize) {
        self.0
            .store(u32::try_from(at).unwrap_or(u32::MAX), Ordering::Relaxed);
    }
}

impl Clone for Hint {
    fn clone(&self) -> Hint {
        Hint(AtomicU32::new(self.0.load(Ordering::Relaxed)))
    }
}

/// Read sets of at most this many fields keep each field at its own place in every object
/// ([`Kept`]); larger ones keep only the fields an object has (a record rarely has most of a
/// large set, and making every place would cost more than it saves).
const PLACED_FIELDS: usize = 64;

/// `text` parsed as JSON into a [`Doc`] holding only what `reads` reads. Errors as
/// `serde_json::from_str`'s for the same text (syntax, a number out of range where one is read,
/// the depth limit).
pub fn parse_doc<'a>(text: &'a str, reads: &ReadSet) -> serde_json::Result<Doc<'a>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let doc = Pruned(reads).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(doc)
}

/// The fields an object keeps ([`Kept::keep`]).
pub(crate) struct Kept<'a> {
    fields: Vec<Field<'a>>,
    /// Each of the read set's fields has its place, at its index in the set, from the start
    /// (a [`Doc::Absent`] until the object gives it a value).
    placed: bool,
    /// Without places, bit `n`: the read set's field `n` is kept already (for its first 64
    /// fields; past those a key is looked for among the kept ones).
    seen: u64,
}

impl<'a> Kept<'a> {
    pub(crate) fn for_set(reads: &ReadSet) -> Kept<'a> {
        let count = reads.field_count();
        if count <= PLACED_FIELDS {
            let fields = reads
                .symbols()
                .map(|symbol| Field {
                    symbol,
                    key: Cow::Borrowed(""),
                    value: Doc::Absent,
                })
                .collect();
            return Kept {
                fields,
                placed: true,
                seen: 0,
            };
        }
        Kept {
            fields: Vec::with_capacity(count),
            placed: false,
            seen: 0,
        }
    }

    /// Keeps the read set's field `index`. In a set of at most [`PLACED_FIELDS`] fields each
    /// goes to its own place, so a plan's step finds it, or its absence, where it found it in
    /// the last object of the set ([`Doc::field_hinted`]). In a larger set a field the mapping
    /// walks into (its read set names fields below it) goes to the front, since every path
    /// through it looks it up again, and the others keep their text order. Order does not
    /// matter otherwise: an object kept in part is only ever read by field steps (anything else
    /// the plan does with it keeps it whole, [`Doc::Whole`]). A repeated key: the last value
    /// counts, at the first one's place, as in `serde_json`'s map.
    #[inline(always)]
    pub(crate) fn keep(&mut self, index: usize, field: Field<'a>, reads: &ReadSet) {
        if self.placed
            && let Some(place) = self.fields.get_mut(index)
        {
            let old = std::mem::replace(place, field);
            if let Doc::Absent = old.value {
                // An empty place owns nothing (its key is borrowed): no call to the drop glue.
                std::mem::forget(old);
            }
            return;
        }
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

    /// [`Kept::keep`] of a string without escapes, the value most kept fields hold. In a
    /// placed set the string is stored straight into its place: a whole [`Field`] put together
    /// first and then copied in cost a stalled load (wider than the stores that had just
    /// written its parts) on every field.
    #[inline(always)]
    pub(crate) fn keep_text(
        &mut self,
        index: usize,
        symbol: u32,
        key: &'a str,
        text: &'a str,
        reads: &ReadSet,
    ) {
        if self.placed
            && let Some(place) = self.fields.get_mut(index)
        {
            let old_key = std::mem::replace(&mut place.key, Cow::Borrowed(key));
            let old_value = std::mem::replace(&mut place.value, Doc::Str(Cow::Borrowed(text)));
            if let Doc::Absent = old_value {
                // As in `keep`: an empty place owns nothing.
                std::mem::forget((old_key, old_value));
            }
            return;
        }
        let (key, value) = (Cow::Borrowed(key), Doc::Str(Cow::Borrowed(text)));
        self.keep(index, Field { symbol, key, value }, reads);
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
        Ok(match value.unsigned_abs() > EXACT_INTEGERS {
            true => Doc::Str(Cow::Owned(value.to_string())),
            false => Doc::Num(value as f64),
        })
    }

    fn visit_u64<E>(self, value: u64) -> Result<Doc<'de>, E> {
        Ok(match value > EXACT_INTEGERS {
            true => Doc::Str(Cow::Owned(value.to_string())),
            false => Doc::Num(value as f64),
        })
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
                .map(|value| Doc::Whole(Box::new(with_exact_integers(value))));
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
                .map(|value| Doc::Whole(Box::new(with_exact_integers(value))));
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
        // Each field of the set at its place, in the set's order (by name).
        let keys: Vec<&str> = fields.iter().map(|field| field.key.as_ref()).collect();
        assert_eq!(keys, ["id", "m", "n", "profile", "tags"]);
        assert!(matches!(fields[0].value, Doc::Str(Cow::Borrowed("u1"))));
        assert!(
            matches!(fields[2].value, Doc::Num(13.0)),
            "the last of a repeated key counts"
        );
        assert!(matches!(fields[1].value, Doc::Whole(_)));
        let Doc::Obj(profile) = &fields[3].value else {
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

    /// A step's hint finds a field, or the place of an absent one, where it was found last; an
    /// object of another set (other places) is searched, and the hint moves there.
    #[test]
    fn a_hint_finds_a_field_at_its_place_and_follows_an_object_of_another_set() {
        let small = set(&["a.*", "b.*", "c.*"]);
        let other = set(&["b.*", "c.*", "x.*", "y.*"]);
        let (b, c, missing) = (symbol("b"), symbol("c"), symbol("zz-not-in-any-set"));
        let fields = |doc: &Doc<'static>| match doc {
            Doc::Obj(fields) => fields.clone(),
            other => panic!("{other:?}"),
        };
        let one = fields(&parse_doc(r#"{"c":3,"a":1,"b":2}"#, &small).unwrap());
        let two = fields(&parse_doc(r#"{"b":20}"#, &small).unwrap());
        let three = fields(&parse_doc(r#"{"y":0,"c":300}"#, &other).unwrap());
        let hint = Hint::default();
        assert_eq!(Doc::field_hinted(&one, c, &hint), Some(&Doc::Num(3.0)));
        assert_eq!(hint.get(), 2, "c's place in {{a, b, c}}");
        assert_eq!(Doc::field_hinted(&two, c, &hint), Some(&Doc::Absent));
        assert_eq!(Doc::field_hinted(&three, c, &hint), Some(&Doc::Num(300.0)));
        assert_eq!(hint.get(), 1, "c's place in {{b, c, x, y}}");
        assert_eq!(Doc::field_hinted(&two, b, &hint), Some(&Doc::Num(20.0)));
        assert_eq!(Doc::field_hinted(&one, missing, &hint), None);
        assert_eq!(hint.get(), 1, "a name no place holds leaves the hint");
        // The places of absent fields are left out of the object's value and its fields.
        assert_eq!(
            parse_doc(r#"{"b":20}"#, &small).unwrap().to_value(),
            json!({"b": 20.0})
        );
        assert_eq!(Doc::present(&two).count(), 1);
        assert_eq!(Doc::field(&two, "", NO_SYMBOL), None, "a place has no key");
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
