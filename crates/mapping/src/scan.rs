//! The page scanner: a list page read into [`Doc`]s by a hand-written JSON scanner, for the
//! common shape only, with `serde_json` as the authority on everything else.
//!
//! [`crate::reads::parse_pruned_with_docs`] tries [`scan_page_docs`] first. It walks the body
//! once: objects on the way to the records, then each record's object, keeping the fields the
//! read sets name and checking the syntax of everything it skips (strings eight bytes at a
//! time, numbers by the JSON grammar, literals, brackets). Plain strings and literals it keeps itself;
//! any other kept value (a number, an array, a string with escapes, a value read whole) is
//! found to its end and handed to the same `serde_json` visitors the page parse uses, so each
//! is read exactly as before. The scanner never reports an error: on anything it does not
//! take (a body that is not JSON, a key with escapes, a repeated key on the records path, no
//! array there, nesting deeper than [`MAX_DEPTH`]) it answers `None` and the caller parses the
//! page with `serde_json`, which gives the answer or the error as it always did. A record's
//! keys are guessed from the records before it ([`Layout`]) and checked byte for byte, so a
//! page whose records share their keys' order pays a comparison for each key, not a read and
//! a lookup. Whatever it answers is the serde parse's answer for that body (the tests hold it
//! to that on fixtures and on mutated bodies). Having walked every byte, it also tells whether
//! the body holds a line break ([`PageDocs::line_break`]: whether the records' bytes can be
//! copied as they are), so the caller does not look through the body again. It owns no
//! format: the read sets and [`Doc`] are `reads`' and `doc`'s.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::doc::{Doc, Field, Kept, parse_doc};
use crate::reads::{FieldRead, PageDocs, ReadSet, parse_pruned};

/// Containers open at once beyond which the page goes to `serde_json`. Well within its own
/// limit (127), so a value handed to it whole never meets that limit where the page would not.
const MAX_DEPTH: u32 = 64;

/// The page's value (each record a null, as the serde page parse gives it) and its records,
/// or `None` where the scanner leaves the page to `serde_json`. See the module note.
pub(crate) fn scan_page_docs<'a, 'r>(
    text: &'a str,
    reads: &'r ReadSet,
    record_reads: &'r ReadSet,
    records_path: &[String],
) -> Option<(Value, PageDocs<'a>)> {
    let mut scanner = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
        line_break: false,
        layouts: Vec::new(),
    };
    let (value, mut docs) = scanner.page(reads, records_path, record_reads)?;
    scanner.space();
    docs.line_break = Some(scanner.line_break);
    (scanner.at == scanner.bytes.len()).then_some((value, docs))
}

struct Scanner<'a, 'r> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// Containers open where the scanner is.
    depth: u32,
    /// A line break was met. Only [`Scanner::space`] can meet one: every other byte the scanner
    /// takes is in a token, and a string holding a raw control character is refused.
    line_break: bool,
    /// The keys met in the objects of each read set so far ([`Layout`]), for the first
    /// [`MAX_LAYOUTS`] sets met.
    layouts: Vec<Layout<'a, 'r>>,
}

/// Read sets whose objects' keys are remembered ([`Layout`]): a record's own and those of the
/// objects inside it that the mapping walks into, which are few.
const MAX_LAYOUTS: usize = 8;

/// Keys remembered for one read set's objects: past that many, a key is read as it comes.
const MAX_KNOWN_KEYS: usize = 64;

/// The keys the objects of one read set have had, each with the key that followed it the last
/// time it was met, and the key that opened the last such object. The records of a page mostly
/// share their keys and their order, so the scanner guesses each key from the one before it
/// and checks the guess byte for byte: when the bytes are the key's and a closing quote follows,
/// the string is exactly that key (a remembered key has no quote, backslash or control
/// character), and the field it names in the set is the one remembered. That costs a
/// comparison instead of a search for the string's end and a lookup in the set. A wrong guess
/// costs the comparison, then the key is read and looked up as it always was.
struct Layout<'a, 'r> {
    set: &'r ReadSet,
    keys: Vec<KnownKey<'a, 'r>>,
    /// The key that opened the last object, as an index in `keys`.
    first: Option<u32>,
    /// By a field's index in the set, its key's index in `keys`.
    by_read: Vec<Option<u32>>,
}

#[derive(Clone, Copy)]
struct KnownKey<'a, 'r> {
    text: &'a str,
    /// What `set.field_set(text)` answers.
    read: Option<FieldRead<'r>>,
    /// The key that followed this one the last time, as an index in `keys`.
    next: Option<u32>,
    /// For a key of fifteen bytes or fewer: the key and its closing quote as two
    /// little-endian words, and the bits of them that count, compared with two loads instead
    /// of a call to `memcmp`.
    words: Option<([u64; 2], [u64; 2])>,
}

impl<'a, 'r> KnownKey<'a, 'r> {
    fn new(text: &'a str, read: Option<FieldRead<'r>>) -> Self {
        let len = text.len();
        let words = (len < 16).then(|| {
            let (mut bytes, mut mask) = ([0u8; 16], [0u8; 16]);
            bytes[..len].copy_from_slice(text.as_bytes());
            bytes[len] = b'"';
            mask[..=len].fill(0xff);
            let word = |bytes: &[u8; 16], half: usize| {
                u64::from_le_bytes(bytes[half * 8..half * 8 + 8].try_into().unwrap_or([0; 8]))
            };
            (
                [word(&bytes, 0), word(&bytes, 1)],
                [word(&mask, 0), word(&mask, 1)],
            )
        });
        KnownKey {
            text,
            read,
            next: None,
            words,
        }
    }

    /// Whether `bytes` at `at` are this key and its closing quote.
    #[inline(always)]
    fn is_at(&self, bytes: &[u8], at: usize) -> bool {
        if let Some((words, masks)) = &self.words
            && let Some(chunk) = bytes.get(at..at + 16)
        {
            let word = |half: usize| {
                u64::from_le_bytes(chunk[half * 8..half * 8 + 8].try_into().unwrap_or([0; 8]))
            };
            return word(0) & masks[0] == words[0] && word(1) & masks[1] == words[1];
        }
        let end = at + self.text.len();
        bytes.get(at..end) == Some(self.text.as_bytes()) && bytes.get(end) == Some(&b'"')
    }
}

/// Where a key stands among the keys of its object's [`Layout`].
#[derive(Clone, Copy)]
enum KeyPlace {
    /// The object's first key: guessed from the layout's `first`.
    First,
    /// After the remembered key at this index: guessed from its `next`.
    After(u32),
    /// After a key not remembered (or no layout): not guessed.
    Unknown,
}

impl<'a, 'r> Scanner<'a, 'r> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Whitespace as JSON (and `serde_json`) has it, noting a line break.
    fn space(&mut self) {
        while let Some(byte @ (b' ' | b'\n' | b'\t' | b'\r')) = self.peek() {
            self.line_break |= matches!(byte, b'\n' | b'\r');
            self.at += 1;
        }
    }

    /// Takes `byte`, after whitespace (looked for only when `byte` is not next: most bodies
    /// are compact).
    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Option<()> {
        if self.peek() != Some(byte) {
            self.space();
            if self.peek()? != byte {
                return None;
            }
        }
        self.at += 1;
        Some(())
    }

    fn open(&mut self, bracket: u8) -> Option<()> {
        self.expect(bracket)?;
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// After a member or an item: `true` for a comma (another follows), `false` for `close`.
    fn next_or_close(&mut self, close: u8) -> Option<bool> {
        self.space();
        match self.peek()? {
            b',' => {
                self.at += 1;
                Some(true)
            }
            byte if byte == close => {
                self.at += 1;
                self.depth -= 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// Just after `{` or `[`: `true` when the container is empty (and then closed).
    fn empty(&mut self, close: u8) -> bool {
        self.space();
        if self.peek() == Some(close) {
            self.at += 1;
            self.depth -= 1;
            return true;
        }
        false
    }

    /// A string from its opening quote: the text between the quotes, and whether it has
    /// escapes (then the text is as written, escapes and all).
    #[inline(always)]
    fn string(&mut self) -> Option<(&'a str, bool)> {
        self.expect(b'"')?;
        let start = self.at;
        let escaped = self.string_rest()?;
        Some((self.text.get(start..self.at - 1)?, escaped))
    }

    /// Moves past the rest of a string whose opening quote is taken, checking it; whether it
    /// has escapes.
    #[inline(always)]
    fn string_rest(&mut self) -> Option<bool> {
        let mut escaped = false;
        loop {
            let at = find_special(self.bytes, self.at)?;
            match self.bytes[at] {
                b'"' => {
                    self.at = at + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.at = at + 1 + escape_len(self.bytes, at + 1)?;
                }
                _ => return None, // a control character
            }
        }
    }

    /// A key without escapes (the serde page parse lends only those), then its colon. Inlined
    /// where it is used, like [`Scanner::member_key`]: a call's own cost was a tenth of a key's.
    #[inline(always)]
    fn key(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        self.key_rest(self.at)
    }

    /// [`Scanner::key`] from `start`, just after its opening quote.
    #[inline(always)]
    fn key_rest(&mut self, start: usize) -> Option<&'a str> {
        if self.string_rest()? {
            return None; // escaped
        }
        let key = self.text.get(start..self.at - 1)?;
        self.expect(b':')?;
        Some(key)
    }

    /// Moves past one value, checking its syntax. One loop over the value's tokens, with the
    /// containers it is inside held as bits (set for an object): a call per nested value cost
    /// more than most tokens' own checks.
    fn skip(&mut self) -> Option<()> {
        let base = self.depth;
        // Bit `n`: the container `n + 1` levels below where the value started is an object.
        let mut objects = 0u64;
        loop {
            // A value starts here.
            self.space();
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    self.string_rest()?;
                }
                bracket @ (b'{' | b'[') => {
                    self.open(bracket)?;
                    let object = bracket == b'{';
                    if !self.empty(if object { b'}' } else { b']' }) {
                        // `open` keeps the depth within MAX_DEPTH (64): the bit is in the word.
                        let bit = 1u64 << (self.depth - base - 1);
                        if object {
                            objects |= bit;
                            self.member_key()?;
                        } else {
                            objects &= !bit;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // A value ended: a comma and the next one (its key first, in an object), or the end
            // of the container, which is a value that ended in turn.
            loop {
                if self.depth == base {
                    return Some(());
                }
                let object = objects >> (self.depth - base - 1) & 1 == 1;
                if self.next_or_close(if object { b'}' } else { b']' })? {
                    if object {
                        self.member_key()?;
                    }
                    break;
                }
            }
        }
    }

    /// A member's key and its colon, checked and not read.
    #[inline(always)]
    fn member_key(&mut self) -> Option<()> {
        self.expect(b'"')?;
        self.string_rest()?;
        self.expect(b':')
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.bytes[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, its value not read.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }

    /// The text of the value that starts here, moved past.
    fn value_text(&mut self) -> Option<&'a str> {
        self.space();
        let start = self.at;
        self.skip()?;
        self.text.get(start..self.at)
    }

    /// The page's value on the way to its records (`path`: what is left of the records path).
    fn page(
        &mut self,
        set: &'r ReadSet,
        path: &[String],
        record_reads: &'r ReadSet,
    ) -> Option<(Value, PageDocs<'a>)> {
        let Some((segment, rest)) = path.split_first() else {
            let docs = self.records(record_reads)?;
            return Some((Value::Array(vec![Value::Null; docs.docs.len()]), docs));
        };
        self.open(b'{')?;
        let mut out = Map::new();
        let mut records = None;
        if !self.empty(b'}') {
            loop {
                let key = self.key()?;
                match set.field_set(key).map(|read| read.set) {
                    Some(below) if key == segment.as_str() => {
                        if records.is_some() {
                            return None; // repeated: serde's parse says which counts
                        }
                        let (value, docs) = self.page(below, rest, record_reads)?;
                        records = Some(docs);
                        out.insert(key.to_owned(), value);
                    }
                    Some(below) => {
                        let value = parse_pruned(self.value_text()?, below).ok()?;
                        out.insert(key.to_owned(), value);
                    }
                    None => self.skip()?,
                }
                if !self.next_or_close(b'}')? {
                    break;
                }
            }
        }
        Some((Value::Object(out), records?))
    }

    /// The records array: each record parsed as the serde page parse's `RecordSeed` does.
    fn records(&mut self, reads: &'r ReadSet) -> Option<PageDocs<'a>> {
        self.open(b'[')?;
        let mut page = PageDocs::default();
        if self.empty(b']') {
            return Some(page);
        }
        loop {
            self.space();
            let (doc, first_key) = match self.peek()? {
                b'{' if !reads.reads_everything() => {
                    let mut first_key = None;
                    (self.object(reads, &mut first_key)?, first_key)
                }
                _ => (self.doc(reads)?, None),
            };
            page.docs.push(doc);
            page.first_keys.push(first_key);
            if !self.next_or_close(b']')? {
                return Some(page);
            }
        }
    }

    /// One value with what `reads` reads of it, as `doc::Pruned` parses it. A string without
    /// escapes, the value most kept fields hold, is taken where the call is; the rest in
    /// [`Scanner::other_doc`].
    #[inline(always)]
    fn doc(&mut self, reads: &'r ReadSet) -> Option<Doc<'a>> {
        if self.peek() == Some(b'"') {
            return self.string_doc(reads);
        }
        self.other_doc(reads)
    }

    /// A string value from its opening quote: lent from the text when it has no escapes, else
    /// parsed by `serde_json`.
    #[inline(always)]
    fn string_doc(&mut self, reads: &'r ReadSet) -> Option<Doc<'a>> {
        let start = self.at;
        match self.string()? {
            (text, false) => Some(Doc::Str(Cow::Borrowed(text))),
            (_, true) => parse_doc(self.text.get(start..self.at)?, reads).ok(),
        }
    }

    fn other_doc(&mut self, reads: &'r ReadSet) -> Option<Doc<'a>> {
        self.space();
        match self.peek()? {
            b'{' if !reads.reads_everything() => self.object(reads, &mut None),
            b'"' => self.string_doc(reads),
            b't' => self.literal(b"true").map(|()| Doc::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Doc::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Doc::Null),
            // Numbers, arrays and values read whole: as `serde_json` reads them.
            _ => parse_doc(self.value_text()?, reads).ok(),
        }
    }

    /// An object's fields that `reads` names; `first_key` gets its first key.
    fn object(&mut self, reads: &'r ReadSet, first_key: &mut Option<&'a str>) -> Option<Doc<'a>> {
        self.open(b'{')?;
        let mut kept = Kept::for_set(reads);
        if self.empty(b'}') {
            return Some(kept.into_doc());
        }
        let layout = self.layout(reads);
        let (key, mut read, mut place) = self.member(reads, layout, KeyPlace::First)?;
        *first_key = Some(key);
        let mut key = key;
        loop {
            match read {
                Some(read) => {
                    // A string without escapes goes straight into its place
                    // (`Kept::keep_text`); any other value is made, then kept.
                    let start = self.at;
                    let value = match self.peek() {
                        Some(b'"') => match self.string()? {
                            (text, false) => {
                                kept.keep_text(read.index, read.symbol, key, text, read.set);
                                None
                            }
                            (_, true) => {
                                Some(parse_doc(self.text.get(start..self.at)?, read.set).ok()?)
                            }
                        },
                        _ => Some(self.other_doc(read.set)?),
                    };
                    if let Some(value) = value {
                        let (symbol, key) = (read.symbol, Cow::Borrowed(key));
                        kept.keep(read.index, Field { symbol, key, value }, read.set);
                    }
                }
                None => self.skip()?,
            }
            if !self.next_or_close(b'}')? {
                return Some(kept.into_doc());
            }
            (key, read, place) = self.member(reads, layout, place)?;
        }
    }

    /// The index in `layouts` of the [`Layout`] of `reads`' objects, made on first use.
    fn layout(&mut self, reads: &'r ReadSet) -> Option<usize> {
        if let Some(at) = self
            .layouts
            .iter()
            .position(|layout| std::ptr::eq(layout.set, reads))
        {
            return Some(at);
        }
        (self.layouts.len() < MAX_LAYOUTS).then(|| {
            // Room made once a page for every layout, and for a typical object's keys.
            if self.layouts.is_empty() {
                self.layouts.reserve_exact(MAX_LAYOUTS);
            }
            self.layouts.push(Layout {
                set: reads,
                keys: Vec::with_capacity(MAX_KNOWN_KEYS / 2),
                first: None,
                by_read: vec![None; reads.field_count()],
            });
            self.layouts.len() - 1
        })
    }

    /// A member's key (without escapes, as [`Scanner::key`]) and its colon: the key, what
    /// `reads` reads of it, and its place for guessing the next key. Guessed first from the
    /// object's layout (see [`Layout`]); read and looked up when the guess is wrong, and then
    /// remembered.
    #[inline(always)]
    fn member(
        &mut self,
        reads: &'r ReadSet,
        layout: Option<usize>,
        place: KeyPlace,
    ) -> Option<(&'a str, Option<FieldRead<'r>>, KeyPlace)> {
        self.expect(b'"')?;
        let start = self.at;
        if let Some(layout) = layout.and_then(|at| self.layouts.get(at)) {
            let guess = match place {
                KeyPlace::First => layout.first,
                KeyPlace::After(at) => layout.keys.get(at as usize).and_then(|known| known.next),
                KeyPlace::Unknown => None,
            };
            if let Some(guess) = guess
                && let Some(known) = layout.keys.get(guess as usize)
                && known.is_at(self.bytes, start)
            {
                let (text, read) = (known.text, known.read);
                let end = start + text.len();
                self.at = end + 1;
                self.expect(b':')?;
                // The first key is a slice of this record (its place tells where the record's
                // bytes are); any other can be the remembered one, which has the same text.
                let key = match place {
                    KeyPlace::First => self.text.get(start..end)?,
                    _ => text,
                };
                return Some((key, read, KeyPlace::After(guess)));
            }
        }
        let key = self.key_rest(start)?;
        let read = reads.field_set(key);
        let place = match layout {
            Some(layout) => self.remember(layout, place, key, read),
            None => KeyPlace::Unknown,
        };
        Some((key, read, place))
    }

    /// Remembers in layout `at` that `key` came at `place`.
    fn remember(
        &mut self,
        at: usize,
        place: KeyPlace,
        key: &'a str,
        read: Option<FieldRead<'r>>,
    ) -> KeyPlace {
        let Some(layout) = self.layouts.get_mut(at) else {
            return KeyPlace::Unknown;
        };
        // A key the set reads is found by its place in the set; any other by its text, while
        // there is room for more (past that, objects of many keys would pay the search on
        // every key not remembered).
        let full = layout.keys.len() >= MAX_KNOWN_KEYS;
        let found = match read {
            Some(read) => layout.by_read.get(read.index).copied().flatten(),
            None if full => return KeyPlace::Unknown,
            None => layout
                .keys
                .iter()
                .position(|known| known.read.is_none() && known.text == key)
                .map(|index| index as u32), // below MAX_KNOWN_KEYS
        };
        let index = match found {
            Some(index) => index,
            None if !full => {
                let index = layout.keys.len() as u32;
                layout.keys.push(KnownKey::new(key, read));
                if let Some(place) = read.and_then(|read| layout.by_read.get_mut(read.index)) {
                    *place = Some(index);
                }
                index
            }
            None => return KeyPlace::Unknown,
        };
        self.link(at, place, index);
        KeyPlace::After(index)
    }

    /// Remembers in layout `at` that the key at `index` came at `place`.
    fn link(&mut self, at: usize, place: KeyPlace, index: u32) {
        let Some(layout) = self.layouts.get_mut(at) else {
            return;
        };
        match place {
            KeyPlace::First => layout.first = Some(index),
            KeyPlace::After(before) => {
                if let Some(known) = layout.keys.get_mut(before as usize) {
                    known.next = Some(index);
                }
            }
            KeyPlace::Unknown => {}
        }
    }
}

/// The length of the escape after a backslash at `at` (`\n`, `\u00e9`, …), when it is one JSON
/// has. Any four hex digits pass, as in a string `serde_json` skips; a kept string with escapes
/// is parsed by `serde_json` itself, which refuses a lone surrogate.
fn escape_len(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(1),
        b'u' => bytes
            .get(at + 1..at + 5)?
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then_some(5),
        _ => None,
    }
}

/// Where the first `"`, `\\` or control character at or after `at` is. Sixteen bytes at a time
/// as a vector where the target has SSE2 (every x86-64 does), while there are sixteen; then
/// eight at a time in a word, where a byte below 0x20, or one equal to a given byte, sets its
/// high bit (the bit tricks of "Bit Twiddling Hacks"); the lowest byte flagged is always a true
/// one (a borrow only runs upwards from a true one), and the word is read little-end first, so
/// it is the first. Then the rest one by one.
#[inline(always)]
pub(crate) fn find_special(bytes: &[u8], mut at: usize) -> Option<usize> {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        match find_special_by_16(bytes, at) {
            Ok(found) => return Some(found),
            Err(rest) => at = rest,
        }
    }
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        let found =
            below(word, 0x20) | below(word ^ (ONES * 0x22), 1) | below(word ^ (ONES * 0x5c), 1);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
        .map(|offset| at + offset)
}

/// [`find_special`]'s vector part: the first special byte in the whole sixteen-byte blocks
/// from `at`, or where the blocks stopped. A block's three compares (`"`, `\\`, and a byte
/// equal to its minimum with 0x1f, so at most 0x1f) are or'ed into one mask whose lowest set
/// bit is the first special byte: about an instruction a byte, where the word takes two and a
/// half. `safe_arch` wraps the intrinsics, which the workspace's `forbid(unsafe_code)` keeps
/// out of reach here; the mask comes back in a general register (`pmovmskb`), not through the
/// stack as a compiler-vectorised loop's did.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn find_special_by_16(bytes: &[u8], mut at: usize) -> Result<usize, usize> {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, min_u8_m128i, move_mask_i8_m128i,
        set_splat_i8_m128i,
    };
    let quote = set_splat_i8_m128i(b'"' as i8);
    let backslash = set_splat_i8_m128i(b'\\' as i8);
    let control = set_splat_i8_m128i(0x1f);
    while let Some(Ok(block)) = bytes.get(at..at + 16).map(<&[u8; 16]>::try_from) {
        let block = load_unaligned_m128i(block);
        let special = cmp_eq_mask_i8_m128i(block, quote)
            | cmp_eq_mask_i8_m128i(block, backslash)
            | cmp_eq_mask_i8_m128i(min_u8_m128i(block, control), block);
        let mask = move_mask_i8_m128i(special) as u32;
        if mask != 0 {
            return Ok(at + mask.trailing_zeros() as usize);
        }
        at += 16;
    }
    Err(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reads::tests::set;
    use crate::reads::{parse_page_with_serde, parse_pruned_with_docs};
    use proptest::prelude::*;

    /// The serde page parse's answer, for comparing.
    fn serde_answer<'a>(
        text: &'a str,
        reads: &ReadSet,
        record_reads: &ReadSet,
        path: &[String],
    ) -> Option<(Value, PageDocs<'a>)> {
        match parse_page_with_serde(text, reads, record_reads, path) {
            Ok((value, Some(docs))) => Some((value, docs)),
            _ => None,
        }
    }

    /// Holds the scanner to the serde parse on `text`, and to the truth about its line breaks
    /// (which the serde parse does not tell); whether the scanner took it.
    fn check(text: &str, reads: &ReadSet, record_reads: &ReadSet, path: &[String]) -> bool {
        let scanned = scan_page_docs(text, reads, record_reads, path);
        if let Some(scanned) = &scanned {
            let mut expected = serde_answer(text, reads, record_reads, path);
            if let Some((_, docs)) = &mut expected {
                docs.line_break = Some(text.contains(['\n', '\r']));
            }
            assert_eq!(Some(scanned), expected.as_ref(), "{text}");
        }
        scanned.is_some()
    }

    fn path(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|&segment| segment.to_owned()).collect()
    }

    /// A page of records like a directory's, with a cursor, a total and a bit of everything.
    const PAGE: &str = r#" {"meta":{"total":3,"next":"c\u00e9"},"data":{"users":[
        {"id":"u1","name":{"given":"Ann","family":"L\u00f6w"},"n":12,"tags":["a",{"k":1}],
         "on":true,"off":false,"gone":null,"_links":{"self":{"href":"https://x/y?z=1"}},
         "deep":[[[{"a":[1,2.5e-3,-0.0,"\"q\""]}]]],"big":123456789012345678901234567890,"id":"u1b"},
        "plain",
        17,
        {},
        {"\u0069d":"escaped key skipped","id":"u3","name":{"given":"\ud83d\ude00"}}
      ],"pages":2},"trail":[1]}  "#;

    fn page_reads() -> (ReadSet, ReadSet, Vec<String>) {
        let records = path(&["data", "users"]);
        let mut reads = set(&["meta.next.*", "meta.total.*", "trail.*"]);
        reads.merge_at(&records, &ReadSet::default());
        let record_reads = set(&[
            "id.*",
            "name.given.*",
            "name.family.*",
            "n.*",
            "tags.k.*",
            "on.*",
            "off.*",
            "gone.*",
            "missing.*",
        ]);
        (reads, record_reads, records)
    }

    #[test]
    fn scans_a_page_as_the_serde_parse_reads_it() {
        let (reads, record_reads, records) = page_reads();
        let escaped_key = PAGE.replace(r#"{"\u0069d":"escaped key skipped","#, "{");
        assert!(check(&escaped_key, &reads, &record_reads, &records));
        let (value, page) = scan_page_docs(&escaped_key, &reads, &record_reads, &records).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"meta": {"total": 3, "next": "cé"}, "data": {"users": [null, null, null, null, null]}, "trail": [1]})
        );
        assert_eq!(page.first_keys, [Some("id"), None, None, None, Some("id")]);
        // The first record: a repeated key counts last at its first place; a plain string is
        // lent from the body; an escaped one is its own.
        let Doc::Obj(fields) = &page.docs[0] else {
            panic!("{:?}", page.docs[0])
        };
        let id = fields.iter().find(|field| field.key == "id").unwrap();
        assert_eq!(id.value, Doc::Str(Cow::Borrowed("u1b")));
        let name = fields.iter().find(|field| field.key == "name").unwrap();
        // `name`'s places: `family` (escaped, so its own text), then `given`.
        assert!(
            matches!(&name.value, Doc::Obj(name) if matches!(name[0].value, Doc::Str(Cow::Owned(_))))
        );
        // Every field of the set has its place, in the set's order; `missing` is absent.
        let places: Vec<(&str, bool)> = fields
            .iter()
            .map(|field| (field.key.as_ref(), matches!(field.value, Doc::Absent)))
            .collect();
        assert_eq!(
            places,
            [
                ("gone", false),
                ("id", false),
                ("", true),
                ("n", false),
                ("name", false),
                ("off", false),
                ("on", false),
                ("tags", false)
            ]
        );
        // Records read whole, and records read for nothing.
        assert!(check(
            &escaped_key,
            &reads,
            &ReadSet::everything(),
            &records
        ));
        assert!(check(&escaped_key, &reads, &ReadSet::default(), &records));
        // A bare array of records.
        assert!(check(
            r#"[{"id":"a"},{"id":"b","x":[]}]"#,
            &ReadSet::default(),
            &record_reads,
            &[]
        ));
    }

    #[test]
    fn leaves_to_serde_json_what_it_does_not_take() {
        let (reads, record_reads, records) = page_reads();
        for (text, why) in [
            (PAGE, "a record key with escapes"),
            (
                r#"{"data":{"users":[]},"data":{"users":[]}}"#,
                "the records path repeated",
            ),
            (r#"{"data":{"users":{"id":"a"}}}"#, "no array at the path"),
            (r#"{"data":null}"#, "no object on the way"),
            (r#"{"meta":1}"#, "no records path"),
            (
                r#"{"data":{"users":[{"id":1e400}]}}"#,
                "a kept number out of range",
            ),
            (
                r#"{"data":{"users":[{"id":"\ud800"}]}}"#,
                "a kept lone surrogate",
            ),
        ] {
            assert!(
                scan_page_docs(text, &reads, &record_reads, &records).is_none(),
                "{why}"
            );
        }
        let deep = format!(
            r#"{{"data":{{"users":[{{"x":{}{}}}]}}}}"#,
            "[".repeat(70),
            "]".repeat(70)
        );
        assert!(
            scan_page_docs(&deep, &reads, &record_reads, &records).is_none(),
            "nesting"
        );
        // And what it leaves, the page parse still reads (or refuses) as before.
        let (value, docs) = parse_pruned_with_docs(PAGE, &reads, &record_reads, &records).unwrap();
        assert_eq!(
            Some((value, docs.unwrap())),
            serde_answer(PAGE, &reads, &record_reads, &records)
        );
    }

    /// Records that share their keys' order, then leave it: each key the scanner guesses from
    /// the record before ([`Layout`]) and finds different (longer, shorter, escaped, moved,
    /// missing, repeated, after whitespace) is read as it is, so the page reads as serde reads it.
    #[test]
    fn reads_keys_that_differ_from_the_last_records_as_they_are() {
        let (reads, record_reads, records) = page_reads();
        let same = r#"{"id":"a","name":{"given":"A","family":"B"},"n":1,"on":true}"#;
        for (record, why) in [
            (same, "the same keys"),
            (
                r#"{"id":"b","names":{"given":"X"},"n":2,"on":true}"#,
                "a longer key",
            ),
            (
                r#"{"id":"b","nam":{"given":"X"},"n":2,"on":true}"#,
                "a shorter key",
            ),
            (
                r#"{"id":"b","n":2,"name":{"given":"X"},"on":true}"#,
                "keys moved",
            ),
            (r#"{"id":"b","on":false}"#, "keys missing"),
            (
                r#"{"name":{"family":"F","given":"G"},"id":"b"}"#,
                "another first key",
            ),
            (r#"{"id":"b","id":"c","n":3,"n":4}"#, "keys repeated"),
            (
                r#"{ "id" : "b" ,  "name": {"given" :"X"}, "n":2 }"#,
                "whitespace",
            ),
            (r#"{"id":"b","nX":2,"n":3,"on":true}"#, "a key between"),
            (r#"{}"#, "no keys"),
        ] {
            let text =
                format!(r#"{{"data":{{"users":[{same},{same},{record},{same},{record}]}}}}"#);
            assert!(
                check(&text, &reads, &record_reads, &records),
                "{why}: {text}"
            );
        }
        // Keys of sixteen bytes and more (compared as slices), and one at the body's end.
        let long_reads = set(&["id.*", "aVeryLongKeyNameIndeed.*"]);
        let long = r#"{"id":"a","aVeryLongKeyNameIndeed":1}"#;
        for record in [
            r#"{"id":"b","aVeryLongKeyNameIndeedX":2}"#,
            r#"{"id":"b","aVeryLongKeyNameIndeeX":2}"#,
            r#"{"id":"b","aVeryLongKeyNameIndee":2}"#,
            long,
        ] {
            let text = format!(r#"{{"data":{{"users":[{long},{record},{long},{record}]}}}}"#);
            assert!(check(&text, &reads, &long_reads, &records), "{text}");
        }
        let text = format!(r#"{{"data":{{"users":[{same},{{"id":"b"}}]}}}}"#);
        assert!(check(&text, &reads, &record_reads, &records), "{text}");
        // Objects of more keys than a layout remembers, read and not read, in two orders.
        let many: Vec<String> = (0..80).map(|n| format!(r#""k{n}":{n}"#)).collect();
        let forth = format!(r#"{{{},"id":"x","n":1}}"#, many.join(","));
        let back = format!(
            r#"{{"n":2,{},"id":"y"}}"#,
            many.iter().rev().cloned().collect::<Vec<_>>().join(",")
        );
        let text = format!(r#"{{"data":{{"users":[{forth},{back},{forth},{back},{same}]}}}}"#);
        assert!(check(&text, &reads, &record_reads, &records), "{text}");
        // A key written with an escape, even one that reads as the key guessed, is left to
        // serde_json as any escaped record key is.
        let text = format!(r#"{{"data":{{"users":[{same},{{"i\u0064":"b"}}]}}}}"#);
        assert!(!check(&text, &reads, &record_reads, &records), "{text}");
        let text = format!(r#"{{"data":{{"users":[{same},{{"id":"b","n\u0061me":{{}}}}]}}}}"#);
        assert!(!check(&text, &reads, &record_reads, &records), "{text}");
    }

    /// A skipped value nested to the scanner's limit, objects and arrays in turn (each level
    /// closed by its own bracket, a wrong one refused), and one level more, left to serde_json.
    #[test]
    fn skips_nesting_to_the_limit_and_no_further() {
        let record_reads = set(&["id.*"]);
        // The records array and the record are two levels; `x` holds the rest.
        let page = |levels: usize, swap_closers: bool| {
            let (mut open, mut close) = (String::new(), String::new());
            for level in 0..levels {
                let object = level % 2 == 1;
                open.push_str(if object { "{\"k\":" } else { "[0," });
                let closer = match (object, swap_closers && level == levels - 1) {
                    (true, false) | (false, true) => "}",
                    _ => "]",
                };
                close.insert_str(0, closer);
            }
            format!(r#"[{{"x":{open}true{close},"id":"a"}}]"#)
        };
        let levels = MAX_DEPTH as usize - 2;
        assert!(check(
            &page(levels, false),
            &ReadSet::default(),
            &record_reads,
            &[]
        ));
        assert!(!check(
            &page(levels, true),
            &ReadSet::default(),
            &record_reads,
            &[]
        ));
        let deeper = page(levels + 1, false);
        assert!(scan_page_docs(&deeper, &ReadSet::default(), &record_reads, &[]).is_none());
        assert!(serde_answer(&deeper, &ReadSet::default(), &record_reads, &[]).is_some());
    }

    #[test]
    fn refuses_every_body_that_is_not_json() {
        let (reads, record_reads, records) = page_reads();
        let good = r#"{"data":{"users":[{"id":"a","x":[1,{"y":"z"}],"n":-1.5e+3}]}}"#;
        assert!(check(good, &reads, &record_reads, &records));
        for broken in [
            r#"{"data":{"users":[{"id":"a","x":}]}}"#,
            r#"{"data":{"users":[{"id":"a"}]}} x"#,
            r#"{"data":{"users":[{"id":"a"},]}}"#,
            r#"{"data":{"users":[{"id":"a","x":[1,]}]}}"#,
            r#"{"data":{"users":[{"id":"a","x":01}]}}"#,
            r#"{"data":{"users":[{"id":"a","x":1.}]}}"#,
            r#"{"data":{"users":[{"id":"a","x":1e}]}}"#,
            r#"{"data":{"users":[{"id":"a","x":-}]}}"#,
            r#"{"data":{"users":[{"id":"a","x":tru}]}}"#,
            r#"{"data":{"users":[{"id":"a","x":"\q"}]}}"#,
            r#"{"data":{"users":[{"id":"a","x":"\u12g4"}]}}"#,
            "{\"data\":{\"users\":[{\"id\":\"a\",\"x\":\"tab\there\"}]}}",
            "{\"data\":{\"users\":[{\"id\":\"a\u{1}\"}]}}",
            r#"{"data":{"users":[{"id":"a" "x":1}]}}"#,
            r#"{"data":{"users":[{"id":"a"}]}"#,
            r#"{"data":{"users":[{"id":"a"]}}"#,
        ] {
            assert!(
                serde_answer(broken, &reads, &record_reads, &records).is_none(),
                "{broken}"
            );
            assert!(!check(broken, &reads, &record_reads, &records), "{broken}");
        }
    }

    #[test]
    fn finds_the_first_special_byte_as_a_byte_loop_does() {
        let special = |byte: u8| byte < 0x20 || byte == b'"' || byte == b'\\';
        let bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).rev().collect();
        for start in 0..bytes.len() {
            for end in start..(start + 72).min(bytes.len()) {
                let slice = &bytes[..end];
                let expected = slice[start..]
                    .iter()
                    .position(|&b| special(b))
                    .map(|i| start + i);
                assert_eq!(find_special(slice, start), expected, "{start}..{end}");
            }
        }
    }

    /// Pieces of JSON and of broken JSON, for mutating a page.
    const PIECES: &[&str] = &[
        "",
        " ",
        "\"",
        "\\",
        ",",
        ":",
        "{",
        "}",
        "[",
        "]",
        "0",
        "-",
        ".",
        "e",
        "1",
        "\u{1}",
        "\\u",
        "\\n",
        "null",
        "tru",
        "\"id\":",
        "{\"id\":\"q\"}",
        "1e400",
        "\\ud800",
        "é",
        "\"id\":2,",
        "\n",
        "\r",
    ];

    #[test]
    fn answers_as_the_serde_parse_with_any_one_piece_cut_or_put_in() {
        let (reads, record_reads, records) = page_reads();
        let text = PAGE.replace(r#"{"\u0069d":"escaped key skipped","#, "{");
        let (mut tried, mut taken) = (0, 0);
        for at in (0..=text.len()).filter(|&at| text.is_char_boundary(at)) {
            let mut variants: Vec<String> = PIECES
                .iter()
                .map(|piece| format!("{}{piece}{}", &text[..at], &text[at..]))
                .collect();
            if let Some(next) = text[at..].chars().next() {
                variants.push(format!("{}{}", &text[..at], &text[at + next.len_utf8()..]));
            }
            for variant in variants {
                tried += 1;
                taken += usize::from(check(&variant, &reads, &record_reads, &records));
            }
        }
        // Most changes inside strings and between tokens leave JSON the scanner takes.
        assert!(taken > tried / 4, "{taken} of {tried}");
    }

    /// A 100-record Okta page from the fixture (pretty-printed, as some providers answer) and
    /// the read set of the Okta mapping's records.
    fn okta_page() -> (String, ReadSet) {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/okta/two-pages/page1.json"
        );
        let records: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        let page: Vec<&Value> = records.iter().cycle().take(100).collect();
        let text = serde_json::to_string_pretty(&page).unwrap();
        let profile = [
            "firstName",
            "lastName",
            "displayName",
            "login",
            "title",
            "email",
            "secondEmail",
            "mobilePhone",
            "primaryPhone",
            "organization",
            "timezone",
            "preferredLanguage",
            "profileUrl",
            "userType",
            "employeeNumber",
        ];
        let top = [
            "id",
            "status",
            "created",
            "activated",
            "statusChanged",
            "lastLogin",
            "lastUpdated",
        ];
        let paths: Vec<String> = top
            .iter()
            .map(|name| format!("{name}.*"))
            .chain(profile.iter().map(|name| format!("profile.{name}.*")))
            .collect();
        (
            text,
            set(&paths.iter().map(String::as_str).collect::<Vec<_>>()),
        )
    }

    #[test]
    fn scans_the_okta_page_as_the_serde_parse_reads_it() {
        let (text, record_reads) = okta_page();
        assert!(check(&text, &ReadSet::default(), &record_reads, &[]));
        let compact = serde_json::from_str::<Value>(&text).unwrap().to_string();
        assert!(check(&compact, &ReadSet::default(), &record_reads, &[]));
        // A line break that is only a carriage return between two tokens is told too.
        let returned = compact.replacen(",\"", ",\r\"", 1);
        assert!(check(&returned, &ReadSet::default(), &record_reads, &[]));
    }

    /// The page read 100 times, by the scanner or (`SCAN_WITH_SERDE=1`) by serde_json alone:
    /// for counting instructions, e.g. `valgrind --tool=callgrind <test binary> --ignored
    /// --exact scan::tests::scan_the_okta_page_100_times` on a `cargo test --release` build.
    #[test]
    #[ignore = "a measurement, run by hand under callgrind"]
    fn scan_the_okta_page_100_times() {
        let (text, record_reads) = okta_page();
        let text: String = serde_json::from_str::<Value>(&text).unwrap().to_string();
        let serde = std::env::var("SCAN_WITH_SERDE").is_ok();
        for _ in 0..100 {
            let docs = match serde {
                true => parse_page_with_serde(&text, &ReadSet::default(), &record_reads, &[])
                    .unwrap()
                    .1
                    .unwrap(),
                false => {
                    scan_page_docs(&text, &ReadSet::default(), &record_reads, &[])
                        .unwrap()
                        .1
                }
            };
            assert_eq!(docs.docs.len(), 100);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Cut a piece of the page out, or put one in, anywhere: whatever the scanner answers
        /// for the result is the serde parse's answer (and it answers nothing where that fails).
        #[test]
        fn answers_as_the_serde_parse_on_mutated_pages(
            edits in proptest::collection::vec((0usize..2000, 0usize..4, 0..PIECES.len()), 1..4),
        ) {
            let (reads, record_reads, records) = page_reads();
            let mut text = PAGE.replace(r#"{"\u0069d":"escaped key skipped","#, "{");
            for (at, cut, piece) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + cut).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, PIECES[piece]);
            }
            check(&text, &reads, &record_reads, &records);
        }
    }
}
