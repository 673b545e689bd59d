//! Unified records on their way to the caller, and the list answer's JSON envelope.
//!
//! A record stays a tree while the gateway still looks inside it (its own filters and sort,
//! `truto_exclude_fields`, `truto_key_by`, the normalized and raw formats). Otherwise it is
//! written once as the JSON text it is sent as: the mapping writes the unified fields straight
//! from its answer, and `remote_data` is the provider's own bytes for that record, copied rather
//! than parsed and re-encoded. A page's records are written one after another into one buffer
//! the records share ([`RecordText`]). Does not map, filter or shape anything itself.

use std::ops::Range;

use bytes::Bytes;
use serde_json::Value;

/// One unified record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Tree(Value),
    /// A JSON object, as it is sent.
    Text(RecordText),
}

/// A record's JSON text: its bytes in the text of its page's records. One buffer per page
/// rather than one per record: a buffer each was an allocation per record, sized for the
/// largest record, and a working set twice the answer's size. The page's records are written
/// one after another with a comma between them, so a run of them is already the text of a
/// JSON array's items and the answer sends it from this buffer ([`envelope_chunks`]).
#[derive(Debug, Clone)]
pub(crate) struct RecordText {
    page: Bytes,
    range: Range<usize>,
}

impl RecordText {
    /// One record's text on its own.
    #[cfg(test)]
    pub(crate) fn single(text: Vec<u8>) -> RecordText {
        let range = 0..text.len();
        RecordText {
            page: Bytes::from(text),
            range,
        }
    }

    /// The records of a page, written into `page` at `ranges`.
    pub(crate) fn split(page: Vec<u8>, ranges: Vec<Range<usize>>) -> Vec<RecordText> {
        let page = Bytes::from(page);
        ranges
            .into_iter()
            .map(|range| RecordText {
                page: page.clone(),
                range,
            })
            .collect()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.page[self.range.clone()]
    }

    /// Whether `next` follows this record in the same page buffer, after one comma.
    fn followed_by(&self, next: &RecordText) -> bool {
        // Same buffer: every page buffer holds at least one record, so two live ones never
        // start at the same address.
        self.page.as_ptr() == next.page.as_ptr()
            && next.range.start == self.range.end + 1
            && self.page[self.range.end] == b','
    }
}

impl PartialEq for RecordText {
    fn eq(&self, other: &RecordText) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Record {
    /// The record's unified `id` (a number as its digits), if it has one: read off the tree,
    /// or parsed out of the text (the rest of the record skipped).
    pub(crate) fn unified_id(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct WithId {
            id: Option<Value>,
        }
        let id = match self {
            Record::Tree(value) => value.get("id").cloned(),
            Record::Text(text) => serde_json::from_slice::<WithId>(text.as_bytes()).ok()?.id,
        };
        match id? {
            Value::String(text) if !text.is_empty() => Some(text),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        match self {
            // Writing a `Value` to a Vec cannot fail.
            Record::Tree(value) => drop(serde_json::to_writer(&mut *out, value)),
            Record::Text(text) => out.extend_from_slice(text.as_bytes()),
        }
    }

    /// About the bytes the record is sent as: exact for text, an upper-bound estimate for a tree
    /// (counted without writing it, so a budget check costs no allocation).
    pub(crate) fn sent_size(&self) -> usize {
        fn estimate(value: &Value) -> usize {
            match value {
                Value::Null | Value::Bool(_) => 5,
                Value::Number(_) => 24,
                // Quotes, and room for escapes.
                Value::String(text) => text.len() + 2 + text.len() / 8,
                Value::Array(items) => {
                    2 + items.iter().map(|item| estimate(item) + 1).sum::<usize>()
                }
                Value::Object(fields) => {
                    2 + fields
                        .iter()
                        .map(|(key, value)| key.len() + 4 + estimate(value))
                        .sum::<usize>()
                }
            }
        }
        match self {
            Record::Tree(value) => estimate(value),
            Record::Text(text) => text.as_bytes().len(),
        }
    }

    /// The record as a tree, for the steps that look inside it.
    pub(crate) fn into_tree(self) -> Value {
        match self {
            Record::Tree(value) => value,
            Record::Text(text) => serde_json::from_slice(text.as_bytes()).unwrap_or(Value::Null),
        }
    }
}

/// Runs of records this long or longer are sent from their page's buffer; shorter ones are
/// copied into the envelope's own text, where a chunk of their own would cost more than the copy.
const SHARED_RUN_BYTES: usize = 8 * 1024;

/// The list answer, `{"result": …, "next_cursor": …, "result_count": …, "prev_cursor": null}`
/// (and `"is_partial_response": true` after them when the records are `partial`), as the chunks
/// it is sent in: the envelope's own text, and between its pieces each long run of records that
/// follow one another in their page's buffer, shared rather than copied (on the 100-user Okta
/// page, that was a copy of about 140 KB per answer).
pub(crate) fn envelope_chunks(
    result: &[Record],
    keyed: Option<&Value>,
    next_cursor: Option<&str>,
    result_count: usize,
    partial: bool,
) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"result\":");
    match keyed {
        Some(keyed) => drop(serde_json::to_writer(&mut out, keyed)),
        None => {
            out.push(b'[');
            let mut index = 0;
            while index < result.len() {
                if index > 0 {
                    out.push(b',');
                }
                let run = text_run(&result[index..]);
                match run {
                    Some((page, range, count)) if range.len() >= SHARED_RUN_BYTES => {
                        chunks.push(Bytes::from(std::mem::take(&mut out)));
                        chunks.push(page.slice(range));
                        index += count;
                    }
                    Some((page, range, count)) => {
                        out.extend_from_slice(&page[range]);
                        index += count;
                    }
                    None => {
                        result[index].write(&mut out);
                        index += 1;
                    }
                }
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"next_cursor\":");
    drop(serde_json::to_writer(&mut out, &next_cursor));
    out.extend_from_slice(
        format!(",\"result_count\":{result_count},\"prev_cursor\":null").as_bytes(),
    );
    if partial {
        out.extend_from_slice(b",\"is_partial_response\":true");
    }
    out.push(b'}');
    chunks.push(Bytes::from(out));
    chunks
}

/// The text records at the start of `records` that follow one another in one page buffer: the
/// buffer, their span in it (commas between them included) and how many they are.
fn text_run(records: &[Record]) -> Option<(&Bytes, Range<usize>, usize)> {
    let Some(Record::Text(first)) = records.first() else {
        return None;
    };
    let mut last = first;
    let mut count = 1;
    for record in &records[1..] {
        match record {
            Record::Text(next) if last.followed_by(next) => {
                last = next;
                count += 1;
            }
            _ => break,
        }
    }
    Some((&first.page, first.range.start..last.range.end, count))
}

/// Adds `"remote_data":…` as the last field of the JSON object `out` holds from `start` on.
pub(crate) fn append_remote_data(out: &mut Vec<u8>, start: usize, remote: RemoteData<'_>) {
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    if out.len() - start > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"remote_data\":");
    match remote {
        RemoteData::Raw { text, compact } if compact => out.extend_from_slice(text.as_bytes()),
        RemoteData::Raw { text, .. } => write_compacted(text.as_bytes(), out),
        RemoteData::Tree(value) => drop(serde_json::to_writer(&mut *out, value)),
    }
    out.push(b'}');
}

/// Where a record's `remote_data` comes from.
pub(crate) enum RemoteData<'a> {
    /// The provider's bytes for the record; `compact` when they hold no line break.
    Raw {
        text: &'a str,
        compact: bool,
    },
    Tree(&'a Value),
}

/// JSON text without the whitespace between its tokens (line breaks would split an NDJSON
/// line; the rest is dropped with them so pretty-printed providers come out compact).
fn write_compacted(text: &[u8], out: &mut Vec<u8>) {
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text {
        if in_string {
            out.push(byte);
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(byte);
            in_string = byte == b'"';
        }
    }
}

/// Whether `body` holds a line break anywhere.
pub(crate) fn has_line_break(body: &[u8]) -> bool {
    // One pass for both bytes; the standard library's `contains` made two word-at-a-time ones.
    memchr::memchr2(b'\n', b'\r', body).is_some()
}

/// The provider's bytes of each record in the array at `path` (field names from the body's
/// top), in order; `None` when the path meets anything but objects on the way or ends at
/// something other than an array (or `null`: no records). The body has been parsed as JSON
/// already (so it is valid), and this finds them by its structure alone: strings are skipped
/// to their closing quote (a SIMD search for `"` and `\\`), containers by their brackets, and
/// nothing is built or checked. The answer is a parse's (the tests' `raw_records`) for every
/// valid body; on an invalid one it is unspecified (`None` or some texts), never a panic.
pub(crate) fn record_texts<'b>(body: &'b str, path: &[String]) -> Option<Vec<&'b str>> {
    let bytes = body.as_bytes();
    let mut at = skip_space(bytes, 0);
    for segment in path {
        if bytes.get(at) != Some(&b'{') {
            // An array on the way (or a scalar) is not a records path.
            return None;
        }
        // A missing field means no records; a repeated one counts last.
        let mut found = None;
        at = skip_space(bytes, at + 1);
        while bytes.get(at) == Some(&b'"') {
            let end = skip_string(bytes, at)?;
            let key = &body[at..end];
            let matches = match key.contains('\\') {
                false => &key[1..key.len() - 1] == segment.as_str(),
                true => serde_json::from_str::<String>(key).ok()? == *segment,
            };
            at = skip_space(bytes, end);
            if bytes.get(at) != Some(&b':') {
                return None;
            }
            let value = skip_space(bytes, at + 1);
            if matches {
                found = Some(value);
            }
            at = skip_space(bytes, skip_value(bytes, value)?);
            if bytes.get(at) == Some(&b',') {
                at = skip_space(bytes, at + 1);
            }
        }
        match found {
            Some(value) => at = value,
            None => return Some(Vec::new()),
        }
    }
    match bytes.get(at) {
        Some(b'[') => {}
        Some(b'n') => return Some(Vec::new()), // null: no records
        _ => return None,
    }
    let mut records = Vec::new();
    at = skip_space(bytes, at + 1);
    while bytes.get(at).is_some_and(|&byte| byte != b']') {
        let end = skip_value(bytes, at)?;
        records.push(body.get(at..end)?);
        at = skip_space(bytes, end);
        if bytes.get(at) == Some(&b',') {
            at = skip_space(bytes, at + 1);
        }
    }
    Some(records)
}

/// [`record_texts`] without scanning the body: from where the page's parse found each record's
/// first key (`first_keys`, slices of `body`; see `unigate_mapping::reads::PageDocs`). A record
/// starts at the `{` before its first key and ends at the `}` before the `,` before the next
/// record's start; only the last record is scanned to its end. `None` when a record has no
/// first key in the body or the bytes around one are not as valid JSON has them (the caller
/// then scans with [`record_texts`]).
pub(crate) fn record_texts_from_keys<'b>(
    body: &'b str,
    first_keys: &[Option<&str>],
) -> Option<Vec<&'b str>> {
    let bytes = body.as_bytes();
    let mut starts = Vec::with_capacity(first_keys.len());
    for key in first_keys {
        let key = (*key)?;
        let quote = (key.as_ptr() as usize)
            .checked_sub(bytes.as_ptr() as usize)?
            .checked_sub(1)?;
        let close = quote + 1 + key.len();
        if bytes.get(quote) != Some(&b'"') || bytes.get(close) != Some(&b'"') {
            return None;
        }
        let open = last_non_space(bytes, quote)?;
        if bytes[open] != b'{' || starts.last().is_some_and(|&last| last >= open) {
            return None;
        }
        starts.push(open);
    }
    let mut texts = Vec::with_capacity(starts.len());
    for (index, &start) in starts.iter().enumerate() {
        let end = match starts.get(index + 1) {
            Some(&next) => {
                let comma = last_non_space(bytes, next)?;
                let close = last_non_space(bytes, comma)?;
                if bytes[comma] != b',' || bytes[close] != b'}' || close <= start {
                    return None;
                }
                close + 1
            }
            None => skip_value(bytes, start)?,
        };
        texts.push(body.get(start..end)?);
    }
    Some(texts)
}

/// The position of the last byte before `at` that is not JSON whitespace.
fn last_non_space(bytes: &[u8], at: usize) -> Option<usize> {
    bytes[..at]
        .iter()
        .rposition(|byte| !matches!(byte, b' ' | b'\n' | b'\r' | b'\t'))
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|byte| matches!(byte, b' ' | b'\n' | b'\r' | b'\t'))
    {
        at += 1;
    }
    at
}

/// The end (one past the closing quote) of the string opening at `at`.
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    let mut at = at + 1;
    loop {
        at = next_quote_or_backslash(bytes, at)?;
        match bytes[at] {
            b'"' => return Some(at + 1),
            _ => at += 2, // an escape: the next byte is never the closing quote
        }
    }
}

/// The position of the first `"` or `\\` at or after `at`. Eight bytes at a time, in the
/// register: most strings in a record are a few words long, too short to repay a call into a
/// vectorized search for each.
fn next_quote_or_backslash(bytes: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // A byte that is zero in `word` sets its high bit; the lowest set bit is the first such byte
    // (higher ones may be false positives, only after a true one).
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let found = zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&byte| byte == b'"' || byte == b'\\')
        .map(|offset| at + offset)
}

/// The end of the value starting at `at`.
fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = at;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = skip_string(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            // A number, `true`, `false` or `null`: up to the next delimiter.
            let len = bytes[at..]
                .iter()
                .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'))
                .unwrap_or(bytes.len() - at);
            Some(at + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use unigate_mapping::reads::{ReadSet, parse_pruned_with_docs};

    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use serde_json::value::RawValue;

    /// The provider's bytes of each record in the array at `path` (field names from the body's
    /// top), in order; `None` when the path meets anything but objects on the way or ends at
    /// something other than an array (or `null`: no records), or the body is not JSON.
    fn raw_records<'b>(body: &'b str, path: &[String]) -> Option<Vec<&'b RawValue>> {
        let mut deserializer = serde_json::Deserializer::from_str(body);
        let found = RecordsAt { path }.deserialize(&mut deserializer).ok()?;
        deserializer.end().ok()?;
        found
    }

    /// Seeks the array at `path`, skipping everything else without building it.
    struct RecordsAt<'p> {
        path: &'p [String],
    }

    impl<'de> DeserializeSeed<'de> for RecordsAt<'_> {
        type Value = Option<Vec<&'de RawValue>>;

        fn deserialize<D: de::Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for RecordsAt<'_> {
        type Value = Option<Vec<&'de RawValue>>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("a JSON value")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let Some((segment, rest)) = self.path.split_first() else {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(None); // one record, not an array
            };
            // A missing field means no records; a repeated one counts last, as in the parsed body.
            let mut found = Some(Vec::new());
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == segment.as_str() {
                    found = map.next_value_seed(RecordsAt { path: rest })?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            if !self.path.is_empty() {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(None); // an array on the way flattens: the engine's business
            }
            let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(16));
            while let Some(record) = seq.next_element::<&'de RawValue>()? {
                records.push(record);
            }
            Ok(Some(records))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Some(Vec::new()))
        }

        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    /// The records' texts, which the scan over a parsed body finds as the parse does.
    fn texts(body: &str, path: &[&str]) -> Option<Vec<String>> {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let parsed = raw_records(body, &path)
            .map(|records| records.iter().map(|r| r.get().to_owned()).collect());
        if serde_json::from_str::<serde_json::Value>(body).is_ok() {
            let scanned = record_texts(body, &path)
                .map(|records| records.iter().map(|r| (*r).to_owned()).collect());
            assert_eq!(scanned, parsed, "{body} at {path:?}");
            if let Some(keyed) = keyed(body, &path) {
                assert_eq!(Some(keyed), parsed, "{body} at {path:?}");
            }
        }
        parsed
    }

    /// The records' texts found from their first keys as the page's parse gives them; `None`
    /// where that cannot tell (then the page scans).
    fn keyed(body: &str, path: &[String]) -> Option<Vec<String>> {
        let mut reads = ReadSet::default();
        reads.merge_at(path, &ReadSet::default());
        let (_, page) = parse_pruned_with_docs(body, &reads, &ReadSet::default(), path).ok()?;
        let texts = record_texts_from_keys(body, &page?.first_keys)?;
        Some(texts.into_iter().map(str::to_owned).collect())
    }

    #[test]
    fn finds_the_records_bytes_from_their_first_keys_as_the_scan_does() {
        let path = |path: &[&str]| path.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (body, records) in [
            (
                " [ {\"id\": 1} ,\r\n\t{ \"id\":\"2\" , \"x\": {\"y\": [\"}\"]} } ]",
                &["{\"id\": 1}", "{ \"id\":\"2\" , \"x\": {\"y\": [\"}\"]} }"][..],
            ),
            ("[{\"a\":1}]", &["{\"a\":1}"][..]),
            ("[]", &[][..]),
        ] {
            assert_eq!(texts(body, &[]), Some(path(records)));
            assert_eq!(keyed(body, &[]), Some(path(records)), "{body}");
        }
        let body = r#"{"v": [{"a":1}], "data": {"users": [{"b": "]"}, {"c": [{"d": 1}]}]}}"#;
        assert_eq!(
            keyed(body, &path(&["data", "users"])),
            Some(path(&[r#"{"b": "]"}"#, r#"{"c": [{"d": 1}]}"#]))
        );
        // A record without a first key in the text (not an object, empty, an escaped key):
        // the page scans instead.
        for body in [
            r#"[{"a":1}, 2]"#,
            r#"[{"a":1}, {}]"#,
            r#"[{"\u0061":1}, {"b":2}]"#,
        ] {
            assert!(texts(body, &[]).is_some());
            assert_eq!(keyed(body, &[]), None, "{body}");
        }
        // Keys from elsewhere than the body are not taken for places in it.
        assert_eq!(record_texts_from_keys("[{\"a\":1}]", &[Some("a")]), None);
        let body = r#"[{"a":1},{"b":2}]"#;
        assert_eq!(
            record_texts_from_keys(body, &[Some(&body[11..12]), Some(&body[3..4])]),
            None
        );
    }

    #[test]
    fn finds_the_records_bytes_where_the_parsed_body_has_them() {
        assert_eq!(
            texts(r#"[{"id": 1}, {"id":"2" }]"#, &[]),
            Some(vec![r#"{"id": 1}"#.to_owned(), r#"{"id":"2" }"#.to_owned()])
        );
        let body = r#"{"meta": {"next": [1, {"x": null}]}, "data": {"users": [{"a": "b\"c"}]}}"#;
        assert_eq!(
            texts(body, &["data", "users"]),
            Some(vec![r#"{"a": "b\"c"}"#.to_owned()])
        );
        // A repeated key counts last, as serde_json's map keeps it.
        assert_eq!(
            texts(r#"{"v": [{"a":1}], "v": [{"b":2}]}"#, &["v"]),
            Some(vec![r#"{"b":2}"#.to_owned()])
        );
        assert_eq!(texts(r#"{"v": null}"#, &["v"]), Some(vec![]));
        assert_eq!(texts(r#"{"w": []}"#, &["v"]), Some(vec![]));
        assert_eq!(texts(r#"{"v": {"id": 1}}"#, &["v"]), None);
        assert_eq!(texts(r#"[{"v": []}]"#, &["v"]), None);
        assert_eq!(texts(r#"{"v": []} x"#, &["v"]), None);
    }

    #[test]
    fn the_scan_finds_what_the_parse_finds_in_strings_keys_and_spacing() {
        let cases: &[(&str, &[&str])] = &[
            // Brackets, quotes and backslashes inside strings, an escaped key, a key that
            // only matches once unescaped, and the last of a repeated key.
            (
                r#"{"d\u0061ta": [ {"a": "]}\"[{", "b": "\\"} , [1, "x\\\\"], "s" ,-1.5e3, true, null ]}"#,
                &["data"],
            ),
            (r#"{"data": "x", "data": [1,2]}"#, &["data"]),
            (
                r#"{"a": {"b": [{"c": []}, {}]}, "a": {"b": null}}"#,
                &["a", "b"],
            ),
            (r#"{"a": {"b": [{"c": []}, {}]}}"#, &["a", "b"]),
            (" \r\n\t[ \r\n{ \"id\" : 1 }\r\n, { } ]\n", &[]),
            (r#"{"a": [[1], [2]]}"#, &["a"]),
            (r#"{"a": 1, "b": {"c": [true]}}"#, &["b", "c"]),
            (r#"{"a": 1}"#, &["a"]),
            (r#"{"a": "s"}"#, &["a"]),
            (r#"{"a": [], "b": [1]}"#, &["b", "x"]),
            (r#"[]"#, &[]),
            (r#"{}"#, &[]),
            (r#""text""#, &["a"]),
        ];
        for (body, path) in cases {
            texts(body, path); // asserts that the two agree
        }
        assert_eq!(
            texts(r#"{"d\u0061ta": [1, "]"]}"#, &["data"]),
            Some(vec!["1".to_owned(), r#""]""#.to_owned()])
        );
        // Not JSON: no panic, whatever the answer.
        for broken in [
            r#"{"a": ["#,
            r#"{"a" [1]}"#,
            r#"{"a": ["\"]}"#,
            "[1,",
            "{",
            "\"",
            "",
        ] {
            let _ = record_texts(broken, &["a".to_owned()]);
            let _ = record_texts(broken, &[]);
        }
    }

    #[test]
    fn finds_the_first_quote_or_backslash_as_a_byte_loop_does() {
        let plain = |bytes: &[u8], at: usize| {
            (at..bytes.len()).find(|&i| bytes[i] == b'"' || bytes[i] == b'\\')
        };
        for len in 0..20 {
            for first in 0..len {
                for second in first..len {
                    for (a, b) in [
                        (b'"', b'\\'),
                        (b'\\', b'"'),
                        (b'"', b'"'),
                        (0x22 ^ 0x80, b'"'),
                    ] {
                        let mut text = vec![b'a'; len];
                        text[second] = b;
                        text[first] = a;
                        for at in 0..=len {
                            assert_eq!(
                                super::next_quote_or_backslash(&text, at),
                                plain(&text, at),
                                "{text:?} from {at}"
                            );
                        }
                    }
                }
            }
        }
        assert_eq!(super::next_quote_or_backslash(b"abc", 5), None);
    }

    #[test]
    fn a_line_break_is_either_byte_anywhere() {
        assert!(!super::has_line_break(br#"{"a":"b c"}"#));
        assert!(!super::has_line_break(b""));
        for at in [0, 1, 40, 99] {
            for byte in [b'\n', b'\r'] {
                let mut body = vec![b' '; 100];
                body[at] = byte;
                assert!(super::has_line_break(&body), "{byte} at {at}");
            }
        }
    }

    #[test]
    fn compacts_pretty_records_without_touching_strings() {
        let pretty =
            "{\n  \"name\": \"Ada  Lovelace\",\n  \"q\": \"a \\\" b\\\\\",\n  \"n\": [ 1, 2 ]\n}";
        let mut out = b"{\"id\":1}".to_vec();
        append_remote_data(
            &mut out,
            0,
            RemoteData::Raw {
                text: pretty,
                compact: !has_line_break(pretty.as_bytes()),
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"id":1,"remote_data":{"name":"Ada  Lovelace","q":"a \" b\\","n":[1,2]}}"#
        );
        let mut empty = b"{}".to_vec();
        append_remote_data(&mut empty, 0, RemoteData::Tree(&json!({"a": 1})));
        assert_eq!(empty, br#"{"remote_data":{"a":1}}"#);
        // Within a page's text: the object is the one that starts at `start`.
        let mut page = b"{\"id\":1}{}".to_vec();
        append_remote_data(&mut page, 8, RemoteData::Tree(&json!(2)));
        assert_eq!(page, br#"{"id":1}{"remote_data":2}"#);
    }

    #[test]
    fn writes_the_envelope_in_trutos_key_order() {
        let records = [
            Record::Text(RecordText::single(br#"{"id":"1"}"#.to_vec())),
            Record::Tree(json!({"id": "2"})),
        ];
        let text = envelope_chunks(&records, None, Some("c1"), 2, false).concat();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"result":[{"id":"1"},{"id":"2"}],"next_cursor":"c1","result_count":2,"prev_cursor":null}"#
        );
        let keyed = json!({"1": {"id": "1"}});
        let text = envelope_chunks(&[], Some(&keyed), None, 1, true).concat();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"result":{"1":{"id":"1"}},"next_cursor":null,"result_count":1,"prev_cursor":null,"is_partial_response":true}"#
        );
    }

    /// A page's records as `map_records` writes them: one after another, a comma between.
    fn page_of(records: &[String]) -> (Vec<RecordText>, Bytes) {
        let mut text = Vec::new();
        let mut ranges = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if index > 0 {
                text.push(b',');
            }
            let start = text.len();
            text.extend_from_slice(record.as_bytes());
            ranges.push(start..text.len());
        }
        let records = RecordText::split(text, ranges);
        let page = records[0].page.clone();
        (records, page)
    }

    #[test]
    fn sends_long_runs_of_a_pages_records_from_the_page_itself() {
        let long = |id: usize| format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(3000));
        let (first, first_page) = page_of(&[long(1), long(2), long(3)]);
        let (second, _) = page_of(&[r#"{"id":"4"}"#.to_owned(), r#"{"id":"5"}"#.to_owned()]);
        let mut records: Vec<Record> = first.into_iter().map(Record::Text).collect();
        records.extend(second.into_iter().map(Record::Text));
        records.push(Record::Tree(json!({"id": "6"})));
        let chunks = envelope_chunks(&records, None, None, 6, false);
        let expected = format!(
            r#"{{"result":[{},{},{},{{"id":"4"}},{{"id":"5"}},{{"id":"6"}}],"next_cursor":null,"result_count":6,"prev_cursor":null}}"#,
            long(1),
            long(2),
            long(3)
        );
        assert_eq!(String::from_utf8(chunks.concat()).unwrap(), expected);
        // The first page's three records are one chunk, the page's own bytes; the second
        // page's short run and the tree are copied into the envelope's closing chunk.
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        assert_eq!(chunks[0], &b"{\"result\":["[..]);
        assert_eq!(chunks[1].as_ptr(), first_page.as_ptr());
        assert_eq!(chunks[1].len(), first_page.len());
        // Records out of their page's order are copied, in the order given.
        records.swap(0, 1);
        let text =
            String::from_utf8(envelope_chunks(&records, None, None, 6, false).concat()).unwrap();
        assert!(text.starts_with(&format!(
            r#"{{"result":[{},{},{},"#,
            long(2),
            long(1),
            long(3)
        )));
    }
}
