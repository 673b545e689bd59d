//! The built-in functions of the fast path: JSONata's string, type, array and object functions
//! that mappings use, each for the argument types it answers without an error. Any other
//! argument (a number that is not integral turned into a string, a regular expression, a type
//! the signature refuses) bails to the JSONata engine.

use std::rc::Rc;
use std::sync::LazyLock;

use serde_json::Value;

use crate::doc::Doc;

use super::Bail;
use super::eval::{Outcome, Pairs, Val, deep_equal, object_pairs};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    String,
    Number,
    Boolean,
    Not,
    Exists,
    Count,
    Length,
    Substring,
    SubstringBefore,
    SubstringAfter,
    Uppercase,
    Lowercase,
    Trim,
    Contains,
    Split,
    Join,
    Replace,
    Lookup,
    Keys,
    Append,
    Distinct,
    Type,
    Merge,
    Floor,
    Ceil,
    Abs,
    Sum,
    Max,
    Min,
    ToMillis,
    FromMillis,
}

impl Builtin {
    pub(crate) fn named(name: &str) -> Option<Builtin> {
        use Builtin::*;
        Some(match name {
            "string" => String,
            "number" => Number,
            "boolean" => Boolean,
            "not" => Not,
            "exists" => Exists,
            "count" => Count,
            "length" => Length,
            "substring" => Substring,
            "substringBefore" => SubstringBefore,
            "substringAfter" => SubstringAfter,
            "uppercase" => Uppercase,
            "lowercase" => Lowercase,
            "trim" => Trim,
            "contains" => Contains,
            "split" => Split,
            "join" => Join,
            "replace" => Replace,
            "lookup" => Lookup,
            "keys" => Keys,
            "append" => Append,
            "distinct" => Distinct,
            "type" => Type,
            "merge" => Merge,
            "floor" => Floor,
            "ceil" => Ceil,
            "abs" => Abs,
            "sum" => Sum,
            "max" => Max,
            "min" => Min,
            "toMillis" => ToMillis,
            "fromMillis" => FromMillis,
            _ => return None,
        })
    }

    /// Whether a call with `n` explicit arguments is in the subset (a missing first argument
    /// that JSONata takes from the context is not).
    pub(crate) fn accepts(self, n: usize) -> bool {
        use Builtin::*;
        let (min, max) = match self {
            String | Join | Split => (1, if self == Split { 3 } else { 2 }),
            Substring => (2, 3),
            SubstringBefore | SubstringAfter | Contains | Lookup | Append => (2, 2),
            Replace => (3, 4),
            _ => (1, 1),
        };
        (min..=max).contains(&n)
    }
}

/// A string argument, *undefined* as `None`; any other type is a signature error.
fn text<'v>(value: &'v Val<'_>) -> Outcome<Option<&'v str>> {
    match value {
        Val::Undef => Ok(None),
        other => other.as_str().map(Some).ok_or(Bail),
    }
}

/// What `$type` answers, as strings a value can borrow for the whole evaluation.
static TYPE_NAMES: LazyLock<[String; 7]> = LazyLock::new(|| {
    [
        "null", "boolean", "number", "string", "function", "array", "object",
    ]
    .map(String::from)
});

/// The position in [`TYPE_NAMES`] of the name `$type` answers for `value`; `None` for
/// *undefined*.
pub(super) fn type_of(value: &Val<'_>) -> Option<u8> {
    Some(match value {
        Val::Undef => return None,
        Val::Null => 0,
        Val::Bool(_) => 1,
        Val::Num(_) => 2,
        Val::Str(_) | Val::Text(_) | Val::DocStr(_) => 3,
        Val::Func(_) => 4,
        other if other.is_array() => 5,
        _ => 6,
    })
}

/// The position of a type name in [`TYPE_NAMES`].
pub(super) fn type_named(name: &str) -> Option<u8> {
    TYPE_NAMES
        .iter()
        .position(|known| known == name)
        .map(|at| at as u8)
}

/// `$join` of an array's items (a defined first argument): text only, the separator text
/// when given.
pub(super) fn join<'a>(items: &[Val<'a>], separator: Option<&Val<'a>>) -> Outcome<Val<'a>> {
    let separator = match separator {
        None => "",
        Some(separator) => required_text(separator)?,
    };
    let size = items
        .iter()
        .map(|item| item.as_str().map_or(0, str::len) + separator.len())
        .sum();
    let mut out = std::string::String::with_capacity(size);
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push_str(separator);
        }
        out.push_str(required_text(item)?);
    }
    Ok(Val::text(out))
}

fn required_text<'v>(value: &'v Val<'_>) -> Outcome<&'v str> {
    value.as_str().ok_or(Bail)
}

fn integer(value: &Val<'_>) -> Outcome<i64> {
    match value {
        Val::Num(n) if n.get().fract() == 0.0 && n.get().abs() < 1e15 => Ok(n.get() as i64),
        _ => Err(Bail),
    }
}

/// `$string`: the text of a scalar; a number only when it is an integer the JSONata engine writes the
/// same way.
pub(super) fn string_of(value: &Val<'_>) -> Outcome<String> {
    Ok(match value {
        Val::Str(s) => (*s).clone(),
        Val::Text(s) => (**s).clone(),
        Val::DocStr(s) => s.as_ref().to_owned(),
        Val::Num(n) if n.get().fract() == 0.0 && n.get().abs() < 1e15 => {
            (n.get() as i64).to_string()
        }
        Val::Bool(b) => b.get().to_string(),
        Val::Null => "null".to_owned(),
        _ => return Err(Bail),
    })
}

/// Items of an argument a signature takes as an array: an array's items, a lone value as one.
fn as_items<'a>(value: &Val<'a>) -> Vec<Val<'a>> {
    match value.array_items() {
        Some(items) => items,
        None if value.is_undef() => Vec::new(),
        None => vec![value.clone()],
    }
}

fn numbers(value: &Val<'_>) -> Outcome<Vec<f64>> {
    as_items(value)
        .iter()
        .map(|item| match item {
            Val::Num(n) => Ok(n.get()),
            _ => Err(Bail),
        })
        .collect()
}

fn is_decimal(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(whole)
        && fraction.is_none_or(digits)
        && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.f{1,3}](Z|±HH:MM)`: the ISO 8601 forms whose
/// meaning does not depend on the JSONata engine's local time zone or leap-second reading.
fn is_plain_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if b.len() < 10
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
    {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if b.len() < 20
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
        || &b[17..19] == b"60"
    {
        return false;
    }
    let mut at = 19;
    if b[at] == b'.' {
        let start = at + 1;
        at = start;
        while at < b.len() && b[at].is_ascii_digit() {
            at += 1;
        }
        if !(1..=3).contains(&(at - start)) {
            return false;
        }
    }
    match &b[at..] {
        b"Z" => true,
        [sign, h1, h2, b':', m1, m2] => {
            matches!(sign, b'+' | b'-') && [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
        }
        _ => false,
    }
}

/// JavaScript's `slice` on code points, as `$substring` uses it.
fn slice(chars: &[char], start: i64, end: Option<i64>) -> String {
    let len = chars.len() as i64;
    let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
    let start = clamp(start);
    let end = end.map_or(len, clamp);
    if start >= end {
        return String::new();
    }
    chars[start as usize..end as usize].iter().collect()
}

pub(super) fn call<'a>(builtin: Builtin, args: &[Val<'a>]) -> Outcome<Val<'a>> {
    use Builtin::*;
    let undefined = Val::Undef;
    let arg = |index: usize| args.get(index).unwrap_or(&undefined);
    let first = arg(0);
    Ok(match builtin {
        String => {
            if args.len() > 1 || matches!(first, Val::Func(_)) {
                return Err(Bail);
            }
            match first {
                Val::Undef => Val::Undef,
                Val::Str(_) | Val::Text(_) | Val::DocStr(_) => first.clone(),
                other => Val::text(string_of(other)?),
            }
        }
        Number => match first {
            Val::Undef => Val::Undef,
            Val::Num(_) => first.clone(),
            Val::Bool(b) => Val::num(if b.get() { 1.0 } else { 0.0 }),
            other => {
                let text = required_text(other)?;
                if !is_decimal(text) {
                    return Err(Bail);
                }
                let n: f64 = text.parse().map_err(|_| Bail)?;
                if !n.is_finite() {
                    return Err(Bail);
                }
                Val::num(n)
            }
        },
        Boolean => match first {
            Val::Undef => Val::Undef,
            Val::Func(_) => return Err(Bail),
            other => Val::bool(other.truthy()),
        },
        Not => match first {
            Val::Undef => Val::Undef,
            Val::Func(_) => return Err(Bail),
            other => Val::bool(!other.truthy()),
        },
        Exists => Val::bool(!first.is_undef()),
        Count => Val::num(match first.array_len() {
            Some(n) => n as f64,
            None if first.is_undef() => 0.0,
            None => 1.0,
        }),
        Length => match text(first)? {
            None => Val::Undef,
            Some(s) => Val::num(s.chars().count() as f64),
        },
        Substring => match text(first)? {
            None => Val::Undef,
            Some(s) => {
                let chars: Vec<char> = s.chars().collect();
                let len = chars.len() as i64;
                let mut start = integer(arg(1))?;
                if len + start < 0 {
                    start = 0;
                }
                let out = match args.get(2) {
                    None => slice(&chars, start, None),
                    Some(length) => {
                        let length = integer(length)?;
                        if length <= 0 {
                            std::string::String::new()
                        } else {
                            let end = if start >= 0 {
                                start + length
                            } else {
                                len + start + length
                            };
                            slice(&chars, start, Some(end))
                        }
                    }
                };
                Val::text(out)
            }
        },
        SubstringBefore | SubstringAfter => match text(first)? {
            None => Val::Undef,
            Some(s) => {
                let chars = required_text(arg(1))?;
                match s.find(chars) {
                    Some(at) if builtin == SubstringBefore => Val::text(s[..at].to_owned()),
                    Some(at) => Val::text(s[at + chars.len()..].to_owned()),
                    None => first.clone(),
                }
            }
        },
        Uppercase | Lowercase => match text(first)? {
            None => Val::Undef,
            Some(s) => Val::text(if builtin == Uppercase {
                s.to_uppercase()
            } else {
                s.to_lowercase()
            }),
        },
        Trim => match text(first)? {
            None => Val::Undef,
            Some(s) => {
                let mut out = std::string::String::with_capacity(s.len());
                let mut space = false;
                for c in s.chars() {
                    if matches!(c, ' ' | '\t' | '\n' | '\r') {
                        space = true;
                    } else {
                        if space && !out.is_empty() {
                            out.push(' ');
                        }
                        space = false;
                        out.push(c);
                    }
                }
                Val::text(out)
            }
        },
        Contains => match text(first)? {
            None => Val::Undef,
            Some(s) => Val::bool(s.contains(required_text(arg(1))?)),
        },
        Split => match text(first)? {
            None => Val::Undef,
            Some(s) => {
                let separator = required_text(arg(1))?;
                if separator.is_empty() {
                    return Err(Bail); // JavaScript splits into UTF-16 units
                }
                let limit = match args.get(2) {
                    None => usize::MAX,
                    Some(limit) => usize::try_from(integer(limit)?).map_err(|_| Bail)?,
                };
                Val::array(
                    s.split(separator)
                        .take(limit)
                        .map(|part| Val::text(part.to_owned()))
                        .collect(),
                )
            }
        },
        Join => {
            if first.is_undef() {
                return Ok(Val::Undef);
            }
            // A constructed array's items are read where they are, not copied out first.
            return match first {
                Val::Arr(arr) => join(&arr.items, args.get(1)),
                _ => join(&as_items(first), args.get(1)),
            };
        }
        Replace => match text(first)? {
            None => Val::Undef,
            Some(s) => {
                let pattern = required_text(arg(1))?;
                let replacement = required_text(arg(2))?;
                if pattern.is_empty() || replacement.contains('$') {
                    return Err(Bail);
                }
                let limit = match args.get(3) {
                    None => usize::MAX,
                    Some(limit) => usize::try_from(integer(limit)?).map_err(|_| Bail)?,
                };
                Val::text(s.replacen(pattern, replacement, limit))
            }
        },
        Lookup => {
            let key = required_text(arg(1))?;
            first.field(key, crate::doc::NO_SYMBOL)
        }
        Keys => {
            let mut keys: Vec<Rc<std::string::String>> = Vec::new();
            let objects = match first.array_items() {
                Some(items) => items,
                None => vec![first.clone()],
            };
            for object in objects.iter().filter(|o| o.is_object()) {
                for (key, _) in object_pairs(object) {
                    if !keys.iter().any(|k| **k == key) {
                        keys.push(Rc::new(key));
                    }
                }
            }
            Val::sequence(keys.into_iter().map(Val::Text).collect())
        }
        Append => {
            let second = arg(1);
            if first.is_undef() {
                return Ok(second.clone());
            }
            if second.is_undef() {
                return Ok(first.clone());
            }
            let mut items = as_items(first);
            items.extend(as_items(second));
            Val::array(items)
        }
        Distinct => match first {
            Val::Arr(arr) if arr.items.len() > 1 => {
                let mut kept: Vec<Val<'a>> = Vec::new();
                for item in &arr.items {
                    let mut seen = false;
                    for other in &kept {
                        if deep_equal(item, other)? {
                            seen = true;
                            break;
                        }
                    }
                    if !seen {
                        kept.push(item.clone());
                    }
                }
                if arr.sequence {
                    Val::sequence(kept)
                } else {
                    Val::array(kept)
                }
            }
            Val::Json(Value::Array(_)) | Val::Doc(Doc::Arr(_))
                if first.array_len().is_some_and(|len| len > 1) =>
            {
                let wrapped = Val::array(first.array_items().unwrap_or_default());
                return call(Distinct, &[wrapped]);
            }
            other => other.clone(),
        },
        Type => match type_of(first) {
            Some(name) => Val::Str(&TYPE_NAMES[name as usize]),
            None => Val::Undef,
        },
        Merge => {
            if first.is_undef() {
                return Ok(Val::Undef);
            }
            let mut merged = Pairs::new();
            for object in as_items(first) {
                if !object.is_object() {
                    return Err(Bail);
                }
                for (key, value) in object_pairs(&object) {
                    match merged.iter_mut().find(|(k, _)| k.as_str() == Some(&key)) {
                        Some(slot) => slot.1 = value,
                        None => merged.push((Val::text(key), value)),
                    }
                }
            }
            Val::Obj(Rc::new(merged))
        }
        Floor | Ceil | Abs => match first {
            Val::Undef => Val::Undef,
            Val::Num(n) => Val::num(match builtin {
                Floor => n.get().floor(),
                Ceil => n.get().ceil(),
                _ => n.get().abs(),
            }),
            _ => return Err(Bail),
        },
        Sum => {
            if first.is_undef() {
                return Ok(Val::Undef);
            }
            Val::num(numbers(first)?.iter().sum())
        }
        ToMillis => match text(first)? {
            None => Val::Undef,
            Some(s) if is_plain_timestamp(s) => {
                Val::num(unigate_unified::time::parse_iso8601(s).ok_or(Bail)? as f64)
            }
            Some(_) => return Err(Bail),
        },
        FromMillis => match first {
            Val::Undef => Val::Undef,
            Val::Num(n)
                if n.get().fract() == 0.0 && (0.0..253_402_300_800_000.0).contains(&n.get()) =>
            {
                // JavaScript's toISOString: milliseconds always written.
                let text = unigate_unified::time::format_rfc3339(n.get() as i64);
                Val::text(match text.find('.') {
                    Some(_) => text,
                    None => format!("{}.000Z", &text[..text.len() - 1]),
                })
            }
            _ => return Err(Bail),
        },
        Max | Min => {
            if first.is_undef() {
                return Ok(Val::Undef);
            }
            let values = numbers(first)?;
            let pick = if builtin == Max { f64::max } else { f64::min };
            match values.into_iter().reduce(pick) {
                Some(n) => Val::num(n),
                None => Val::Undef,
            }
        }
    })
}
