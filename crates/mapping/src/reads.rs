//! Parsing only what a mapping reads. A [`ReadSet`] is the tree of field paths an expression (or
//! a page's expressions together) may look at, found once at load from the fast-path plans; a
//! provider body is then parsed with [`parse_pruned`] into a `serde_json` value that holds those
//! fields and nothing else (objects keep only the read keys, arrays keep every item, scalars
//! stay whole). Unread values are skipped by the parser without being built: no allocation, no
//! key hashing, no string unescaping. Their syntax is still checked, so a body that is not JSON is
//! refused as before. A list page is read with [`parse_pruned_with_docs`], which parses each
//! record into a [`crate::doc::Doc`] on the same pass (by `crate::scan`'s scanner where it
//! takes the page, by `serde_json` where it does not: the answer is the same); when the page's
//! own expressions read something of each record, with [`parse_pruned_with_records`], which
//! takes each record's bytes instead, to be parsed by [`crate::doc`]. This module owns the sets and the page parse;
//! which calls use them is the engine's business (it finds the provider's bytes of each record
//! for `remote_data` and for the JSONata engine, which always gets the whole record).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use crate::doc::{Doc, RecordSeed};

/// The field paths that may be read under one value. `all`: the value is read whole (copied,
/// compared, passed on); otherwise only `fields` are looked at, each with what is read under it.
/// Arrays are transparent: a set applies to every item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSet {
    all: bool,
    /// Sorted by name, each name with its [`crate::doc::symbol`].
    fields: Vec<(Box<str>, u32, ReadSet)>,
    /// Each field's name as [`head`] gives it, and its length, at the field's index: a key is
    /// compared by these two words, then by [`ReadSet::seconds`], and its text beyond sixteen
    /// bytes only when those match.
    heads: Vec<(u64, usize)>,
    /// Each field's name's bytes eight to sixteen as [`head`] gives them (0 for a name of
    /// eight bytes or fewer), at the field's index: most names longer than a word end within
    /// two, and comparing a word is cheaper than calling `memcmp`.
    seconds: Vec<u64>,
    /// A key's field by [`slot`] of its head: 0 for none (most keys of a record are not read,
    /// and are turned away by one load), the field's index + 1, or [`SHARED_SLOT`] when several
    /// fields land there (then they are compared in turn).
    slots: Slots,
}

/// A field a [`ReadSet`] reads ([`ReadSet::field_set`]).
#[derive(Clone, Copy)]
pub(crate) struct FieldRead<'s> {
    /// Its place among the set's fields (sorted by name).
    pub index: usize,
    /// Its name's [`crate::doc::symbol`].
    pub symbol: u32,
    /// What is read below it.
    pub set: &'s ReadSet,
}

const SLOTS: usize = 64;
const SHARED_SLOT: u8 = u8::MAX;

/// [`ReadSet::slots`]: a field index + 1 per slot.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slots([u8; SLOTS]);

impl Default for Slots {
    fn default() -> Self {
        Slots([0; SLOTS])
    }
}

/// Where a name's head and length land in [`ReadSet::slots`] (Fibonacci hashing).
fn slot((head, len): (u64, usize)) -> usize {
    ((head ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize
}

/// A name's bytes eight to sixteen as one word, as [`head`] reads them (0 when there are none).
fn second(name: &[u8]) -> u64 {
    name.get(8..name.len().min(16)).map_or(0, head)
}

/// A name's first eight bytes as one word (zero after a shorter name's end). A name of four to
/// seven bytes is read as two overlapping four-byte halves, each shifted to its place: where
/// they overlap both hold the same bytes, so or-ing them gives the name's bytes.
fn head(name: &[u8]) -> u64 {
    let len = name.len();
    let word = |bytes: &[u8]| {
        bytes
            .iter()
            .rev()
            .fold(0u64, |word, &byte| (word << 8) | u64::from(byte))
    };
    match (
        name.first_chunk::<8>(),
        name.first_chunk::<4>(),
        name.last_chunk::<4>(),
    ) {
        (Some(first), _, _) => u64::from_le_bytes(*first),
        (None, Some(low), Some(high)) => {
            u64::from(u32::from_le_bytes(*low))
                | u64::from(u32::from_le_bytes(*high)) << ((len - 4) * 8)
        }
        _ => word(name),
    }
}

impl ReadSet {
    /// A set that reads everything.
    pub fn everything() -> ReadSet {
        ReadSet {
            all: true,
            fields: Vec::new(),
            heads: Vec::new(),
            seconds: Vec::new(),
            slots: Slots::default(),
        }
    }

    /// Whether the whole value is read (nothing can be pruned).
    pub fn reads_everything(&self) -> bool {
        self.all
    }

    pub(crate) fn keep_all(&mut self) {
        self.all = true;
        self.fields.clear();
        self.heads.clear();
        self.seconds.clear();
        self.slots = Slots::default();
    }

    /// The set under `path`, made (as "present") where it is missing.
    pub(crate) fn node(&mut self, path: &[Box<str>]) -> &mut ReadSet {
        let mut at = self;
        for name in path {
            if at.all {
                return at;
            }
            at = at.child(name);
        }
        at
    }

    fn child(&mut self, name: &str) -> &mut ReadSet {
        let index = match self
            .fields
            .binary_search_by(|(have, _, _)| (**have).cmp(name))
        {
            Ok(index) => index,
            Err(index) => {
                let symbol = crate::doc::symbol(name);
                self.fields
                    .insert(index, (name.into(), symbol, ReadSet::default()));
                self.heads
                    .insert(index, (head(name.as_bytes()), name.len()));
                self.seconds.insert(index, second(name.as_bytes()));
                self.slots = Slots::default();
                for (index, &head) in self.heads.iter().enumerate() {
                    let at = &mut self.slots.0[slot(head)];
                    *at = match u8::try_from(index + 1) {
                        Ok(taken) if *at == 0 && taken != SHARED_SLOT => taken,
                        _ => SHARED_SLOT,
                    };
                }
                index
            }
        };
        &mut self.fields[index].2
    }

    fn get(&self, name: &str) -> Option<&ReadSet> {
        self.field_set(name).map(|read| read.set)
    }

    /// Field `name`'s place in the set, its symbol and the set under it, when the set reads
    /// that field.
    pub(crate) fn field_set(&self, name: &str) -> Option<FieldRead<'_>> {
        let wanted = (head(name.as_bytes()), name.len());
        let index = match self.slots.0[slot(wanted)] {
            0 => return None,
            SHARED_SLOT => self.heads.iter().position(|&have| have == wanted)?,
            taken => usize::from(taken) - 1,
        };
        if self.heads[index] != wanted {
            return None;
        }
        // Names sharing a head and a length differ after their eighth byte: the one wanted is
        // this one or a later one (names are sorted).
        let index = match wanted.1 > 8 {
            true => {
                let wanted_second = second(name.as_bytes());
                (index..self.fields.len()).find(|&index| {
                    self.heads[index] == wanted
                        && self.seconds[index] == wanted_second
                        && (wanted.1 <= 16
                            || self.fields[index].0.as_bytes()[16..] == name.as_bytes()[16..])
                })?
            }
            false => index,
        };
        let (_, symbol, set) = &self.fields[index];
        Some(FieldRead {
            index,
            symbol: *symbol,
            set,
        })
    }

    /// Whether the set reads fields below its value (rather than all of it, or only that it is
    /// there).
    pub(crate) fn walks_into(&self) -> bool {
        !self.all && !self.fields.is_empty()
    }

    /// How many fields the set names.
    pub(crate) fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// The symbols of the fields the set names, by their index (see [`FieldRead::index`]).
    pub(crate) fn symbols(&self) -> impl Iterator<Item = u32> + '_ {
        self.fields.iter().map(|(_, symbol, _)| *symbol)
    }

    /// Adds what `other` reads.
    pub fn merge(&mut self, other: &ReadSet) {
        if self.all {
            return;
        }
        if other.all {
            self.keep_all();
            return;
        }
        for (name, _, set) in &other.fields {
            self.child(name).merge(set);
        }
    }

    /// Adds `other` as read under the field path `path`.
    pub fn merge_at(&mut self, path: &[String], other: &ReadSet) {
        let path: Vec<Box<str>> = path.iter().map(|name| name.as_str().into()).collect();
        self.node(&path).merge(other);
    }

    /// The paths, for tests and diagnostics: `a.b` per leaf, `a.*` where a value is read whole.
    pub fn paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_paths("", &mut out);
        out
    }

    fn collect_paths(&self, prefix: &str, out: &mut Vec<String>) {
        if self.all {
            out.push(format!("{prefix}*"));
            return;
        }
        if self.fields.is_empty() {
            out.push(prefix.trim_end_matches('.').to_owned());
            return;
        }
        for (name, _, set) in &self.fields {
            set.collect_paths(&format!("{prefix}{name}."), out);
        }
    }
}

/// What a list's pages are parsed for, when the fast path knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageReads {
    /// Over the whole body: the pagination and error expressions, and under the records path
    /// only what the keyset value reads (each record is still there, to be counted).
    pub page: ReadSet,
    /// Over each record's own text ([`crate::doc::parse_doc`]): the response mapping and the
    /// keyset value.
    pub record: ReadSet,
}

/// `text` parsed as JSON, holding only what `reads` reads. Errors as `serde_json::from_str`'s
/// (the depth limit included).
pub fn parse_pruned(text: &str, reads: &ReadSet) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Pruned(reads).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// [`parse_pruned`], and the text of each record of the array at `records_path` taken on the
/// same pass (`None` when no array is there): one scan of the body instead of two. Each record is
/// in the value as `reads` reads it under `records_path` (a null where that reads nothing of it,
/// since nothing can tell), so the records are there to be counted.
pub fn parse_pruned_with_records<'a>(
    text: &'a str,
    reads: &ReadSet,
    records_path: &[String],
) -> serde_json::Result<(Value, Option<Vec<&'a RawValue>>)> {
    let (value, records) = parse_page(text, reads, records_path, None)?;
    Ok((
        value,
        records.map(|records| match records {
            Records::Raw(raw) => raw,
            Records::Docs(_) => Vec::new(), // not asked for
        }),
    ))
}

/// [`parse_pruned`], and each record of the array at `records_path` parsed on the same pass
/// into a [`Doc`] with what `record_reads` reads (`None` when no array is there): the records
/// are scanned once, not taken whole and then parsed. Only for a page whose `reads` read
/// nothing of the records themselves ([`reads_each_record`] is false; each record is a null in
/// the value, there to be counted); otherwise the records are `None`, and the caller takes them
/// with [`parse_pruned_with_records`].
pub fn parse_pruned_with_docs<'a>(
    text: &'a str,
    reads: &ReadSet,
    record_reads: &ReadSet,
    records_path: &[String],
) -> serde_json::Result<(Value, Option<PageDocs<'a>>)> {
    if reads_each_record(reads, records_path) {
        let value = parse_pruned(text, reads)?;
        return Ok((value, None));
    }
    // Records read whole are `serde_json` trees: the scanner would only find each one's end
    // for serde_json to read it again.
    if !record_reads.reads_everything()
        && let Some((value, docs)) =
            crate::scan::scan_page_docs(text, reads, record_reads, records_path)
    {
        return Ok((value, Some(docs)));
    }
    parse_page_with_serde(text, reads, record_reads, records_path)
}

/// [`parse_pruned_with_docs`] by `serde_json` alone, for the pages the scanner leaves to it.
pub(crate) fn parse_page_with_serde<'a>(
    text: &'a str,
    reads: &ReadSet,
    record_reads: &ReadSet,
    records_path: &[String],
) -> serde_json::Result<(Value, Option<PageDocs<'a>>)> {
    let (value, records) = parse_page(text, reads, records_path, Some(record_reads))?;
    Ok((
        value,
        records.map(|records| match records {
            Records::Docs(docs) => docs,
            Records::Raw(_) => PageDocs::default(), // not asked for
        }),
    ))
}

/// Whether a page read with `reads` reads anything of its records at `records_path` (a keyset
/// value over the last record, `$count` over them, …), or anything on the way to them whole:
/// then [`parse_pruned_with_docs`] cannot hold each record as a null.
pub fn reads_each_record(reads: &ReadSet, records_path: &[String]) -> bool {
    let mut at = reads;
    for segment in records_path {
        match at.get(segment) {
            Some(set) if !set.all => at = set,
            _ => return true,
        }
    }
    at.all || !at.fields.is_empty()
}

/// The records a page pass takes: each one's text, or each parsed into a [`Doc`].
enum Records<'de> {
    Raw(Vec<&'de RawValue>),
    Docs(PageDocs<'de>),
}

/// A page's records, each parsed into a [`Doc`] on the page's pass.
#[derive(Debug, Default, PartialEq)]
pub struct PageDocs<'a> {
    /// Each record with what the mapping reads.
    pub docs: Vec<Doc<'a>>,
    /// Each record's first key as the page's text holds it (a slice of that text, between the
    /// key's quotes), from which the caller finds the record's bytes without another scan of
    /// the body. `None` for a record that is not an object, an empty one, one read whole, or
    /// one whose first key has escapes (the parser does not lend those from the text).
    pub first_keys: Vec<Option<&'a str>>,
    /// Whether the page's text holds a line break (`\n` or `\r`), where the pass could tell
    /// without looking again: the scanner walks every byte, and in a body it reads whole a line
    /// break can only be whitespace between tokens, which it walks itself. `None` from the
    /// `serde_json` pass.
    pub line_break: Option<bool>,
}

fn parse_page<'a>(
    text: &'a str,
    reads: &ReadSet,
    records_path: &[String],
    record_reads: Option<&ReadSet>,
) -> serde_json::Result<(Value, Option<Records<'a>>)> {
    let sink = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = PageSeed {
        set: reads,
        path: records_path,
        record_reads,
        sink: &sink,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok((value, sink.into_inner()))
}

/// A value on the way to the records, or the records.
struct PageSeed<'s, 'de> {
    set: &'s ReadSet,
    /// What is left of the records path.
    path: &'s [String],
    /// Parse each record into a [`Doc`] with this set, rather than take its text.
    record_reads: Option<&'s ReadSet>,
    sink: &'s RefCell<Option<Records<'de>>>,
}

impl PageSeed<'_, '_> {
    fn no_records<'de>(&self) -> Records<'de> {
        match self.record_reads {
            Some(_) => Records::Docs(PageDocs::default()),
            None => Records::Raw(Vec::new()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_, 'de> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.set.all && !self.path.is_empty() {
            // Read whole on the way (an expression over the page uses it as a value): the
            // records inside are not taken.
            return Value::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

macro_rules! as_pruned {
    ($($name:ident($type:ty)),*) => {$(
        fn $name<E: de::Error>(self, value: $type) -> Result<Value, E> {
            Pruned(self.set).$name(value)
        }
    )*};
}

impl<'de> Visitor<'de> for PageSeed<'_, 'de> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    as_pruned!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_f64(f64),
        visit_str(&str),
        visit_string(String)
    );

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if !self.path.is_empty() {
            return Pruned(self.set).visit_seq(seq);
        }
        if let Some(record_reads) = self.record_reads {
            // The caller made sure the page reads nothing of a record: a null for each.
            let mut page = PageDocs::default();
            while let Some((doc, first_key)) = seq.next_element_seed(RecordSeed(record_reads))? {
                page.docs.push(doc);
                page.first_keys.push(first_key);
            }
            let records = vec![Value::Null; page.docs.len()];
            *self.sink.borrow_mut() = Some(Records::Docs(page));
            return Ok(Value::Array(records));
        }
        let mut raws: Vec<&'de RawValue> = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(raw) = seq.next_element()? {
            raws.push(raw);
        }
        let records = raws
            .iter()
            .map(|raw| match self.set.all || !self.set.fields.is_empty() {
                true => parse_pruned(raw.get(), self.set).map_err(de::Error::custom),
                false => Ok(Value::Null),
            })
            .collect::<Result<_, _>>()?;
        *self.sink.borrow_mut() = Some(Records::Raw(raws));
        Ok(Value::Array(records))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some((segment, rest)) = self.path.split_first() else {
            // One record, not an array.
            return match self.set.all {
                true => Value::deserialize(de::value::MapAccessDeserializer::new(map)),
                false => Pruned(self.set).visit_map(map),
            };
        };
        let mut out = Map::with_capacity(self.set.fields.len());
        let mut seen = false;
        while let Some(Key(key)) = map.next_key()? {
            let value = match self.set.get(key.as_ref()) {
                // A repeated key counts last, records too, as in the parsed body.
                Some(set) if key == segment.as_str() => {
                    seen = true;
                    *self.sink.borrow_mut() = None;
                    map.next_value_seed(PageSeed {
                        set,
                        path: rest,
                        record_reads: self.record_reads,
                        sink: self.sink,
                    })?
                }
                Some(set) => map.next_value_seed(Pruned(set))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            out.insert(key.into_owned(), value);
        }
        if !seen {
            // A missing field means no records (an empty page may leave it out).
            *self.sink.borrow_mut() = Some(self.no_records());
        }
        Ok(Value::Object(out))
    }
}

/// A value parsed with a read set.
struct Pruned<'s>(&'s ReadSet);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.0.all {
            return Value::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        // As `serde_json::Value` reads it.
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Pruned(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::with_capacity(self.0.fields.len());
        while let Some(Key(key)) = map.next_key()? {
            match self.0.get(key.as_ref()) {
                Some(set) => {
                    let value = map.next_value_seed(Pruned(set))?;
                    out.insert(key.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// An object key, borrowed from the body when it has no escapes.
pub(crate) struct Key<'de>(pub(crate) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(value)))
            }

            fn visit_str<E>(self, value: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(value.to_owned())))
            }

            fn visit_string<E>(self, value: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(value)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A set from `a.b` paths, `a.*` for a value read whole.
    pub(crate) fn set(paths: &[&str]) -> ReadSet {
        let mut set = ReadSet::default();
        for path in paths {
            let (path, all) = match path.strip_suffix(".*") {
                Some(path) => (path, true),
                None => (*path, false),
            };
            let path: Vec<Box<str>> = path.split('.').map(Into::into).collect();
            let node = set.node(&path);
            if all {
                node.keep_all();
            }
        }
        set
    }

    #[test]
    fn keeps_read_fields_whole_items_and_scalars() {
        let body = r#"[{"id":"1","_links":{"self":{"href":"x"}},"profile":{"email":"a@b","bio":"long"},"tags":[{"k":1,"v":2}],"n":1e400},
                       {"id":2.5,"profile":null,"tags":"x"}]"#;
        let reads = set(&["id", "profile.email", "tags.k"]);
        assert_eq!(
            parse_pruned(body, &reads).unwrap(),
            json!([
                {"id": "1", "profile": {"email": "a@b"}, "tags": [{"k": 1}]},
                {"id": 2.5, "profile": null, "tags": "x"}
            ])
        );
    }

    #[test]
    fn a_value_read_whole_is_parsed_as_serde_json_parses_it() {
        let body = r#"{"a":{"b":[1,{"c":"\u00e9\n"}],"d":-0.0,"e":18446744073709551615},"z":1}"#;
        let full: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            parse_pruned(body, &set(&["a.*"])).unwrap(),
            json!({"a": full["a"]})
        );
        assert_eq!(parse_pruned(body, &ReadSet::everything()).unwrap(), full);
    }

    #[test]
    fn skips_unread_values_of_any_shape_but_refuses_bodies_that_are_not_json() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let body = format!(
            r#"{{"id":"1","deep":{deep},"big":123456789012345678901234567890,"esc":"\ud83d\ude00 \" \\"}}"#
        );
        assert_eq!(
            parse_pruned(&body, &set(&["id"])).unwrap(),
            json!({"id": "1"})
        );
        for broken in [
            r#"{"id":"1","x":}"#,
            r#"{"id":"1""#,
            r#"{"id":"1"} x"#,
            r#"{"x":[1,]}"#,
        ] {
            assert!(parse_pruned(broken, &set(&["id"])).is_err(), "{broken}");
        }
    }

    #[test]
    fn takes_each_records_text_on_the_same_pass() {
        let path = ["data".to_owned(), "users".to_owned()];
        let raw = |found: Option<Vec<&RawValue>>| {
            found.map(|raws| {
                raws.iter()
                    .map(|raw| raw.get().to_owned())
                    .collect::<Vec<_>>()
            })
        };
        // Records counted, nothing in them read; a field of the page read; one repeated key.
        let body = r#"{"data":{"users":[1],"next":"x"},"data":{"users":[{"id":"a","n":{"m":1}}, "b" ,null],"next":"c","skip":[1]},"meta":2}"#;
        let mut reads = set(&["data.next.*"]);
        reads.merge_at(&path, &ReadSet::default());
        let (value, found) = parse_pruned_with_records(body, &reads, &path).unwrap();
        assert_eq!(
            value,
            json!({"data": {"users": [null, null, null], "next": "c"}})
        );
        assert_eq!(
            raw(found).unwrap(),
            vec![r#"{"id":"a","n":{"m":1}}"#, r#""b""#, "null"]
        );
        // What the page reads of a record (a keyset value) is there.
        let mut reads = set(&["data.users.id.*"]);
        reads.merge_at(&path, &ReadSet::default());
        let (value, found) = parse_pruned_with_records(body, &reads, &path).unwrap();
        assert_eq!(value, json!({"data": {"users": [{"id": "a"}, "b", null]}}));
        assert_eq!(found.map(|raws| raws.len()), Some(3));
        // A missing field, at either step: no records.
        for body in [r#"{"data":{"next":"x"}}"#, r#"{"meta":1}"#] {
            let (value, found) = parse_pruned_with_records(body, &reads, &path).unwrap();
            assert_eq!(value, parse_pruned(body, &reads).unwrap(), "{body}");
            assert_eq!(found.map(|raws| raws.len()), Some(0), "{body}");
        }
        // No array there: no records taken, the value as `parse_pruned` reads it.
        for body in [
            r#"{"data":{"users":{"id":"a"}}}"#,
            r#"{"data":null}"#,
            r#"[1]"#,
        ] {
            let (value, found) = parse_pruned_with_records(body, &reads, &path).unwrap();
            assert_eq!(value, parse_pruned(body, &reads).unwrap(), "{body}");
            assert!(found.is_none(), "{body}");
        }
        // The records read whole by the page (`$count(users)`): taken, and whole in the value.
        let mut whole_records = ReadSet::default();
        whole_records.merge_at(&path, &ReadSet::everything());
        let (value, found) = parse_pruned_with_records(body, &whole_records, &path).unwrap();
        assert_eq!(
            value,
            json!({"data": {"users": [{"id": "a", "n": {"m": 1}}, "b", null]}})
        );
        assert_eq!(found.map(|raws| raws.len()), Some(3));
        let one = r#"{"data":{"users":{"id":"a","n":[1]}}}"#;
        let (value, found) = parse_pruned_with_records(one, &whole_records, &path).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(one).unwrap());
        assert!(found.is_none());
        // Read whole on the way: nothing to take.
        let everything = ReadSet::everything();
        let (value, found) = parse_pruned_with_records(body, &everything, &path).unwrap();
        assert_eq!(value, serde_json::from_str::<Value>(body).unwrap());
        assert!(found.is_none());
        for broken in [
            r#"{"data":{"users":[{"id":}]}}"#,
            r#"{"data":{"users":[1]}} x"#,
        ] {
            assert!(
                parse_pruned_with_records(broken, &reads, &path).is_err(),
                "{broken}"
            );
        }
    }

    #[test]
    fn parses_each_record_into_a_doc_on_the_same_pass() {
        let path = ["data".to_owned(), "users".to_owned()];
        let record_reads = set(&["id.*", "n.m.*"]);
        let body = r#"{"data":{"users":[1],"next":"x"},"data":{"users":[{"id":"a","n":{"m":1},"z":[{}]}, "b" ,null],"next":"c","skip":[1]},"meta":2}"#;
        let mut reads = set(&["data.next.*"]);
        reads.merge_at(&path, &ReadSet::default());
        assert!(!reads_each_record(&reads, &path));
        let (value, docs) = parse_pruned_with_docs(body, &reads, &record_reads, &path).unwrap();
        assert_eq!(
            value,
            json!({"data": {"users": [null, null, null], "next": "c"}})
        );
        // Each record as parsing its own text gives it.
        let expected: Vec<Doc<'_>> = [r#"{"id":"a","n":{"m":1},"z":[{}]}"#, r#""b""#, "null"]
            .iter()
            .map(|text| crate::doc::parse_doc(text, &record_reads).unwrap())
            .collect();
        let page = docs.unwrap();
        assert_eq!(page.docs, expected);
        // The first record's first key is lent from the text, at its place there; the others
        // are not objects.
        let first = page.first_keys[0].unwrap();
        assert_eq!(first, "id");
        assert_eq!(
            first.as_ptr() as usize - body.as_ptr() as usize,
            body.find(r#"[{"id""#).unwrap() + 3
        );
        assert_eq!(&page.first_keys[1..], [None, None]);
        // A first key with an escape is not lent; an empty object has none.
        let escaped = r#"{"data":{"users":[{"\u0069d":"a"},{},{"x":1,"id":"b"}]}}"#;
        let (_, docs) = parse_pruned_with_docs(escaped, &reads, &record_reads, &path).unwrap();
        let page = docs.unwrap();
        assert_eq!(page.first_keys[..2], [None, None]);
        assert_eq!(page.first_keys[2], Some("x"));
        // Read whole, a record's keys are not looked at.
        let (_, docs) =
            parse_pruned_with_docs(body, &reads, &ReadSet::everything(), &path).unwrap();
        assert_eq!(docs.unwrap().first_keys, [None, None, None]);
        // A missing field: no records; no array there: none taken.
        let (_, docs) =
            parse_pruned_with_docs(r#"{"meta":1}"#, &reads, &record_reads, &path).unwrap();
        assert_eq!(docs.map(|page| page.docs.len()), Some(0));
        let (value, docs) =
            parse_pruned_with_docs(r#"{"data":null}"#, &reads, &record_reads, &path).unwrap();
        assert_eq!(value, json!({"data": null}));
        assert!(docs.is_none());
        // A page that reads something of each record (a keyset value, `$count`) is not read so.
        for page_reads in [
            set(&["data.users.id.*"]),
            set(&["data.users.*"]),
            set(&["data.*"]),
        ] {
            let mut reads = page_reads;
            reads.merge_at(&path, &ReadSet::default());
            assert!(reads_each_record(&reads, &path), "{:?}", reads.paths());
            let (value, docs) = parse_pruned_with_docs(body, &reads, &record_reads, &path).unwrap();
            assert_eq!(value, parse_pruned(body, &reads).unwrap());
            assert!(docs.is_none());
        }
        // A record the mapping cannot read (a number out of range where it reads one) fails the
        // page, as parsing its own text would.
        let out_of_range = r#"{"data":{"users":[{"id":1e400}]}}"#;
        assert!(parse_pruned_with_docs(out_of_range, &reads, &record_reads, &path).is_err());
    }

    #[test]
    fn finds_a_field_by_its_whole_name_only() {
        let names = [
            "",
            "a",
            "ab",
            "a\0",
            "lastName",
            "lastNames",
            "lastNameX",
            "lastNameXY",
            "lastNameZ",
            "lastUpdated",
            "lastLogin",
            "preferredLanguage",
            "preferredLanguages",
            "preferredLanguagesX",
            "preferredLocale",
            "preferredLocalf",
            "abcdefgh12345678",
            "abcdefgh1234567",
            "abcdefgh22345678",
            "abcdefgh12345679",
            "é",
        ];
        let reads = set(&names);
        for name in names {
            let read = reads.field_set(name).unwrap_or_else(|| panic!("{name:?}"));
            assert_eq!(read.symbol, crate::doc::symbol(name), "{name:?}");
        }
        for name in [
            "b",
            "a\0\0",
            "lastNam",
            "lastNameY",
            "preferredLanguagE",
            "preferredLanguagesY",
            "preferredLocal",
            "preferredLocalg",
            "abcdefgh02345678",
            "abcdefgh1234567X",
            "abcdefgh123456780",
            "e",
            "A",
        ] {
            assert!(reads.field_set(name).is_none(), "{name:?}");
        }
        // Enough names that slots are shared, and each still found by its own name.
        let many: Vec<String> = (0..300).map(|n| format!("f{n}")).collect();
        let many_reads = set(&many.iter().map(String::as_str).collect::<Vec<_>>());
        for name in &many {
            assert_eq!(
                many_reads.field_set(name).map(|read| read.symbol),
                Some(crate::doc::symbol(name))
            );
        }
        assert!(many_reads.field_set("f300").is_none());
        // A name's head is its first eight bytes, whatever its length.
        for len in 0..=20u8 {
            let name: Vec<u8> = (1..=len).collect();
            let mut padded = [0u8; 8];
            let kept = usize::from(len.min(8));
            padded[..kept].copy_from_slice(&name[..kept]);
            assert_eq!(head(&name), u64::from_le_bytes(padded), "{len}");
            // And its second word bytes eight to sixteen, zero when there are none.
            let mut padded = [0u8; 8];
            let beyond = usize::from(len.saturating_sub(8).min(8));
            padded[..beyond].copy_from_slice(name.get(8..8 + beyond).unwrap_or_default());
            assert_eq!(second(&name), u64::from_le_bytes(padded), "{len}");
        }
    }

    #[test]
    fn sets_merge_and_everything_wins() {
        let mut a = set(&["a.b", "c"]);
        a.merge(&set(&["a.d.*"]));
        assert_eq!(a.paths(), vec!["a.b", "a.d.*", "c"]);
        a.merge_at(&["c".to_owned()], &ReadSet::everything());
        assert_eq!(a.paths(), vec!["a.b", "a.d.*", "c.*"]);
        a.merge(&ReadSet::everything());
        assert!(a.reads_everything());
    }
}
