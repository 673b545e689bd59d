//! Evaluating a [`Plan`] over a borrowed input, with JSONata's sequence rules (singleton
//! sequences unwrap, path steps flatten arrays, `[]` keeps them) as `jlens-core` applies them.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use serde_json::{Map, Value};
use smallvec::SmallVec;

use crate::doc::{Doc, Field, Hint};

use super::builtins::{self, Builtin};
use super::{Bail, Binary, Filter, Item, Lambda, Node, Op, Plan, Var};

pub(super) type Outcome<T> = Result<T, Bail>;

/// Evaluations nested deeper than this (function calls within calls) go to the JSONata engine, which
/// grows its stack and has the limits and the error for runaway recursion; the fast path runs on
/// the caller's stack (a Tokio worker's 2 MiB), about 10 KiB per nested call at most.
const MAX_DEPTH: u32 = 24;
/// Steps one evaluation may take before it is handed to the JSONata engine and its time limit.
/// A step is a function call, an item a path step or a filter visits, or a node of the kinds
/// without a runner of their own: without recursion, the nodes between them are bounded by the
/// size of the plan.
const MAX_STEPS: u32 = 200_000;

/// A JSONata value during a fast evaluation. Input and plan constants are borrowed.
///
/// Two words: a word-sized tag and one integer word (a thin pointer, or a number or Boolean held
/// as bits: [`Number`], [`Truth`]; text is a `&String` of the input or the plan, or a shared
/// `String` made here). With every payload of one integer class, a `Val` and an `Outcome<Val>`
/// are returned in two registers; a `f64` payload among the pointers had the compiler return
/// them through the caller's stack, and moving them on from there cost more than most nodes'
/// own work (making them registers took the Okta mapping from about 200,000 to 240,000 records
/// a second). The evaluator still returns a callee's answer as it is (`return self.eval(…)`) or
/// reads it in place (`let Ok(x) = &answer`) wherever it can. A one-byte tag made every half
/// misaligned.
#[derive(Debug, Clone)]
#[repr(u64)]
pub(super) enum Val<'a> {
    Undef,
    Null,
    Bool(Truth),
    Num(Number),
    Str(&'a String),
    Text(Rc<String>),
    /// An array or object of the input or of a folded constant.
    Json(&'a Value),
    /// Text of a record parsed as a [`Doc`].
    DocStr(&'a Cow<'a, str>),
    /// An array or object of a record parsed as a [`Doc`] (never [`Doc::Whole`], which is
    /// [`Val::Json`]).
    Doc(&'a Doc<'a>),
    Arr(Rc<Arr<'a>>),
    /// A constructed object, keys in insertion order.
    Obj(Rc<Pairs<'a>>),
    Func(Rc<Closure<'a>>),
}

/// A number in a [`Val`], held as its bits: with every payload one integer word, a `Val` and an
/// `Outcome<Val>` are returned in two registers rather than through memory (a double among
/// pointers makes the compiler return the pair through the stack).
#[derive(Debug, Clone, Copy)]
pub(super) struct Number(u64);

impl Number {
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// A Boolean in a [`Val`], one word for the same reason as [`Number`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Truth(u64);

impl Truth {
    pub fn get(self) -> bool {
        self.0 != 0
    }
}

/// An array's items, the first two held in place: most arrays a mapping makes are one or two
/// items (`[first, last]`, an `emails` list), which then cost one allocation (the `Rc`), not two.
pub(super) type Items<'a> = SmallVec<[Val<'a>; 2]>;

/// A constructed object's pairs, the first three held in place for the same reason (`{"email":
/// …, "type": …, "is_primary": …}`).
pub(super) type Pairs<'a> = SmallVec<[(Val<'a>, Val<'a>); 3]>;

#[derive(Debug, Clone, Default)]
pub(super) struct Arr<'a> {
    pub items: Items<'a>,
    /// A sequence (a path's or function's result) rather than an array value.
    pub sequence: bool,
    /// Built by a constructor that must not be flattened into a path.
    pub cons: bool,
    /// A singleton sequence that stays an array (`[]`).
    pub keep: bool,
}

#[derive(Debug)]
pub(super) struct Closure<'a> {
    lambda: &'a Lambda,
    /// The context (`$`) where the function was made.
    input: Val<'a>,
}

impl<'a> Val<'a> {
    pub fn from_json(json: &'a Value) -> Val<'a> {
        match json {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::bool(*b),
            Value::Number(n) => Val::num(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Val::Str(s),
            Value::Array(_) | Value::Object(_) => Val::Json(json),
        }
    }

    pub fn from_doc(doc: &'a Doc<'a>) -> Val<'a> {
        match doc {
            Doc::Null => Val::Null,
            Doc::Bool(b) => Val::bool(*b),
            Doc::Num(n) => Val::num(*n),
            Doc::Str(s) => Val::DocStr(s),
            Doc::Arr(_) | Doc::Obj(_) => Val::Doc(doc),
            Doc::Whole(json) => Val::from_json(json),
            Doc::Absent => Val::Undef,
        }
    }

    pub fn num(n: f64) -> Val<'a> {
        Val::Num(Number(n.to_bits()))
    }

    pub fn bool(b: bool) -> Val<'a> {
        Val::Bool(Truth(u64::from(b)))
    }

    pub fn text(s: String) -> Val<'a> {
        Val::Text(Rc::new(s))
    }

    pub fn is_undef(&self) -> bool {
        matches!(self, Val::Undef)
    }

    /// Drops the value; only the kinds that own something reach the drop glue, which the
    /// compiler calls out of line (most values an evaluation drops are borrowed).
    #[inline(always)]
    pub fn discard(self) {
        if matches!(
            self,
            Val::Text(_) | Val::Arr(_) | Val::Obj(_) | Val::Func(_)
        ) {
            drop(self);
        } else {
            std::mem::forget(self);
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::Text(s) => Some(s),
            Val::DocStr(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_array(&self) -> bool {
        matches!(
            self,
            Val::Arr(_) | Val::Json(Value::Array(_)) | Val::Doc(Doc::Arr(_))
        )
    }

    pub fn is_object(&self) -> bool {
        matches!(
            self,
            Val::Obj(_) | Val::Json(Value::Object(_)) | Val::Doc(Doc::Obj(_))
        )
    }

    /// The items of an array value, `None` for anything else.
    pub fn array_items(&self) -> Option<Vec<Val<'a>>> {
        match self {
            Val::Arr(arr) => Some(arr.items.to_vec()),
            Val::Json(Value::Array(items)) => Some(items.iter().map(Val::from_json).collect()),
            Val::Doc(Doc::Arr(items)) => Some(items.iter().map(Val::from_doc).collect()),
            _ => None,
        }
    }

    /// The item at `index` of an array (without copying the others, as
    /// [`Val::array_items`] would).
    fn array_item(&self, index: usize) -> Option<Val<'a>> {
        match self {
            Val::Arr(arr) => arr.items.get(index).cloned(),
            Val::Json(Value::Array(items)) => items.get(index).map(Val::from_json),
            Val::Doc(Doc::Arr(items)) => items.get(index).map(Val::from_doc),
            _ => None,
        }
    }

    pub fn array_len(&self) -> Option<usize> {
        match self {
            Val::Arr(arr) => Some(arr.items.len()),
            Val::Json(Value::Array(items)) => Some(items.len()),
            Val::Doc(Doc::Arr(items)) => Some(items.len()),
            _ => None,
        }
    }

    fn is_sequence(&self) -> bool {
        matches!(self, Val::Arr(arr) if arr.sequence)
    }

    fn is_cons(&self) -> bool {
        matches!(self, Val::Arr(arr) if arr.cons)
    }

    pub fn sequence(items: Vec<Val<'a>>) -> Val<'a> {
        Val::Arr(Rc::new(Arr {
            items: Items::from_vec(items),
            sequence: true,
            ..Arr::default()
        }))
    }

    pub fn array(items: Vec<Val<'a>>) -> Val<'a> {
        Val::Arr(Rc::new(Arr {
            items: Items::from_vec(items),
            ..Arr::default()
        }))
    }

    /// The value of field `key` (JSONata `lookup`): mapped over arrays, flattening. `symbol`:
    /// the key's [`crate::doc::symbol`], or [`crate::doc::NO_SYMBOL`] when it has none.
    pub fn field(&self, key: &str, symbol: u32) -> Val<'a> {
        match self {
            Val::Json(Value::Object(map)) => get(map, key).map_or(Val::Undef, Val::from_json),
            Val::Doc(Doc::Obj(fields)) => {
                Doc::field(fields, key, symbol).map_or(Val::Undef, Val::from_doc)
            }
            Val::Obj(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map_or(Val::Undef, |(_, v)| v.clone()),
            Val::Json(Value::Array(_)) | Val::Doc(Doc::Arr(_)) | Val::Arr(_) => {
                let mut out = Vec::new();
                for item in self.array_items().unwrap_or_default() {
                    let value = item.field(key, symbol);
                    match value.array_items() {
                        Some(items) => out.extend(items),
                        None if value.is_undef() => {}
                        None => out.push(value),
                    }
                }
                Val::sequence(out)
            }
            _ => Val::Undef,
        }
    }

    /// JSONata's `$boolean`, with *undefined* as false.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Undef | Val::Null | Val::Func(_) => false,
            Val::Bool(b) => b.get(),
            Val::Num(n) => n.get() != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Text(s) => !s.is_empty(),
            Val::DocStr(s) => !s.is_empty(),
            Val::Json(Value::Object(map)) => !map.is_empty(),
            Val::Doc(Doc::Obj(fields)) => Doc::present(fields).next().is_some(),
            Val::Doc(Doc::Arr(items)) => match items.len() {
                1 => Val::from_doc(&items[0]).truthy(),
                _ => items.iter().any(|item| Val::from_doc(item).truthy()),
            },
            Val::Obj(pairs) => !pairs.is_empty(),
            Val::Json(Value::Array(items)) => match items.len() {
                1 => Val::from_json(&items[0]).truthy(),
                _ => items.iter().any(|item| Val::from_json(item).truthy()),
            },
            Val::Arr(arr) => match arr.items.len() {
                1 => arr.items[0].truthy(),
                _ => arr.items.iter().any(Val::truthy),
            },
            Val::Json(_) | Val::Doc(_) => false,
        }
    }

    /// The value as output JSON, numbers as the JSONata engine writes them.
    pub fn to_json(&self) -> Outcome<Option<Value>> {
        Ok(Some(match self {
            Val::Undef => return Ok(None),
            Val::Func(_) => return Err(Bail),
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b.get()),
            Val::Num(n) => json_number(n.get()),
            Val::Str(s) => Value::String((*s).clone()),
            Val::Text(s) => Value::String((**s).clone()),
            Val::DocStr(s) => Value::String(s.as_ref().to_owned()),
            Val::Json(json) => copy_json(json),
            Val::Doc(doc) => copy_json(&doc.to_value()),
            Val::Arr(arr) => Value::Array(
                arr.items
                    .iter()
                    .map(|item| Ok(item.to_json()?.unwrap_or(Value::Null)))
                    .collect::<Outcome<_>>()?,
            ),
            Val::Obj(pairs) => {
                let mut map = Map::with_capacity(pairs.len());
                for (key, value) in pairs.iter() {
                    if let Some(value) = value.to_json()? {
                        map.insert(key.as_str().ok_or(Bail)?.to_owned(), value);
                    }
                }
                Value::Object(map)
            }
        }))
    }
}

/// A field of an input object. Records have a few dozen fields at most, and comparing key
/// lengths and first bytes finds one sooner than hashing the name (many field names share a
/// length, and comparing them whole is a library call).
fn get<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    if map.len() > 32 {
        return map.get(key);
    }
    let first = key.as_bytes().first();
    map.iter()
        .find(|(candidate, _)| {
            candidate.len() == key.len()
                && candidate.as_bytes().first() == first
                && candidate.as_str() == key
        })
        .map(|(_, value)| value)
}

/// A number as JSON: integral values within 2^53 as integers, like the JSONata engine.
pub(crate) fn json_number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// Input JSON as the JSONata engine copies it into a result: every number through [`json_number`].
fn copy_json(json: &Value) -> Value {
    match json {
        Value::Number(n) => json_number(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(items) => Value::Array(items.iter().map(copy_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), copy_json(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Writes `value` as JSON text: exactly the bytes `serde_json` writes for [`Val::to_json`]'s
/// answer, without building it. On `Bail` the text written so far is the caller's to drop.
fn write_val(value: &Val<'_>, out: &mut Vec<u8>) -> Outcome<()> {
    match value {
        Val::Undef | Val::Null => out.extend_from_slice(b"null"),
        Val::Func(_) => return Err(Bail),
        Val::Bool(b) => out.extend_from_slice(if b.get() { b"true" } else { b"false" }),
        Val::Num(n) => write_number(n.get(), out),
        Val::Str(s) => write_str(s, out),
        Val::Text(s) => write_str(s, out),
        Val::DocStr(s) => write_doc_str(s, out),
        Val::Json(json) => write_input(json, out),
        Val::Doc(doc) => write_doc(doc, out),
        Val::Arr(arr) => {
            out.push(b'[');
            for (index, item) in arr.items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_val(item, out)?;
            }
            out.push(b']');
        }
        Val::Obj(pairs) => {
            out.push(b'{');
            let mut first = true;
            for (key, value) in pairs.iter() {
                if value.is_undef() {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(key.as_str().ok_or(Bail)?, out);
                out.push(b':');
                write_val(value, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Text of a [`Doc`]. Borrowed text is the provider's string as it stood between its quotes,
/// with no escape in it (the parser borrows only then), and valid JSON holds no control
/// character there: it is exactly what `serde_json` would write, so it is copied as it is.
#[expect(
    clippy::ptr_arg,
    reason = "whether the text is borrowed is what decides"
)]
#[inline(always)]
fn write_doc_str(text: &Cow<'_, str>, out: &mut Vec<u8>) {
    match text {
        Cow::Borrowed(text) => {
            out.reserve(text.len() + 2);
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        Cow::Owned(text) => write_str(text, out),
    }
}

/// [`write_doc_str`] without the quotes.
#[expect(
    clippy::ptr_arg,
    reason = "whether the text is borrowed is what decides"
)]
fn write_doc_str_contents(text: &Cow<'_, str>, out: &mut Vec<u8>) {
    match text {
        Cow::Borrowed(text) => out.extend_from_slice(text.as_bytes()),
        Cow::Owned(text) => write_str_contents(text, out),
    }
}

/// `$join(items, separator)` written as a JSON string, as [`builtins::join`] makes it and
/// [`write_str`] writes it; `Ok(false)` (nothing written) when the joined text is empty, which a
/// text guard answers as *undefined*.
fn write_joined(
    items: &[Val<'_>],
    separator: Option<&Val<'_>>,
    out: &mut Vec<u8>,
) -> Outcome<bool> {
    let separator = match separator {
        None => "",
        Some(separator) => separator.as_str().ok_or(Bail)?,
    };
    let start = out.len();
    out.push(b'"');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            write_str_contents(separator, out);
        }
        write_str_contents(item.as_str().ok_or(Bail)?, out);
    }
    if out.len() == start + 1 {
        out.truncate(start);
        return Ok(false);
    }
    out.push(b'"');
    Ok(true)
}

/// [`write_str`] without the quotes: JSON escapes are per character, so the parts of a string
/// written one after another are the whole string written.
fn write_str_contents(text: &str, out: &mut Vec<u8>) {
    if !needs_escape(text.as_bytes()) {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let start = out.len();
    write_str(text, out);
    out.pop();
    out.remove(start);
}

fn write_str(text: &str, out: &mut Vec<u8>) {
    // Most text needs no escape: checked in one pass and copied, as `serde_json` writes it.
    if !needs_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing to a Vec cannot fail, and a string always serializes.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Whether JSON text of `bytes` needs an escape: a control character, `"` or `\\` in it
/// (the page scanner's search for the end of a string, eight bytes at a time).
fn needs_escape(bytes: &[u8]) -> bool {
    crate::scan::find_special(bytes, 0).is_some()
}

fn write_number(n: f64, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, &json_number(n));
}

/// Input JSON as [`copy_json`] would copy it, written.
fn write_input(json: &Value, out: &mut Vec<u8>) {
    match json {
        Value::Number(n) => write_number(n.as_f64().unwrap_or(f64::NAN), out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_input(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (index, (key, value)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                write_input(value, out);
            }
            out.push(b'}');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

/// A [`Doc`] as [`write_input`] would write its tree.
fn write_doc(doc: &Doc<'_>, out: &mut Vec<u8>) {
    match doc {
        Doc::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Doc::Num(n) => write_number(*n, out),
        Doc::Str(s) => write_doc_str(s, out),
        // `Absent` is only ever a field's place, which the object around it leaves out.
        Doc::Null | Doc::Absent => out.extend_from_slice(b"null"),
        Doc::Whole(json) => write_input(json, out),
        Doc::Arr(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_doc(item, out);
            }
            out.push(b']');
        }
        Doc::Obj(fields) => {
            out.push(b'{');
            for (index, Field { key, value, .. }) in Doc::present(fields).enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                write_doc(value, out);
            }
            out.push(b'}');
        }
    }
}

/// The variables an evaluation is given: those bound, and names the caller declares may be
/// unbound (undefined when they are), where any other unbound name hands the evaluation to the
/// JSONata engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Variables {
    pub(crate) bound: Vec<(String, Value)>,
    pub(crate) absent: Vec<String>,
}

/// Evaluates `plan` over `input` and writes the answer to `out` as JSON text (see
/// [`write_val`]); `Ok(false)` is *undefined*, nothing written. On `Bail`, `out` is as it was.
pub(crate) fn evaluate_json(
    plan: &Plan,
    input: &Value,
    variables: &Variables,
    out: &mut Vec<u8>,
) -> Result<bool, Bail> {
    run_json(plan, Val::from_json(input), variables, out)
}

/// [`evaluate_json`] over a record parsed as a [`Doc`].
pub(crate) fn evaluate_doc_json(
    plan: &Plan,
    input: &Doc<'_>,
    variables: &Variables,
    out: &mut Vec<u8>,
) -> Result<bool, Bail> {
    run_json(plan, Val::from_doc(input), variables, out)
}

/// [`evaluate`] over a record parsed as a [`Doc`].
pub(crate) fn evaluate_doc(
    plan: &Plan,
    input: &Doc<'_>,
    variables: &Variables,
) -> Result<Option<Value>, Bail> {
    run(plan, Val::from_doc(input), variables)?.to_json()
}

/// Evaluates `plan` over `input` with the caller's `variables`; `Ok(None)` is *undefined*.
pub(crate) fn evaluate(
    plan: &Plan,
    input: &Value,
    variables: &Variables,
) -> Result<Option<Value>, Bail> {
    run(plan, Val::from_json(input), variables)?.to_json()
}

fn run<'a>(plan: &'a Plan, input: Val<'a>, variables: &'a Variables) -> Outcome<Val<'a>> {
    if input.is_array() {
        // The JSONata engine wraps an array input so it counts as one context value; not modelled.
        return Err(Bail);
    }
    Evaluator::new(plan, &input, variables).eval(&plan.root, &input)
}

/// [`run`] with the answer written to `out` (see [`write_val`]); on `Bail`, `out` is as it was.
fn run_json<'a>(
    plan: &'a Plan,
    input: Val<'a>,
    variables: &'a Variables,
    out: &mut Vec<u8>,
) -> Result<bool, Bail> {
    let start = out.len();
    write_run(plan, input, variables, out).inspect_err(|_| out.truncate(start))
}

/// A record's mapping most often ends in an object constructor with literal keys, alone or as
/// the last expression of the root block: that value is written as it comes
/// ([`Evaluator::write`]), without being made first (its pairs, its keys' checks and its drop
/// were a tenth of the work; its arrays and objects within, another tenth).
fn write_run<'a>(
    plan: &'a Plan,
    input: Val<'a>,
    variables: &'a Variables,
    out: &mut Vec<u8>,
) -> Outcome<bool> {
    if input.is_array() {
        return Err(Bail);
    }
    let evaluator = Evaluator::new(plan, &input, variables);
    let root = &plan.root;
    let last = match &root.op {
        Op::Block { exprs, frame, .. }
            if root.finished && root.filters.is_empty() && !root.keep_array =>
        {
            // What running the block does before its last expression (`Evaluator::block`);
            // the last one's value is the block's (a function in it fails the writing, as it
            // fails the block).
            evaluator.count_step()?;
            evaluator.open(frame.clone());
            let Some((last, rest)) = exprs.split_last() else {
                return Ok(false);
            };
            for expr in rest {
                evaluator.eval(expr, &input)?.discard();
            }
            last
        }
        _ => root,
    };
    evaluator.write(last, &input, out)
}

/// How a node is run: see [`Node::run`](super::Node).
pub(super) type Run = for<'a> fn(&Evaluator<'a>, &'a Node, &Val<'a>) -> Outcome<Val<'a>>;

/// The runner for `node`. Nodes with filters, and the kinds seldom met in a record's mapping,
/// run through [`run_general`]; the others have a function of their own, small enough that
/// entering it costs a few instructions.
pub(super) fn runner(node: &Node) -> Run {
    if let (Op::Array(_), [Filter::Index(n)]) = (&node.op, node.filters.as_slice())
        && *n >= 0.0
    {
        return run_array_pick;
    }
    if !node.filters.is_empty() {
        return run_general;
    }
    if !node.finished {
        return match node.op {
            Op::Context => run_context,
            Op::Name(..) => run_name,
            _ => run_general,
        };
    }
    match &node.op {
        Op::Variable(_) => run_variable,
        Op::Constant(_) => run_constant,
        Op::Path {
            fields_only: true, ..
        } => run_fields,
        Op::Binary(..) => run_binary,
        Op::TypeIs { .. } => run_type_is,
        Op::And(..) => run_and,
        Op::Or(..) => run_or,
        Op::Condition(_, then, None) if is_bare_context(then) => run_guard,
        Op::Condition(..) => run_condition,
        Op::Call { .. } => run_call,
        Op::Inline(..) => run_inline,
        Op::InlineOver { body, .. } if is_text_guard(body) => run_text_guard,
        Op::InlineOver { .. } => run_inline_over,
        Op::Object { .. } => run_object,
        Op::Array(_) => run_array,
        _ => run_general,
    }
}

/// How a node is tested as a Boolean: see [`Node::test`](super::Node).
pub(super) type Test = for<'a> fn(&Evaluator<'a>, &'a Node, &Val<'a>) -> Outcome<bool>;

/// The tester for `node`: the Boolean-valued kinds answer directly, any other node is
/// evaluated and its value tested ([`test_value`]).
pub(super) fn tester(node: &Node) -> Test {
    if !node.filters.is_empty() || !node.finished {
        return test_value;
    }
    match &node.op {
        Op::And(..) => test_and,
        Op::Or(..) => test_or,
        Op::TypeIs { .. } => test_type_is,
        Op::Binary(Binary::Eq | Binary::Ne, ..) => test_equal,
        Op::InlineOver { body, arg } if is_text_guard(body) && is_fields_path(arg) => {
            test_text_field
        }
        Op::InlineOver { body, .. } if is_text_guard(body) => test_text_guard,
        _ => test_value,
    }
}

/// How a node's value is written as JSON text where it is written at once (the value of a
/// pair of the record's object, or of an object or array being written): see
/// [`Node::write`](super::Node) and [`Evaluator::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Writer {
    /// Evaluated, then written ([`write_val`]).
    Value,
    /// An object constructor with literal keys: each pair written as its value comes.
    Object,
    /// An array constructor: each item written as it comes.
    Array,
    /// `condition ? then : else`: the branch chosen, written.
    Condition,
    /// A call of a function whose body [`is_non_empty_guard`], over its argument: the argument
    /// written, and taken back when it is an empty array.
    NonEmpty,
    /// A `$str` text guard ([`is_text_guard`]) over a call of `$join`: the joined text written
    /// as its parts come ([`Evaluator::write_text_guard`]).
    TextGuard,
    /// A `$str` text guard over a record's own field path (`$str(profile.login)`): the field
    /// looked up in the record's [`Doc`] and its text written as it stands, no value made
    /// ([`Evaluator::write_text_field`]).
    TextField,
    /// `[g, h, …][0]` of text guards: the first guard's text written, the rest still run
    /// ([`Evaluator::write_pick`]).
    Pick,
    /// A plain literal (`"type": "work"`): its text, written at link ([`constant_text`]),
    /// copied.
    Constant,
}

/// A literal's JSON text, as [`write_val`] writes its value: made once, when the plan is
/// linked, instead of each time a record writes it.
pub(super) fn constant_text(value: &Value) -> Box<[u8]> {
    let mut text = Vec::new();
    match write_val(&Val::from_json(value), &mut text) {
        Ok(()) => text.into(),
        // Never for a JSON value; an empty text leaves the node to the general writer.
        Err(Bail) => Box::default(),
    }
}

/// The writer for `node`. Only a plain node's value is the value of its op (no filter, no
/// `[]`, nothing to finish); any other is evaluated and written.
pub(super) fn writer(node: &Node) -> Writer {
    // `[…][0]` as `run_array_pick` takes it: an index from 0 below 1 picks the first item.
    if let (Op::Array(items), [Filter::Index(n)]) = (&node.op, node.filters.as_slice())
        && (0.0..1.0).contains(n)
        && node.stages.is_empty()
        && !node.keep_array
        && items.iter().all(|item| is_text_guard_node(&item.node))
    {
        return Writer::Pick;
    }
    if !is_plain(node) {
        return Writer::Value;
    }
    match &node.op {
        Op::InlineOver { arg, .. } if is_text_guard_node(node) && is_join_call(arg) => {
            Writer::TextGuard
        }
        Op::InlineOver { arg, .. } if is_text_guard_node(node) && is_fields_path(arg) => {
            Writer::TextField
        }
        Op::Object {
            literal_keys: true, ..
        } => Writer::Object,
        Op::Array(_) => Writer::Array,
        Op::Condition(..) => Writer::Condition,
        Op::InlineOver { body, .. } if is_non_empty_guard(body) => Writer::NonEmpty,
        Op::Constant(_) => Writer::Constant,
        _ => Writer::Value,
    }
}

/// `=` / `!=` as a condition: text compared in place, anything else as [`binary`] does.
fn test_equal<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
    let Op::Binary(op, lhs, rhs) = &node.op else {
        return Err(Bail);
    };
    let lhs = ev.eval(lhs, input)?;
    let rhs = ev.eval(rhs, input)?;
    let answer = match (lhs.as_str(), rhs.as_str()) {
        (Some(a), Some(b)) => (a == b) == (*op == Binary::Eq),
        _ => binary(*op, &lhs, &rhs)?.truthy(),
    };
    lhs.discard();
    rhs.discard();
    Ok(answer)
}

/// JSONata's `$boolean` of the node's value, *undefined* false.
pub(super) fn test_value<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
    let value = ev.eval(node, input)?;
    if let Val::Bool(truth) = value {
        std::mem::forget(value); // nothing to drop, and no call to the drop glue
        return Ok(truth.get());
    }
    let truth = value.truthy();
    value.discard();
    Ok(truth)
}

fn test_and<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
    let Op::And(lhs, rhs) = &node.op else {
        return Err(Bail);
    };
    Ok(ev.test(lhs, input)? && ev.test(rhs, input)?)
}

fn test_or<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
    let Op::Or(lhs, rhs) = &node.op else {
        return Err(Bail);
    };
    Ok(ev.test(lhs, input)? || ev.test(rhs, input)?)
}

fn test_type_is<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
    let Op::TypeIs {
        arg,
        type_name,
        equal,
    } = &node.op
    else {
        return Err(Bail);
    };
    if ev.type_shadowed {
        return Err(Bail);
    }
    let value = ev.eval(arg, input)?;
    let answer = builtins::type_of(&value).is_some_and(|actual| (actual == *type_name) == *equal);
    value.discard();
    Ok(answer)
}

/// Any node: its op, its filters, and JSONata's finish.
pub(super) fn run_general<'a>(
    ev: &Evaluator<'a>,
    node: &'a Node,
    input: &Val<'a>,
) -> Outcome<Val<'a>> {
    ev.count_step()?;
    if node.finished {
        return ev.eval_op(node, input);
    }
    let mut result = ev.eval_op(node, input)?;
    for filter in &node.filters {
        result = ev.filter(filter, result)?;
    }
    Ok(finish(result, node.keep_array))
}

fn run_context<'a>(_: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    Ok(finish(input.clone(), node.keep_array))
}

fn run_name<'a>(_: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Name(name, symbol) = &node.op else {
        return Err(Bail);
    };
    Ok(finish(input.field(name, *symbol), node.keep_array))
}

fn run_variable<'a>(ev: &Evaluator<'a>, node: &'a Node, _: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Variable(var) = &node.op else {
        return Err(Bail);
    };
    ev.variable(var)
}

fn run_constant<'a>(_: &Evaluator<'a>, node: &'a Node, _: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Constant(value) = &node.op else {
        return Err(Bail);
    };
    Ok(Val::from_json(value))
}

fn run_fields<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Path {
        steps,
        symbols,
        hints,
        ..
    } = &node.op
    else {
        return Err(Bail);
    };
    if let Val::Doc(doc) = input
        && !symbols.is_empty()
        && let Some(value) = doc_fields(symbols, hints, doc)
    {
        return Ok(value);
    }
    ev.fields(steps, input)
}

/// A record's own path (`profile.login`, by its steps' symbols) over its objects parsed as a
/// [`Doc`], as a value ([`doc_path`]); `None` where the general walk takes it.
fn doc_fields<'a>(symbols: &[u32], hints: &[Hint], doc: &'a Doc<'a>) -> Option<Val<'a>> {
    match doc_path(symbols, hints, doc) {
        DocPath::Found(at) => Some(Val::from_doc(at)),
        DocPath::Undefined => Some(Val::Undef),
        DocPath::General => None,
    }
}

/// What a record's own path finds over its objects parsed as a [`Doc`].
enum DocPath<'a> {
    /// The value at the path's end.
    Found(&'a Doc<'a>),
    /// A step found no field, or met a value that is not an object: *undefined*.
    Undefined,
    /// An array or a value kept whole met on the way, which the general walk takes.
    General,
}

/// A record's own path over its objects parsed as a [`Doc`]: each field found by its symbol,
/// first where the step found it last time (its hint), nothing made.
#[inline(always)]
fn doc_path<'a>(symbols: &[u32], hints: &[Hint], doc: &'a Doc<'a>) -> DocPath<'a> {
    // A plain loop over the steps (asking the zipped iterator afterwards how many steps were
    // left cost about five instructions a lookup).
    let mut at = doc;
    for (&symbol, hint) in symbols.iter().zip(hints) {
        let Doc::Obj(fields) = at else {
            return match at {
                Doc::Arr(_) | Doc::Whole(_) => DocPath::General,
                _ => DocPath::Undefined,
            };
        };
        at = match Doc::field_hinted(fields, symbol, hint) {
            Some(value) => value,
            None => return DocPath::Undefined,
        };
    }
    DocPath::Found(at)
}

fn run_binary<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Binary(op, lhs, rhs) = &node.op else {
        return Err(Bail);
    };
    let lhs = ev.eval(lhs, input)?;
    let rhs = ev.eval(rhs, input)?;
    let result = binary(*op, &lhs, &rhs);
    lhs.discard();
    rhs.discard();
    result
}

fn run_type_is<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    test_type_is(ev, node, input).map(Val::bool)
}

fn run_and<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::And(lhs, rhs) = &node.op else {
        return Err(Bail);
    };
    Ok(Val::bool(ev.test(lhs, input)? && ev.test(rhs, input)?))
}

fn run_or<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Or(lhs, rhs) = &node.op else {
        return Err(Bail);
    };
    Ok(Val::bool(ev.test(lhs, input)? || ev.test(rhs, input)?))
}

fn run_condition<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Condition(condition, then, otherwise) = &node.op else {
        return Err(Bail);
    };
    if ev.test(condition, input)? {
        return ev.eval(then, input);
    }
    match otherwise {
        Some(otherwise) => ev.eval(otherwise, input),
        None => Ok(Val::Undef),
    }
}

/// `condition ? $`: the context when the condition holds (the shape of a guard such as
/// `function($v) { $type($v) = "string" ? $v }` run over its argument), read in place.
fn run_guard<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Condition(condition, ..) = &node.op else {
        return Err(Bail);
    };
    if ev.test(condition, input)? {
        return Ok(finish(input.clone(), false));
    }
    Ok(Val::Undef)
}

/// A node whose value is its op's: no filters or stages, nothing to finish, no `[]`.
fn is_plain(node: &Node) -> bool {
    node.filters.is_empty() && node.stages.is_empty() && node.finished && !node.keep_array
}

/// `$` with nothing applied to it.
fn is_bare_context(node: &Node) -> bool {
    matches!(node.op, Op::Context)
        && node.filters.is_empty()
        && node.stages.is_empty()
        && !node.keep_array
}

fn run_call<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Call {
        name,
        builtin,
        args,
    } = &node.op
    else {
        return Err(Bail);
    };
    ev.call_named(name, *builtin, args, input)
}

fn run_inline<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Inline(lambda, args) = &node.op else {
        return Err(Bail);
    };
    ev.inline(lambda, args, input)
}

fn run_inline_over<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::InlineOver { body, arg } = &node.op else {
        return Err(Bail);
    };
    ev.inline_over(body, arg, input)
}

/// Whether `body` is `$type($) = "string" and $ != "" ? $`: the body of the helper nearly
/// every mapping binds (`$str := function($v) { $type($v) = "string" and $v != "" ? $v }`),
/// run over its argument. Each of its nodes must be plain (no filters or stages, finished, not
/// kept as an array): then [`runner`] and [`tester`] give them the functions whose answer
/// [`run_text_guard`] gives in one step.
fn is_text_guard(body: &Node) -> bool {
    let Op::Condition(condition, then, None) = &body.op else {
        return false;
    };
    let Op::And(is_text, not_empty) = &condition.op else {
        return false;
    };
    let type_is_text = matches!(
        &is_text.op,
        Op::TypeIs { arg, type_name, equal: true }
            if is_bare_context(arg) && Some(*type_name) == builtins::type_named("string")
    );
    let differs_from_empty = matches!(
        &not_empty.op,
        Op::Binary(Binary::Ne, lhs, rhs)
            if is_bare_context(lhs)
                && is_plain(rhs)
                && matches!(&rhs.op, Op::Constant(Value::String(text)) if text.is_empty())
    );
    [body, condition, is_text, not_empty]
        .into_iter()
        .all(is_plain)
        && is_bare_context(then)
        && type_is_text
        && differs_from_empty
}

/// A plain call of a helper whose body [`is_text_guard`] over its argument: the node
/// [`runner`] runs with [`run_text_guard`], whose answer is non-empty text or *undefined*.
fn is_text_guard_node(node: &Node) -> bool {
    is_plain(node) && matches!(&node.op, Op::InlineOver { body, .. } if is_text_guard(body))
}

/// A plain path of bare field names: the node [`runner`] runs with [`run_fields`].
fn is_fields_path(node: &Node) -> bool {
    is_plain(node)
        && matches!(
            node.op,
            Op::Path {
                fields_only: true,
                ..
            }
        )
}

/// A plain call of `$join` over an array constructor, with at most a separator besides: the
/// call [`Evaluator::call_named`] answers with [`Evaluator::join_constructed`] unless a
/// binding shadows `$join`. (By the constructor's shape, not its writer: `compile::link`
/// chooses a node's writer before its children's.)
fn is_join_call(node: &Node) -> bool {
    is_plain(node)
        && matches!(&node.op, Op::Call { builtin: Some(Builtin::Join), args, .. }
            if matches!(args.as_slice(), [list, rest @ ..]
                if is_plain(list) && matches!(list.op, Op::Array(_)) && rest.len() <= 1))
}

/// Whether `body` is `$count($) > 0 ? $`: the body of the other helper many mappings bind
/// (`$nonEmpty := function($items) { $count($items) > 0 ? $items }`), run over its argument,
/// with `$count` the built-in (no frame of the plan binds the name). Its answer is the
/// argument unless that is *undefined* or an empty array, the only values `$count` gives 0:
/// [`Evaluator::write_non_empty`] writes the argument and takes it back when it wrote `[]`.
fn is_non_empty_guard(body: &Node) -> bool {
    let Op::Condition(condition, then, None) = &body.op else {
        return false;
    };
    let Op::Binary(Binary::Gt, count, zero) = &condition.op else {
        return false;
    };
    let counts_context = matches!(
        &count.op,
        Op::Call { name, builtin: Some(Builtin::Count), args }
            if name.slots.is_empty() && matches!(args.as_slice(), [arg] if is_bare_context(arg))
    );
    let is_zero = matches!(&zero.op, Op::Constant(Value::Number(n)) if n.as_f64() == Some(0.0));
    [body, condition, count, zero].into_iter().all(is_plain)
        && is_bare_context(then)
        && counts_context
        && is_zero
}

/// An [`Op::InlineOver`] whose body [`is_text_guard`]: the argument when it is non-empty text,
/// else *undefined*, without running the body's five nodes. As they would: the argument is
/// finished first (a sequence of one string is that string), and a shadowed `$type` goes to
/// the JSONata engine.
fn run_text_guard<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::InlineOver { arg, .. } = &node.op else {
        return Err(Bail);
    };
    ev.count_step()?;
    let value = finish(ev.eval(arg, input)?, false);
    if ev.type_shadowed {
        value.discard();
        return Err(Bail);
    }
    if value.as_str().is_some_and(|text| !text.is_empty()) {
        return Ok(value);
    }
    value.discard();
    Ok(Val::Undef)
}

/// [`run_text_guard`] as a condition (`$str(profile.email) ? {…}`): whether the argument is
/// non-empty text, which is whether the guard's answer (that text, or *undefined*) is true,
/// without making the answer to test it.
fn test_text_guard<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
    let Op::InlineOver { arg, .. } = &node.op else {
        return Err(Bail);
    };
    ev.count_step()?;
    let value = finish(ev.eval(arg, input)?, false);
    let truth = value.as_str().is_some_and(|text| !text.is_empty());
    value.discard();
    if ev.type_shadowed {
        return Err(Bail);
    }
    Ok(truth)
}

/// [`test_text_guard`] over a record's own field path ([`Writer::TextField`]'s kind): the
/// field looked up in the record's [`Doc`], no value made.
fn test_text_field<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
    match ev.text_field_answer(node, input)? {
        Some(text) => Ok(text.is_some()),
        None => test_text_guard(ev, node, input),
    }
}

/// What a `$str` text guard over a record's own field path answers, read from the record's
/// [`Doc`] without making a value.
enum FieldText<'a> {
    /// Non-empty text, the guard's answer.
    Text(&'a Cow<'a, str>),
    /// No field, or a value that is not non-empty text: *undefined*.
    Not,
    /// An array or a value kept whole met on the way, or an input that is not a `Doc`: for
    /// the general walk.
    General,
}

/// The text a text guard whose argument is a plain path of field names ([`is_fields_path`])
/// finds in `input` (see [`FieldText`]).
#[inline(always)]
fn text_field<'a>(node: &'a Node, input: &Val<'a>) -> FieldText<'a> {
    let (Val::Doc(doc), Op::InlineOver { arg, .. }) = (input, &node.op) else {
        return FieldText::General;
    };
    let Op::Path { symbols, hints, .. } = &arg.op else {
        return FieldText::General;
    };
    if symbols.is_empty() {
        return FieldText::General;
    }
    match doc_path(symbols, hints, doc) {
        DocPath::Found(Doc::Str(text)) if !text.is_empty() => FieldText::Text(text),
        // An array found at the end is not text either: the guard's `$type` says "array".
        DocPath::Found(_) | DocPath::Undefined => FieldText::Not,
        DocPath::General => FieldText::General,
    }
}

fn run_object<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Object {
        pairs,
        literal_keys,
        ..
    } = &node.op
    else {
        return Err(Bail);
    };
    ev.object(pairs, *literal_keys, input)
}

/// `[a, b, …][n]` with `n` a number literal from 0 up (the "first of" idiom, `[…][0]`): every
/// item is evaluated (an error in any still fails the node), but only the picked one is kept;
/// neither the array nor the one-item sequence the filter makes is built. The answer is
/// [`run_general`]'s: [`Evaluator::array`], then [`Evaluator::filter`], then [`finish`].
fn run_array_pick<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let (Op::Array(items), [Filter::Index(n)]) = (&node.op, node.filters.as_slice()) else {
        return Err(Bail);
    };
    ev.count_step()?;
    // `position` of a number from 0 up: its floor, when the array is that long.
    let wanted = n.floor() as usize;
    let mut seen = 0usize;
    let mut picked = None;
    for item in items {
        let value = ev.eval(&item.node, input)?;
        if value.is_undef() {
            continue;
        }
        // An array's items are flattened in, unless the item is an array constructor itself.
        let flattened = value.array_len().filter(|_| !item.nested_constructor);
        let count = flattened.unwrap_or(1);
        if picked.is_none() && wanted < seen + count {
            picked = match flattened {
                Some(_) => value.array_item(wanted - seen),
                None => Some(value),
            };
        } else {
            value.discard();
        }
        seen += count;
    }
    Ok(match picked {
        None => Val::Undef,
        Some(item) if item.is_array() => finish(item, node.keep_array),
        Some(item) if node.keep_array => finish(Val::sequence(vec![item]), true),
        Some(item) => item,
    })
}

fn run_array<'a>(ev: &Evaluator<'a>, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
    let Op::Array(items) = &node.op else {
        return Err(Bail);
    };
    ev.array(node, items, input)
}

pub(super) struct Evaluator<'a> {
    root: Val<'a>,
    variables: &'a Variables,
    depth: Cell<u32>,
    steps: Cell<u32>,
    /// The variables, by slot (see [`Plan`]); `None` is not bound (yet) in this activation.
    /// Inline for the few variables a mapping has: an evaluation per record allocates nothing
    /// for them. Twelve: 99% of all the mappings' evaluations over their fixtures use at
    /// most that many; at sixteen the array was copied into place by three `memcpy` calls a
    /// record (a tenth of the smallest mapping's instructions), at twelve by moves in line.
    slots: RefCell<SmallVec<[Option<Val<'a>>; 12]>>,
    /// The caller binds `$type` to a value: the built-in is not what the name calls.
    type_shadowed: bool,
    /// The functions being evaluated, by number: one is not entered again.
    running: SmallVec<[Cell<bool>; 8]>,
}

impl Drop for Evaluator<'_> {
    /// The slots' values, dropped without a call to the drop glue for each borrowed one.
    fn drop(&mut self) {
        for value in self.slots.get_mut().drain(..).flatten() {
            value.discard();
        }
    }
}

impl<'a> Evaluator<'a> {
    #[inline(always)]
    fn new(plan: &Plan, input: &Val<'a>, variables: &'a Variables) -> Evaluator<'a> {
        Evaluator {
            root: input.clone(),
            variables,
            depth: Cell::new(0),
            steps: Cell::new(0),
            slots: RefCell::new(smallvec::smallvec![None; plan.slots as usize]),
            running: (0..plan.lambdas).map(|_| Cell::new(false)).collect(),
            type_shadowed: variables.bound.iter().any(|(name, _)| name == "type"),
        }
    }

    #[inline(always)]
    fn eval(&self, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
        (node.run)(self, node, input)
    }

    /// Counts a step of the evaluation: past [`MAX_STEPS`], the JSONata engine answers.
    #[inline(always)]
    fn count_step(&self) -> Outcome<()> {
        let steps = self.steps.get() + 1;
        if steps > MAX_STEPS {
            return Err(Bail);
        }
        self.steps.set(steps);
        Ok(())
    }

    fn eval_op(&self, node: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
        Ok(match &node.op {
            Op::Context => input.clone(),
            Op::Root => self.root.clone(),
            // Helpers' values are returned as they are, not moved through here.
            Op::Variable(var) => return self.variable(var),
            Op::Constant(value) => Val::from_json(value),
            Op::Name(name, symbol) => input.field(name, *symbol),
            Op::Path {
                steps,
                keep_singleton,
                fields_only,
                ..
            } => {
                if *fields_only {
                    return self.fields(steps, input);
                }
                finish(self.path(steps, *keep_singleton, input)?, false)
            }
            Op::Array(items) => return self.array(node, items, input),
            Op::Object {
                pairs,
                literal_keys,
                ..
            } => return self.object(pairs, *literal_keys, input),
            // Operands are read where the callee wrote them (`let Ok(x) = &…`), not moved out.
            Op::Binary(op, lhs, rhs) => {
                let lhs = self.eval(lhs, input);
                let Ok(lhs) = &lhs else { return Err(Bail) };
                let rhs = self.eval(rhs, input);
                let Ok(rhs) = &rhs else { return Err(Bail) };
                return binary(*op, lhs, rhs);
            }
            Op::TypeIs {
                arg,
                type_name,
                equal,
            } => {
                if self.type_shadowed {
                    return Err(Bail);
                }
                let value = self.eval(arg, input);
                let Ok(value) = &value else { return Err(Bail) };
                match builtins::type_of(value) {
                    Some(actual) => Val::bool((actual == *type_name) == *equal),
                    None => Val::bool(false),
                }
            }
            Op::And(lhs, rhs) => Val::bool(self.test(lhs, input)? && self.test(rhs, input)?),
            Op::Or(lhs, rhs) => Val::bool(self.test(lhs, input)? || self.test(rhs, input)?),
            Op::Negate(expr) => match self.eval(expr, input)? {
                Val::Undef => Val::Undef,
                Val::Num(n) => Val::num(-n.get()),
                _ => return Err(Bail),
            },
            // The branches' values are returned as they are, not moved through here.
            Op::Condition(condition, then, otherwise) => {
                if self.test(condition, input)? {
                    return self.eval(then, input);
                }
                match otherwise {
                    Some(otherwise) => return self.eval(otherwise, input),
                    None => Val::Undef,
                }
            }
            Op::Coalesce(lhs, rhs) => match self.eval(lhs, input)? {
                Val::Undef => return self.eval(rhs, input),
                value => value,
            },
            Op::Default(lhs, rhs) => {
                let value = self.eval(lhs, input)?;
                if let Val::Func(_) = value {
                    return Err(Bail);
                }
                if !value.truthy() {
                    return self.eval(rhs, input);
                }
                value
            }
            Op::Block { exprs, frame, .. } => return self.block(exprs, frame, input),
            Op::Bind(var, value) => {
                // The innermost frame's slot; the compiler gives every `:=` one.
                let Some(&slot) = var.slots.first() else {
                    return Err(Bail);
                };
                let value = self.eval(value, input)?;
                self.slots.borrow_mut()[slot as usize] = Some(value.clone());
                value
            }
            Op::Lambda(lambda) => Val::Func(Rc::new(Closure {
                lambda,
                input: input.clone(),
            })),
            Op::Call {
                name,
                builtin,
                args,
            } => return self.call_named(name, *builtin, args, input),
            Op::Inline(lambda, args) => return self.inline(lambda, args, input),
            Op::InlineOver { body, arg } => return self.inline_over(body, arg, input),
        })
    }

    fn array(&self, node: &'a Node, items: &'a [Item], input: &Val<'a>) -> Outcome<Val<'a>> {
        Ok(Val::Arr(Rc::new(Arr {
            items: self.array_items(items, input)?,
            cons: node.cons_array,
            ..Arr::default()
        })))
    }

    /// The items of an array constructor: each item's value, an array's items flattened in
    /// unless the item is an array constructor itself, *undefined* left out.
    fn array_items(&self, items: &'a [Item], input: &Val<'a>) -> Outcome<Items<'a>> {
        let mut out = Items::with_capacity(items.len());
        for item in items {
            let value = self.eval(&item.node, input)?;
            if value.is_undef() {
                continue;
            }
            match value.array_items() {
                Some(values) if !item.nested_constructor => out.extend(values),
                _ => out.push(value),
            }
        }
        Ok(out)
    }

    /// `$join([a, b, …], separator)`, the built-in: the constructor's items joined where they
    /// are made, without making the array (in 133 of the mappings, mostly a name from its
    /// parts). The same order and errors as the call: the items, then the separator.
    fn join_constructed(
        &self,
        list: &'a Node,
        separator: Option<&'a Node>,
        input: &Val<'a>,
    ) -> Outcome<Val<'a>> {
        let Op::Array(items) = &list.op else {
            return Err(Bail);
        };
        let items = self.array_items(items, input)?;
        let separator = separator.map(|node| self.eval(node, input)).transpose()?;
        let answer = builtins::join(&items, separator.as_ref());
        items.into_iter().for_each(Val::discard);
        if let Some(separator) = separator {
            separator.discard();
        }
        answer
    }

    fn object(
        &self,
        pairs: &'a [(Node, Node)],
        literal_keys: bool,
        input: &Val<'a>,
    ) -> Outcome<Val<'a>> {
        if input.is_array() {
            // Over an array, an object constructor groups its items: not modelled.
            return Err(Bail);
        }
        let mut out = Pairs::with_capacity(pairs.len());
        if literal_keys {
            for (key, value) in pairs {
                let value = self.eval(value, input)?;
                if !value.is_undef()
                    && let Op::Constant(Value::String(key)) = &key.op
                {
                    out.push((Val::Str(key), value));
                }
            }
            return Ok(Val::Obj(Rc::new(out)));
        }
        let mut keys: Vec<Val<'a>> = Vec::with_capacity(pairs.len());
        for (key, _) in pairs {
            let key = self.eval(key, input)?;
            if !key.is_undef() && key.as_str().is_none() {
                return Err(Bail);
            }
            if let Some(text) = key.as_str()
                && keys.iter().any(|k| k.as_str() == Some(text))
            {
                return Err(Bail); // two pairs with one key: a JSONata engine error
            }
            keys.push(key);
        }
        for (key, (_, value)) in keys.into_iter().zip(pairs) {
            if key.is_undef() {
                continue;
            }
            let value = self.eval(value, input)?;
            if !value.is_undef() {
                out.push((key, value));
            }
        }
        Ok(Val::Obj(Rc::new(out)))
    }

    fn block(&self, exprs: &'a [Node], frame: &Range<u32>, input: &Val<'a>) -> Outcome<Val<'a>> {
        self.open(frame.clone());
        let Some((last, rest)) = exprs.split_last() else {
            return Ok(Val::Undef);
        };
        for expr in rest {
            self.eval(expr, input)?;
        }
        let result = self.eval(last, input);
        if !frame.is_empty()
            && let Ok(value) = &result
            && escapes(value)
        {
            return Err(Bail);
        }
        result
    }

    fn call_named(
        &self,
        name: &'a Var,
        builtin: Option<Builtin>,
        args: &'a [Node],
        input: &Val<'a>,
    ) -> Outcome<Val<'a>> {
        // The function first, then its arguments, as JSONata does.
        let closure = match self.function(name)? {
            Some(closure) => Some(closure),
            None if builtin.is_some() && self.variable_value(&name.text).is_none() => None,
            None => return Err(Bail),
        };
        if let (Some(closure), [arg]) = (&closure, args) {
            let value = self.eval(arg, input)?;
            return self.call(closure, [value]);
        }
        if closure.is_none()
            && let (Some(Builtin::Join), [list, separator @ ..]) = (builtin, args)
            && list.write == Writer::Array
            && separator.len() <= 1
        {
            return self.join_constructed(list, separator.first(), input);
        }
        if let (None, Some(builtin), [first, second @ ..]) = (&closure, builtin, args)
            && second.len() <= 1
        {
            return self.call_builtin(builtin, first, second.first(), input);
        }
        let mut values: SmallVec<[Val<'a>; 4]> = SmallVec::new();
        for arg in args {
            values.push(self.eval(arg, input)?);
        }
        match (closure, builtin) {
            (Some(closure), _) => self.call(&closure, values),
            (None, Some(builtin)) => Ok(finish(builtins::call(builtin, &values)?, false)),
            (None, None) => Err(Bail),
        }
    }

    /// A built-in's call with one or two arguments (nearly all of them), its arguments held
    /// in place and discarded one by one: most are borrowed, and a list's drop glue cost about
    /// 70 instructions a call (a seventh of a `$lookup`).
    fn call_builtin(
        &self,
        builtin: Builtin,
        first: &'a Node,
        second: Option<&'a Node>,
        input: &Val<'a>,
    ) -> Outcome<Val<'a>> {
        let first = self.eval(first, input)?;
        let answer = match second {
            None => {
                let answer = builtins::call(builtin, std::slice::from_ref(&first));
                first.discard();
                answer
            }
            Some(second) => {
                let second = match self.eval(second, input) {
                    Ok(second) => second,
                    Err(bail) => {
                        first.discard();
                        return Err(bail);
                    }
                };
                let values = [first, second];
                let answer = builtins::call(builtin, &values);
                values.into_iter().for_each(Val::discard);
                answer
            }
        };
        Ok(finish(answer?, false))
    }

    /// Writes the value of `node` over `input` to `out`: the text [`write_val`] writes for
    /// what [`Evaluator::eval`] answers, with the same errors, but an object or array constructor
    /// (or a condition or `$nonEmpty` call around one) is written as its parts come, never
    /// made. `Ok(false)` is *undefined*: nothing written. On `Bail`, what was written is the
    /// caller's to drop.
    #[inline(always)]
    fn write(&self, node: &'a Node, input: &Val<'a>, out: &mut Vec<u8>) -> Outcome<bool> {
        // Most values are of the first kind: that case is inlined where a value is written, the
        // others are a call (entering one function for all of them cost about 30 instructions
        // a value, its registers saved and restored: 2.2% of the gateway's on the Okta page).
        match node.write {
            Writer::Value => self.write_value(node, input, out),
            Writer::TextField => self.write_text_field(node, input, out),
            _ => self.write_made(node, input, out),
        }
    }

    /// [`Evaluator::write`] of a [`Writer::TextField`]: what [`run_text_guard`] answers over
    /// [`run_fields`], written. Over a record's [`Doc`], non-empty text found at the path's end
    /// is written as it stands and anything else is *undefined*; where the walk meets an array
    /// or a value kept whole on the way, or the input is not a `Doc`, the guard is evaluated
    /// and written as any value.
    #[inline(never)]
    fn write_text_field(
        &self,
        node: &'a Node,
        input: &Val<'a>,
        out: &mut Vec<u8>,
    ) -> Outcome<bool> {
        let Some(text) = self.text_field_answer(node, input)? else {
            return self.write_value_apart(node, input, out);
        };
        Ok(match text {
            Some(text) => {
                write_doc_str(text, out);
                true
            }
            None => false,
        })
    }

    /// What a [`Writer::TextField`] node answers over `input`: `Some(Some(text))` to write,
    /// `Some(None)` for *undefined*, `None` where it is evaluated the general way
    /// ([`FieldText::General`]). As `run_text_guard`: a step, and a shadowed `$type` to the
    /// JSONata engine.
    #[inline(always)]
    fn text_field_answer(
        &self,
        node: &'a Node,
        input: &Val<'a>,
    ) -> Outcome<Option<Option<&'a Cow<'a, str>>>> {
        let text = match text_field(node, input) {
            FieldText::Text(text) => Some(text),
            FieldText::Not => None,
            FieldText::General => return Ok(None),
        };
        self.count_step()?;
        if self.type_shadowed {
            return Err(Bail);
        }
        Ok(Some(text))
    }

    /// [`Evaluator::write_value`] as a call of its own, for the rare cases of a writer that
    /// would otherwise carry its registers on every value.
    #[inline(never)]
    #[cold]
    fn write_value_apart(
        &self,
        node: &'a Node,
        input: &Val<'a>,
        out: &mut Vec<u8>,
    ) -> Outcome<bool> {
        self.write_value(node, input, out)
    }

    /// [`Evaluator::write`] of a [`Writer::Value`]: evaluated, then written.
    #[inline(always)]
    fn write_value(&self, node: &'a Node, input: &Val<'a>, out: &mut Vec<u8>) -> Outcome<bool> {
        let value = self.eval(node, input)?;
        if value.is_undef() {
            return Ok(false);
        }
        write_val(&value, out)?;
        value.discard();
        Ok(true)
    }

    /// [`Evaluator::write`] of the kinds that are written as their parts come.
    #[inline(never)]
    fn write_made(&self, node: &'a Node, input: &Val<'a>, out: &mut Vec<u8>) -> Outcome<bool> {
        match node.write {
            Writer::Value => self.write_value(node, input, out),
            Writer::Object => self.write_object(node, input, out).map(|()| true),
            Writer::Array => self.write_array(node, input, out).map(|()| true),
            Writer::Condition => match self.branch(node, input)? {
                Some(branch) => self.write(branch, input, out),
                None => Ok(false),
            },
            Writer::NonEmpty => self.write_non_empty(node, input, out),
            Writer::TextGuard => self.write_text_guard(node, input, out),
            Writer::TextField => self.write_text_field(node, input, out),
            Writer::Pick => self.write_pick(node, input, out),
            Writer::Constant if !node.text.is_empty() => {
                out.extend_from_slice(&node.text);
                Ok(true)
            }
            Writer::Constant => self.write_value(node, input, out),
        }
    }

    /// `[g, h, …][0]` of text guards, written: what [`run_array_pick`] picks (each guard's
    /// answer is non-empty text or *undefined*, never an array to flatten), every later item
    /// still run for its errors, in order.
    fn write_pick(&self, node: &'a Node, input: &Val<'a>, out: &mut Vec<u8>) -> Outcome<bool> {
        let Op::Array(items) = &node.op else {
            return Err(Bail);
        };
        self.count_step()?;
        let mut written = false;
        for item in items {
            match (written, item.node.write) {
                (false, _) => written = self.write(&item.node, input, out)?,
                // A later text guard is run for its errors the way it is written, then cut:
                // the same errors as its value's, and a join of text fields costs a fifth of
                // the value made and dropped.
                (true, Writer::TextGuard | Writer::TextField) => {
                    let mark = out.len();
                    self.write(&item.node, input, out)?;
                    out.truncate(mark);
                }
                (true, _) => self.eval(&item.node, input)?.discard(),
            }
        }
        Ok(written)
    }

    /// `$str($join([a, b, …], separator))` written: the text [`run_text_guard`] answers over
    /// [`Evaluator::join_constructed`], joined into `out` instead of a string made for it (two
    /// allocations a record in most mappings' name). Where a binding shadows `$join`, as
    /// [`Evaluator::call_named`] would go elsewhere, the guard is evaluated and written.
    fn write_text_guard(
        &self,
        node: &'a Node,
        input: &Val<'a>,
        out: &mut Vec<u8>,
    ) -> Outcome<bool> {
        let Op::InlineOver { arg, .. } = &node.op else {
            return Err(Bail);
        };
        let Op::Call { name, args, .. } = &arg.op else {
            return Err(Bail);
        };
        let [list, separator @ ..] = args.as_slice() else {
            return Err(Bail);
        };
        let Op::Array(items) = &list.op else {
            return Err(Bail);
        };
        if self.function(name)?.is_some() || self.variable_value(&name.text).is_some() {
            return self.write_value(node, input, out);
        }
        // As `run_text_guard` over `join_constructed`: a step, the items, the separator, the
        // join's checks (the separator's, then each item's), then the shadowed `$type`.
        self.count_step()?;
        if let Some(written) = self.write_joined_fields(items, separator, input, out)? {
            if self.type_shadowed {
                return Err(Bail);
            }
            return Ok(written);
        }
        let items = self.array_items(items, input)?;
        let separator = separator
            .first()
            .map(|node| self.eval(node, input))
            .transpose()?;
        let written = write_joined(&items, separator.as_ref(), out);
        items.into_iter().for_each(Val::discard);
        if let Some(separator) = separator {
            separator.discard();
        }
        if self.type_shadowed {
            return Err(Bail);
        }
        written
    }

    /// [`Evaluator::write_text_guard`]'s join where every item is a text field of the record
    /// (`$str($join([$str(first), $str(last)], " "))`, most mappings' name) and the separator a
    /// string literal: each field's text written where it is found, without the items' values
    /// made and gathered first (about 800 instructions a record). `None`, with nothing written,
    /// where that does not apply, and where a field's walk leaves the record's own `Doc` (an
    /// array, a value kept whole): the general join then runs, as before.
    fn write_joined_fields(
        &self,
        items: &'a [Item],
        separator: &'a [Node],
        input: &Val<'a>,
        out: &mut Vec<u8>,
    ) -> Outcome<Option<bool>> {
        let separator = match separator {
            [] => "",
            [node] => match &node.op {
                Op::Constant(Value::String(text)) => text.as_str(),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        if items
            .iter()
            .any(|item| item.node.write != Writer::TextField)
        {
            return Ok(None);
        }
        let start = out.len();
        out.push(b'"');
        let mut written = false;
        for item in items {
            match self.text_field_answer(&item.node, input) {
                Ok(Some(Some(text))) => {
                    if std::mem::replace(&mut written, true) {
                        write_str_contents(separator, out);
                    }
                    write_doc_str_contents(text, out);
                }
                Ok(Some(None)) => {}
                answer => {
                    out.truncate(start);
                    return answer.map(|_| None);
                }
            }
        }
        if !written {
            out.truncate(start);
            return Ok(Some(false));
        }
        out.push(b'"');
        Ok(Some(true))
    }

    /// The branch a condition chooses over `input`; `None` when it has no else branch and the
    /// condition does not hold (*undefined*).
    fn branch(&self, node: &'a Node, input: &Val<'a>) -> Outcome<Option<&'a Node>> {
        let Op::Condition(condition, then, otherwise) = &node.op else {
            return Err(Bail);
        };
        Ok(match self.test(condition, input)? {
            true => Some(then),
            false => otherwise.as_deref(),
        })
    }

    /// `node`, or where it is a condition (written as [`Writer::Condition`]), the branch it
    /// takes, through any conditions in turn; `None` where one takes no branch.
    #[inline(always)]
    fn chosen(&self, node: &'a Node, input: &Val<'a>) -> Outcome<Option<&'a Node>> {
        let mut node = node;
        while node.write == Writer::Condition {
            match self.branch(node, input)? {
                Some(branch) => node = branch,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// An object constructor with literal keys, written: what [`Evaluator::object`] makes, as
    /// [`write_val`] writes it (pairs whose value is *undefined* left out).
    fn write_object(&self, node: &'a Node, input: &Val<'a>, out: &mut Vec<u8>) -> Outcome<()> {
        let Op::Object {
            pairs, keys_text, ..
        } = &node.op
        else {
            return Err(Bail);
        };
        if input.is_array() {
            // As `Evaluator::object`: grouping over an array is not modelled.
            return Err(Bail);
        }
        out.push(b'{');
        let mut first = true;
        for ((_, value), key_text) in pairs.iter().zip(keys_text) {
            // A condition's branch is chosen, and a text field (`"title": $str(profile.title)`,
            // most of a record's pairs) answered, before the pair's key is written: a condition
            // without a branch or an absent field costs no key written and cut again, and a
            // present field no call to the general writer.
            let Some(value) = self.chosen(value, input)? else {
                continue; // a condition without a branch: the pair is left out
            };
            if value.write == Writer::TextField
                && let Some(text) = self.text_field_answer(value, input)?
            {
                if let Some(text) = text {
                    out.extend_from_slice(&key_text[usize::from(first)..]);
                    write_doc_str(text, out);
                    first = false;
                }
                continue;
            }
            let start = out.len();
            out.extend_from_slice(&key_text[usize::from(first)..]);
            if self.write(value, input, out)? {
                first = false;
            } else {
                out.truncate(start);
            }
        }
        out.push(b'}');
        Ok(())
    }

    /// An array constructor, written: what [`Evaluator::array`] makes (an item's array
    /// flattened in unless the item is an array constructor), as [`write_val`] writes it.
    fn write_array(&self, node: &'a Node, input: &Val<'a>, out: &mut Vec<u8>) -> Outcome<()> {
        let Op::Array(items) = &node.op else {
            return Err(Bail);
        };
        out.push(b'[');
        let mut first = true;
        for item in items {
            self.write_item(&item.node, item.nested_constructor, input, out, &mut first)?;
        }
        out.push(b']');
        Ok(())
    }

    /// One item of an array constructor, written after a comma unless it is the `first`: an
    /// object (never flattened) or a condition's branch as it comes, any other value
    /// evaluated, and its items written one by one when it is an array to flatten in.
    fn write_item(
        &self,
        node: &'a Node,
        nested_constructor: bool,
        input: &Val<'a>,
        out: &mut Vec<u8>,
        first: &mut bool,
    ) -> Outcome<()> {
        let mut separate = |out: &mut Vec<u8>| {
            if !std::mem::take(first) {
                out.push(b',');
            }
        };
        match node.write {
            Writer::Object => {
                separate(out);
                return self.write_object(node, input, out);
            }
            Writer::Array if nested_constructor => {
                separate(out);
                return self.write_array(node, input, out);
            }
            Writer::Condition => {
                return match self.branch(node, input)? {
                    Some(branch) => self.write_item(branch, nested_constructor, input, out, first),
                    None => Ok(()),
                };
            }
            _ => {}
        }
        let value = self.eval(node, input)?;
        match &value {
            Val::Undef => {}
            _ if nested_constructor => {
                separate(out);
                write_val(&value, out)?;
            }
            Val::Arr(arr) => {
                for item in &arr.items {
                    separate(out);
                    write_val(item, out)?;
                }
            }
            Val::Json(Value::Array(items)) => {
                for item in items {
                    separate(out);
                    write_val(&Val::from_json(item), out)?;
                }
            }
            Val::Doc(Doc::Arr(items)) => {
                for item in items {
                    separate(out);
                    write_val(&Val::from_doc(item), out)?;
                }
            }
            _ => {
                separate(out);
                write_val(&value, out)?;
            }
        }
        value.discard();
        Ok(())
    }

    /// A [`Writer::NonEmpty`] call, written: its argument, unless that is *undefined* or wrote
    /// as `[]` (an empty array, the one value written so whose `$count` is 0), which is taken
    /// back. A caller's variable named `count` goes to the JSONata engine, as
    /// [`Evaluator::call_named`] sends it.
    fn write_non_empty(&self, node: &'a Node, input: &Val<'a>, out: &mut Vec<u8>) -> Outcome<bool> {
        let Op::InlineOver { arg, .. } = &node.op else {
            return Err(Bail);
        };
        self.count_step()?;
        if self.variable_value("count").is_some() {
            return Err(Bail);
        }
        let start = out.len();
        if !self.write(arg, input, out)? {
            return Ok(false);
        }
        if out[start..] == *b"[]" {
            out.truncate(start);
            return Ok(false);
        }
        Ok(true)
    }

    /// The value of `node` as a Boolean.
    #[inline(always)]
    fn test(&self, node: &'a Node, input: &Val<'a>) -> Outcome<bool> {
        (node.test)(self, node, input)
    }

    /// Starts an activation of a frame: none of its variables bound.
    fn open(&self, frame: Range<u32>) {
        if !frame.is_empty() {
            self.slots.borrow_mut()[frame.start as usize..frame.end as usize].fill(None);
        }
    }

    /// The function the innermost bound slot of `var` holds; `None` when no slot is bound, a
    /// bail when the value is not a function.
    fn function(&self, var: &Var) -> Outcome<Option<Rc<Closure<'a>>>> {
        let slots = self.slots.borrow();
        for &slot in &var.slots {
            match &slots[slot as usize] {
                Some(Val::Func(closure)) => return Ok(Some(closure.clone())),
                Some(_) => return Err(Bail),
                None => {}
            }
        }
        Ok(None)
    }

    /// A variable's value: the innermost of its slots that is bound, else the caller's. A name
    /// bound nowhere may be a function of the JSONata engine's library (`$string` as a value),
    /// which the fast path does not model.
    fn variable(&self, var: &Var) -> Outcome<Val<'a>> {
        {
            let slots = self.slots.borrow();
            for &slot in &var.slots {
                if let Some(Some(value)) = slots.get(slot as usize) {
                    return Ok(value.clone());
                }
            }
        }
        match self.variable_value(&var.text) {
            Some(value) => Ok(Val::from_json(value)),
            // Declared by the caller as possibly unbound (a follow-up's answer this record
            // lacks): undefined, as the JSONata engine has it.
            None if self.variables.absent.iter().any(|name| **name == *var.text) => Ok(Val::Undef),
            // Another name may be a function of the engine's library used as a value.
            None => Err(Bail),
        }
    }

    fn variable_value(&self, name: &str) -> Option<&'a Value> {
        self.variables
            .bound
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    fn call(
        &self,
        closure: &Closure<'a>,
        args: impl IntoIterator<Item = Val<'a>>,
    ) -> Outcome<Val<'a>> {
        self.count_step()?;
        let lambda = closure.lambda;
        let depth = self.depth.get();
        let id = lambda.id as usize;
        if depth >= MAX_DEPTH || self.running[id].get() {
            return Err(Bail); // recursion: the frame's one activation is in use
        }
        self.enter(lambda, args);
        self.depth.set(depth + 1);
        self.running[id].set(true);
        let result = self.eval(&lambda.body, &closure.input);
        self.running[id].set(false);
        self.depth.set(depth);
        if let Ok(value) = &result
            && escapes(value)
        {
            return Err(Bail);
        }
        result
    }

    /// Starts an activation of `lambda`'s frame: the parameters get the arguments, the rest of
    /// the frame starts unbound.
    fn enter(&self, lambda: &Lambda, args: impl IntoIterator<Item = Val<'a>>) {
        let mut slots = self.slots.borrow_mut();
        let (start, end) = (lambda.frame.start as usize, lambda.frame.end as usize);
        let params = start + lambda.params.len();
        let mut args = args.into_iter();
        for slot in &mut slots[start..params] {
            if let Some(old) = slot.replace(args.next().unwrap_or(Val::Undef)) {
                old.discard();
            }
        }
        if params < end {
            slots[params..end].fill(None);
        }
    }

    /// An [`Op::Inline`] call: the arguments, then the body over the input.
    fn inline(&self, lambda: &'a Lambda, args: &'a [Node], input: &Val<'a>) -> Outcome<Val<'a>> {
        self.count_step()?;
        if let [arg] = args {
            let value = self.eval(arg, input)?;
            self.enter(lambda, [value]);
        } else {
            let mut values: SmallVec<[Val<'a>; 4]> = SmallVec::new();
            for arg in args {
                values.push(self.eval(arg, input)?);
            }
            self.enter(lambda, values);
        }
        let result = self.eval(&lambda.body, &self.root);
        if let Ok(value) = &result
            && escapes(value)
        {
            return Err(Bail);
        }
        result
    }

    /// An [`Op::InlineOver`] call: the argument, then the body over it.
    fn inline_over(&self, body: &'a Node, arg: &'a Node, input: &Val<'a>) -> Outcome<Val<'a>> {
        self.count_step()?;
        let value = self.eval(arg, input)?;
        let result = self.eval(body, &value);
        value.discard();
        if let Ok(value) = &result
            && escapes(value)
        {
            return Err(Bail);
        }
        result
    }

    /// A path of field names over objects, read in place; the general path takes over when an
    /// array is met (or is the context), as it flattens. The value is finished.
    fn fields(&self, steps: &'a [Node], input: &Val<'a>) -> Outcome<Val<'a>> {
        let mut names = steps;
        let at = match &steps[0].op {
            Op::Name(..) => input.clone(),
            _ => {
                names = &steps[1..];
                self.eval_op(&steps[0], input)?
            }
        };
        // Over input objects the walk holds a reference, and makes a value once at the end.
        let mut at = Walk::of(at);
        for step in names {
            let Op::Name(name, symbol) = &step.op else {
                return Ok(Val::Undef); // not met: the compiler lets only names follow
            };
            at = match at {
                Walk::Json(Value::Object(map)) => match get(map, name) {
                    Some(value) => Walk::Json(value),
                    None => return Ok(Val::Undef),
                },
                Walk::Doc(Doc::Obj(fields)) => match Doc::field(fields, name, *symbol) {
                    Some(Doc::Whole(value)) => Walk::Json(value),
                    Some(Doc::Absent) | None => return Ok(Val::Undef),
                    Some(doc) => Walk::Doc(doc),
                },
                Walk::Json(Value::Array(_)) | Walk::Doc(Doc::Arr(_)) => {
                    return Ok(finish(self.path(steps, false, input)?, false));
                }
                Walk::Json(_) | Walk::Doc(_) => return Ok(Val::Undef),
                Walk::Val(value) => match &value {
                    Val::Obj(_) => Walk::of(value.field(name, *symbol)),
                    Val::Arr(_) => return Ok(finish(self.path(steps, false, input)?, false)),
                    _ => return Ok(Val::Undef),
                },
            };
        }
        // A variable's value (a sequence included) is finished already.
        Ok(match at {
            Walk::Json(value) => Val::from_json(value),
            Walk::Doc(doc) => Val::from_doc(doc),
            Walk::Val(value) => value,
        })
    }

    fn path(&self, steps: &'a [Node], keep_singleton: bool, input: &Val<'a>) -> Outcome<Val<'a>> {
        let starts_with_variable = matches!(
            steps.first().map(|s| &s.op),
            Some(Op::Variable(_) | Op::Root | Op::Context)
        );
        let mut sequence = match input.array_items() {
            Some(items) if !starts_with_variable => items,
            _ => vec![input.clone()],
        };
        let mut result = Val::Undef;
        for (index, step) in steps.iter().enumerate() {
            result = if index == 0 && step.cons_array {
                self.eval(step, &Val::sequence(std::mem::take(&mut sequence)))?
            } else {
                self.step(step, &sequence, index + 1 == steps.len())?
            };
            match result.array_items() {
                Some(items) if !items.is_empty() => sequence = items,
                Some(_) => break,
                None if result.is_undef() => break,
                None => sequence = vec![result.clone()],
            }
        }
        if keep_singleton && let Val::Arr(arr) = &result {
            let arr = if arr.cons && !arr.sequence {
                Arr {
                    items: smallvec::smallvec![result.clone()],
                    sequence: true,
                    keep: true,
                    cons: false,
                }
            } else {
                Arr {
                    keep: true,
                    ..(**arr).clone()
                }
            };
            result = Val::Arr(Rc::new(arr));
        }
        Ok(result)
    }

    fn step(&self, step: &'a Node, sequence: &[Val<'a>], last: bool) -> Outcome<Val<'a>> {
        let mut results = Vec::with_capacity(sequence.len());
        for item in sequence {
            self.count_step()?;
            let mut value = self.eval(step, item)?;
            for stage in &step.stages {
                value = self.filter(stage, value)?;
            }
            if !value.is_undef() {
                results.push(value);
            }
        }
        if last && results.len() == 1 && results[0].is_array() && !results[0].is_sequence() {
            return Ok(results.pop().unwrap_or(Val::Undef));
        }
        let mut flat = Vec::with_capacity(results.len());
        for value in results {
            match value.array_items() {
                Some(items) if !value.is_cons() => flat.extend(items),
                _ => flat.push(value),
            }
        }
        Ok(Val::sequence(flat))
    }

    fn filter(&self, filter: &'a Filter, input: Val<'a>) -> Outcome<Val<'a>> {
        if let Filter::Index(n) = filter {
            // One item taken out: the others are not copied into a sequence first.
            let picked = match input.array_len() {
                Some(len) => position(*n, len).and_then(|at| input.array_item(at)),
                None if input.is_undef() => None,
                None => position(*n, 1).map(|_| input.clone()),
            };
            return Ok(match picked {
                Some(item) if item.is_array() => item,
                Some(item) => Val::sequence(vec![item]),
                None => Val::sequence(Vec::new()),
            });
        }
        let items = match input.array_items() {
            Some(items) => items,
            None if input.is_undef() => Vec::new(),
            None => vec![input],
        };
        match filter {
            Filter::Index(_) => Err(Bail), // taken above
            Filter::Expr(predicate) => {
                let mut kept = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    self.count_step()?;
                    let value = self.eval(predicate, item)?;
                    // How many times the item is kept: an array of positions keeps it once per
                    // position naming it (`[0, 0.5]` twice), as JSONata does.
                    let times = match &value {
                        Val::Num(n) => usize::from(position(n.get(), items.len()) == Some(index)),
                        Val::Func(_) => return Err(Bail),
                        _ => match value.array_items() {
                            Some(values)
                                if !values.is_empty()
                                    && values.iter().all(|v| matches!(v, Val::Num(_))) =>
                            {
                                values
                                    .iter()
                                    .filter(|v| match v {
                                        Val::Num(n) => {
                                            position(n.get(), items.len()) == Some(index)
                                        }
                                        _ => false,
                                    })
                                    .count()
                            }
                            Some(values) if values.is_empty() => 0,
                            _ => usize::from(value.truthy()),
                        },
                    };
                    for _ in 0..times {
                        kept.push(item.clone());
                    }
                }
                Ok(Val::sequence(kept))
            }
        }
    }
}

/// Where a walk over field names is: in an input tree (held by reference), or at a value.
enum Walk<'a> {
    Json(&'a Value),
    Doc(&'a Doc<'a>),
    Val(Val<'a>),
}

impl<'a> Walk<'a> {
    fn of(value: Val<'a>) -> Walk<'a> {
        match value {
            Val::Json(json) => Walk::Json(json),
            Val::Doc(doc) => Walk::Doc(doc),
            other => Walk::Val(other),
        }
    }
}

/// A function value leaving the frame it was made in (alone or inside an array or object):
/// its variables would be gone, so the JSONata engine answers instead.
fn escapes(value: &Val<'_>) -> bool {
    match value {
        Val::Func(_) => true,
        Val::Arr(arr) => arr.items.iter().any(escapes),
        Val::Obj(pairs) => pairs.iter().any(|(_, value)| escapes(value)),
        _ => false,
    }
}

/// JSONata's end of every evaluation: an empty sequence is *undefined*, a singleton sequence
/// its item unless `[]` keeps it.
#[inline(always)]
fn finish(value: Val<'_>, keep_array: bool) -> Val<'_> {
    match value {
        Val::Arr(arr) => finish_array(arr, keep_array),
        other => other,
    }
}

fn finish_array(arr: Rc<Arr<'_>>, keep_array: bool) -> Val<'_> {
    match Val::Arr(arr) {
        Val::Arr(arr) if arr.sequence => {
            let keep = arr.keep || keep_array;
            match arr.items.len() {
                0 => Val::Undef,
                1 if !keep => arr.items[0].clone(),
                _ if keep && !arr.keep => Val::Arr(Rc::new(Arr {
                    keep: true,
                    ..(*arr).clone()
                })),
                _ => Val::Arr(arr),
            }
        }
        other => other,
    }
}

/// The index a (possibly negative, fractional) position stands for.
fn position(n: f64, len: usize) -> Option<usize> {
    let mut index = n.floor();
    if index < 0.0 {
        index += len as f64;
    }
    (index >= 0.0 && index < len as f64).then_some(index as usize)
}

fn binary<'a>(op: Binary, lhs: &Val<'a>, rhs: &Val<'a>) -> Outcome<Val<'a>> {
    Ok(match op {
        Binary::Add | Binary::Sub | Binary::Mul | Binary::Div | Binary::Mod => {
            let (a, b) = match (lhs, rhs) {
                (Val::Num(a), Val::Num(b)) => (a.get(), b.get()),
                (Val::Undef, Val::Num(_) | Val::Undef) | (Val::Num(_), Val::Undef) => {
                    return Ok(Val::Undef);
                }
                _ => return Err(Bail),
            };
            let n = match op {
                Binary::Add => a + b,
                Binary::Sub => a - b,
                Binary::Mul => a * b,
                Binary::Div => a / b,
                _ => a % b,
            };
            if !n.is_finite() {
                return Err(Bail);
            }
            Val::num(n)
        }
        Binary::Eq | Binary::Ne => {
            if lhs.is_undef() || rhs.is_undef() {
                return Ok(Val::bool(false));
            }
            let equal = match (lhs.as_str(), rhs.as_str()) {
                (Some(a), Some(b)) => a == b,
                _ => deep_equal(lhs, rhs)?,
            };
            Val::bool(if op == Binary::Eq { equal } else { !equal })
        }
        Binary::Lt | Binary::Le | Binary::Gt | Binary::Ge => {
            let ordering = match (lhs, rhs) {
                (Val::Num(a), Val::Num(b)) => a.get().partial_cmp(&b.get()).ok_or(Bail)?,
                (Val::Undef, Val::Num(_) | Val::Undef) | (Val::Num(_), Val::Undef) => {
                    return Ok(Val::Undef);
                }
                _ => match (lhs.as_str(), rhs.as_str()) {
                    (Some(a), Some(b)) => a.encode_utf16().cmp(b.encode_utf16()),
                    (Some(_), None) if rhs.is_undef() => return Ok(Val::Undef),
                    (None, Some(_)) if lhs.is_undef() => return Ok(Val::Undef),
                    _ => return Err(Bail),
                },
            };
            use std::cmp::Ordering::*;
            Val::bool(match op {
                Binary::Lt => ordering == Less,
                Binary::Le => ordering != Greater,
                Binary::Gt => ordering == Greater,
                _ => ordering != Less,
            })
        }
        Binary::Concat => {
            let mut text = String::new();
            for side in [lhs, rhs] {
                if !side.is_undef() {
                    text.push_str(&builtins::string_of(side)?);
                }
            }
            Val::text(text)
        }
        Binary::In => {
            if lhs.is_undef() || rhs.is_undef() {
                return Ok(Val::bool(false));
            }
            if lhs.is_array() || lhs.is_object() || matches!(lhs, Val::Func(_)) {
                return Err(Bail); // compared by identity in the JSONata engine
            }
            // Item by item: no copy of the array (`$x in ["a", "b"]` is in many mappings).
            let found = match rhs.array_len() {
                Some(len) => (0..len).any(|index| {
                    rhs.array_item(index).is_some_and(|item| {
                        let equal = scalar_equal(lhs, &item);
                        item.discard();
                        equal
                    })
                }),
                None => scalar_equal(lhs, rhs),
            };
            Val::bool(found)
        }
    })
}

fn scalar_equal(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(a), Val::Bool(b)) => a == b,
        (Val::Num(a), Val::Num(b)) => a.get() == b.get(),
        _ => match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
    }
}

/// JSONata's `=`: deep equality of values.
pub(super) fn deep_equal(a: &Val<'_>, b: &Val<'_>) -> Outcome<bool> {
    if matches!(a, Val::Func(_)) || matches!(b, Val::Func(_)) {
        return Err(Bail);
    }
    if let (Some(x), Some(y)) = (a.array_items(), b.array_items()) {
        if x.len() != y.len() {
            return Ok(false);
        }
        for (x, y) in x.iter().zip(&y) {
            if !deep_equal(x, y)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if a.is_object() && b.is_object() {
        let (x, y) = (object_pairs(a), object_pairs(b));
        if x.len() != y.len() {
            return Ok(false);
        }
        for (key, value) in &x {
            match y.iter().find(|(k, _)| k == key) {
                Some((_, other)) if deep_equal(value, other)? => {}
                _ => return Ok(false),
            }
        }
        return Ok(true);
    }
    Ok(scalar_equal(a, b))
}

/// The fields of an object value, in order.
pub(super) fn object_pairs<'a>(value: &Val<'a>) -> Vec<(String, Val<'a>)> {
    match value {
        Val::Json(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), Val::from_json(v)))
            .collect(),
        Val::Doc(Doc::Obj(fields)) => Doc::present(fields)
            .map(|field| (field.key.as_ref().to_owned(), Val::from_doc(&field.value)))
            .collect(),
        Val::Obj(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone())))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::needs_escape;

    #[test]
    fn needs_escape_agrees_with_a_byte_by_byte_check() {
        let plain = |bytes: &[u8]| {
            bytes
                .iter()
                .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
        };
        // Every byte value at every position of texts of 0 to 17 bytes, among neighbours that
        // sit just around the bytes that need an escape.
        for len in 0..18 {
            for at in 0..len {
                for byte in 0..=255u8 {
                    for filler in [b'a', 0x21, 0x23, 0x5b, 0x5d, 0x1f + 1, 0x7f, 0x80, 0xff] {
                        let mut text = vec![filler; len];
                        text[at] = byte;
                        assert_eq!(needs_escape(&text), plain(&text), "{text:?}");
                    }
                }
            }
        }
        assert!(!needs_escape("2013-06-24T16:39:18.000Z ünïcødé".as_bytes()));
        assert!(needs_escape(b"0123456789abcdef\"x"));
    }
}
