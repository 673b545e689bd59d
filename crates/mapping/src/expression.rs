//! The JSONata seam: unigate's own [`Expression`] type, so no caller names the JSONata engine.
//!
//! Compiled once at load (`jlens-core`, Send + Sync, shared across workers). Every evaluation runs
//! with limits (time, depth, result size), so a hostile or broken expression or provider response
//! fails that request, never the process. The Truto-style function library is bound here.
//!
//! An expression in the common subset also gets a fast-path plan (`crate::fast`) at compile
//! time; [`Expression::evaluate`] runs it first and falls back to the JSONata engine for an input the
//! plan bails on, so callers see the JSONata engine's answer either way, sooner.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use jlens_core::{Bindings, Options};
use serde_json::Value;

use crate::doc::Doc;
use crate::fast;
use crate::functions;

/// Limits for one evaluation. A mapping of one record that needs more is broken.
fn options() -> Options {
    Options::new()
        .timeout(Duration::from_secs(2))
        .max_depth(400)
        .max_result_size(32 * 1024 * 1024)
}

static LIBRARY: LazyLock<Bindings> = LazyLock::new(functions::library);

/// A compiled JSONata expression.
#[derive(Debug, Clone)]
pub struct Expression {
    inner: jlens_core::Expression,
    /// The fast-path plan, or why the expression is outside the subset.
    fast: Result<Arc<fast::Plan>, Arc<str>>,
}

/// What the fast path alone made of one evaluation (for the differential tests and benchmarks).
#[derive(Debug, Clone, PartialEq)]
pub enum FastOutcome {
    /// The expression is outside the subset; the reason names the construct.
    NotCompiled(String),
    /// The plan handed this input to the JSONata engine.
    Bailed,
    /// The plan's answer (`None` is *undefined*).
    Done(Option<Value>),
}

/// Why an expression did not compile: the JSONata engine's code and message, and the byte offset in the
/// expression source when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub code: String,
    pub message: String,
    pub offset: Option<usize>,
}

/// Why an evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

/// Variables for evaluations: the function library plus `$name` values, built once per call and
/// reused for every record of it. `$context` holds the account's credentials, so `Debug` shows
/// the variables' names only.
#[derive(Clone)]
pub struct Scope {
    bindings: Bindings,
    /// The same variables for the fast path, with the names declared possibly unbound.
    variables: Arc<fast::Variables>,
}

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field(
                "variables",
                &self
                    .variables
                    .bound
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Scope {
    pub fn new<'a>(variables: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        let mut bindings = LIBRARY.clone();
        let mut plain = Vec::new();
        for (name, value) in variables {
            bindings = bindings.var(name, value.clone());
            plain.push((name.to_owned(), value));
        }
        Scope {
            bindings,
            variables: Arc::new(fast::Variables {
                bound: plain,
                absent: Vec::new(),
            }),
        }
    }

    /// This scope plus one more variable (e.g. `$headers` for pagination expressions).
    pub fn with(&self, name: &str, value: Value) -> Scope {
        let mut variables = (*self.variables).clone();
        variables.bound.push((name.to_owned(), value.clone()));
        Scope {
            bindings: self.bindings.clone().var(name, value),
            variables: Arc::new(variables),
        }
    }

    /// This scope where `names` may be unbound (a follow-up's answer a record lacks): undefined
    /// then, as the JSONata engine has any unbound name, and still on the fast path, which
    /// otherwise hands an unbound name to the engine (it might name a library function).
    pub fn with_possibly_unbound<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Scope {
        let mut variables = (*self.variables).clone();
        variables
            .absent
            .extend(names.into_iter().map(str::to_owned));
        Scope {
            bindings: self.bindings.clone(),
            variables: Arc::new(variables),
        }
    }
}

impl Expression {
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        jlens_core::Expression::compile(source)
            .map(|inner| {
                let fast = fast::compile(inner.ast()).map(Arc::new).map_err(Arc::from);
                Expression { inner, fast }
            })
            .map_err(|error| CompileError {
                code: error.code().to_owned(),
                message: error.message(),
                offset: error.span().map(|span| span.start),
            })
    }

    pub fn source(&self) -> &str {
        self.inner.source()
    }

    /// The keys of the object the expression builds, when that is visible without evaluating
    /// it: a top-level object constructor (possibly the last expression of a block) whose keys
    /// are all string literals. `None` when any key is computed.
    pub fn object_keys(&self) -> Option<Vec<String>> {
        object_keys_of(&self.inner.ast().root)
    }

    /// For each key of the object the expression builds (where [`Expression::object_keys`]
    /// finds them), the variables its value reads, followed through the bindings of the blocks
    /// around it (`$in := [$teams[…]]; {"groups": $in}`: `groups` reads `teams`). `None` when
    /// the shape is not visible at load.
    pub fn object_entry_variables(
        &self,
    ) -> Option<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>> {
        let ast = self.inner.ast();
        entry_variables(&ast.root, &ast.source, &Default::default())
    }

    /// The source of this expression with entries of the object it builds replaced, added or
    /// removed: for each `(key, value)`, `Some(source)` puts that JSONata in the key's place (a
    /// key it lacks goes last) and `None` removes the key. The object is a plain object
    /// constructor with literal keys, possibly the last expression of blocks, whose bindings the
    /// new values see. Edited as text, so that the result is an ordinary expression: compiled,
    /// analysed and put on the fast path as one a file wrote whole.
    pub fn with_object_entries(&self, entries: &[(&str, Option<&str>)]) -> Result<String, String> {
        let source = self.inner.source();
        let mut node = &self.inner.ast().root;
        while let jlens_core::NodeKind::Block { exprs, .. } = &node.kind {
            node = exprs.last().ok_or("it ends in an empty block `()`")?;
        }
        let jlens_core::NodeKind::Object { pairs } = &node.kind else {
            return Err("it does not end in an object constructor `{…}`".to_owned());
        };
        if !plain(node) {
            return Err(
                "its object constructor has a filter, index or other step after it".to_owned(),
            );
        }
        let mut keys = Vec::with_capacity(pairs.len());
        for (key, _) in pairs {
            match &key.kind {
                jlens_core::NodeKind::String { value } if plain(key) => keys.push(value.as_str()),
                _ => return Err("its object constructor has a computed key".to_owned()),
            }
        }
        let open = node.span.start;
        let close = source[..node.span.end].trim_end().len().checked_sub(1);
        let (Some(close), Some(b'{')) = (
            close.filter(|&at| source.as_bytes()[at] == b'}'),
            source.as_bytes().get(open),
        ) else {
            return Err("its object constructor's braces were not found".to_owned());
        };
        let value_of = |name: &str| {
            entries
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, v)| *v)
        };
        let mut built: Vec<String> = Vec::with_capacity(pairs.len() + entries.len());
        for (key, (_, value)) in keys.iter().zip(pairs) {
            let value = match value_of(key) {
                None => source[value.span.start..value.span.end].to_owned(),
                Some(Some(replaced)) => format!("({replaced})"),
                Some(None) => continue,
            };
            built.push(format!("{}: {value}", serde_json::Value::from(*key)));
        }
        for (name, value) in entries {
            if let (Some(value), false) = (value, keys.contains(name)) {
                built.push(format!("{}: ({value})", serde_json::Value::from(*name)));
            }
        }
        // The object is rebuilt entry by entry, each value's own text kept, so no comma or
        // comment between entries is left behind by one removed.
        let mut edited = source.to_owned();
        edited.replace_range(open..=close, &format!("{{\n{}\n}}", built.join(",\n")));
        Ok(edited)
    }

    /// The variables the expression reads that it does not bind itself (`$groups`, `$context`),
    /// by the JSONata engine's own reads analysis.
    pub fn variables_read(&self) -> std::collections::BTreeSet<String> {
        self.inner.reads().bindings().keys().cloned().collect()
    }

    /// The variables the expression reads that nothing gives: not one of `bound`, not a function
    /// of the JSONata engine's library nor of unigate's. They are undefined whenever it runs (a
    /// name a mapping inherited from a file reads, whose follow-up this file dropped); told so,
    /// the fast path answers them as the engine does instead of handing every record over.
    pub fn names_bound_nowhere<'a>(&self, bound: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let bound: std::collections::BTreeSet<&str> = bound.into_iter().collect();
        let engine_library: std::collections::BTreeSet<&str> = jlens_core::function_catalog()
            .into_iter()
            .map(|function| function.name)
            .collect();
        self.variables_read()
            .into_iter()
            .filter(|name| {
                !bound.contains(name.as_str())
                    && !engine_library.contains(name.as_str())
                    && LIBRARY.get_function(name).is_none()
                    && LIBRARY.get(name).is_none()
            })
            .collect()
    }

    /// The field names of a plain path (`$` → empty, `members`, `data.users`), when the expression
    /// is nothing more; callers can then walk the input directly.
    pub fn simple_path(&self) -> Option<Vec<String>> {
        let root = &self.inner.ast().root;
        if !plain(root) {
            return None;
        }
        match &root.kind {
            jlens_core::NodeKind::Variable { name } if name.is_empty() => Some(Vec::new()),
            jlens_core::NodeKind::Name { name } => Some(vec![name.clone()]),
            jlens_core::NodeKind::Path {
                steps,
                keep_singleton_array: false,
            } => steps
                .iter()
                .map(|step| match &step.kind {
                    jlens_core::NodeKind::Name { name } if plain(step) => Some(name.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// Why the expression is outside the fast path's subset, `None` when it is inside.
    pub fn fast_path_gap(&self) -> Option<&str> {
        self.fast.as_ref().err().map(|reason| &**reason)
    }

    /// Evaluates against `input`; `Ok(None)` is JSONata's *undefined*. The fast path answers
    /// when it can, the JSONata engine otherwise; both give the same answer.
    pub fn evaluate(&self, input: &Value, scope: &Scope) -> Result<Option<Value>, EvalError> {
        if let Ok(plan) = &self.fast
            && let Ok(value) = fast::evaluate(plan, input, &scope.variables)
        {
            FAST_EVALUATIONS.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        ENGINE_EVALUATIONS.fetch_add(1, Ordering::Relaxed);
        self.evaluate_on_jsonata_engine(input, scope)
    }

    /// Evaluates against `input` and appends the answer to `out` as JSON text, the bytes
    /// `serde_json` writes for [`Expression::evaluate`]'s value; `Ok(false)` is *undefined*
    /// (nothing written). The fast path writes its answer without building it.
    pub fn evaluate_json(
        &self,
        input: &Value,
        scope: &Scope,
        out: &mut Vec<u8>,
    ) -> Result<bool, EvalError> {
        if let Ok(plan) = &self.fast
            && let Ok(defined) = fast::evaluate_json(plan, input, &scope.variables, out)
        {
            FAST_EVALUATIONS.fetch_add(1, Ordering::Relaxed);
            return Ok(defined);
        }
        ENGINE_EVALUATIONS.fetch_add(1, Ordering::Relaxed);
        let Some(value) = self.evaluate_on_jsonata_engine(input, scope)? else {
            return Ok(false);
        };
        // Writing a `Value` to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &value);
        Ok(true)
    }

    /// [`Expression::evaluate_json`] over a record parsed with only what the expression reads
    /// ([`crate::doc::parse_doc`]): the fast path answers over it; the JSONata engine gets the
    /// record read whole from `whole` (its text), so its answer is the one it gives over the
    /// full record.
    pub fn evaluate_doc_json(
        &self,
        doc: &Doc<'_>,
        whole: &str,
        scope: &Scope,
        out: &mut Vec<u8>,
    ) -> Result<bool, EvalError> {
        if let Some(defined) = self.evaluate_doc_json_fast(doc, scope, out) {
            FAST_EVALUATIONS.fetch_add(1, Ordering::Relaxed);
            return Ok(defined);
        }
        let whole: Value = serde_json::from_str(whole).map_err(|error| EvalError {
            code: "U1001".to_owned(),
            message: format!("the record could not be read whole: {error}"),
        })?;
        // As the record's `Doc` reads them (`crate::doc::with_exact_integers`).
        let whole = crate::doc::with_exact_integers(whole);
        self.evaluate_json(&whole, scope, out)
    }

    /// [`Expression::evaluate_doc_json`] on the fast path alone: `None` when it is not compiled
    /// or hands the record over (then `out` is as it was).
    pub fn evaluate_doc_json_fast(
        &self,
        doc: &Doc<'_>,
        scope: &Scope,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        let plan = self.fast.as_ref().ok()?;
        fast::evaluate_doc_json(plan, doc, &scope.variables, out).ok()
    }

    /// The fast path alone over a record parsed as a [`Doc`], for comparing it with the JSONata
    /// engine over the whole record.
    pub fn evaluate_doc_fast(&self, doc: &Doc<'_>, scope: &Scope) -> FastOutcome {
        match &self.fast {
            Err(reason) => FastOutcome::NotCompiled(reason.to_string()),
            Ok(plan) => match fast::evaluate_doc(plan, doc, &scope.variables) {
                Ok(value) => FastOutcome::Done(value),
                Err(fast::Bail) => FastOutcome::Bailed,
            },
        }
    }

    /// [`Expression::evaluate_json`] on the fast path alone: `None` when it is not compiled or
    /// hands the input over (then `out` is as it was).
    pub fn evaluate_json_fast(
        &self,
        input: &Value,
        scope: &Scope,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        let plan = self.fast.as_ref().ok()?;
        fast::evaluate_json(plan, input, &scope.variables, out).ok()
    }

    /// The input paths the expression may read, when its fast-path plan says (`None`: it is not
    /// compiled, so anything may be read).
    pub fn reads(&self) -> Option<crate::reads::ReadSet> {
        self.fast.as_ref().ok().map(|plan| fast::reads(plan))
    }

    /// The fast path alone, for comparing it with the JSONata engine.
    pub fn evaluate_fast(&self, input: &Value, scope: &Scope) -> FastOutcome {
        match &self.fast {
            Err(reason) => FastOutcome::NotCompiled(reason.to_string()),
            Ok(plan) => match fast::evaluate(plan, input, &scope.variables) {
                Ok(value) => FastOutcome::Done(value),
                Err(fast::Bail) => FastOutcome::Bailed,
            },
        }
    }

    /// Whether the expression may give fewer items than the arrays it reads: a filter or an
    /// index (`data[status = "pending"]`, `employees[0]`), a grouping, or a call that drops
    /// items (`$filter`, `$distinct`, `$single`, `$reduce`) on the way its answer is made.
    /// Reshaping (a path, `$append`, a condition choosing one array or another, an object per
    /// item) keeps every item, and so does whatever builds one value: a filter inside an
    /// object made for each item (`data.{"team": $teams[id = team][0]}`) or inside a `$merge`
    /// picks a field, not the items. Where the answer's way passes a variable other than `$`
    /// and `$$` (a binding, a function of the file's own) or an expression not read here, a
    /// filter anywhere counts. Names only: a binding that shadows one counts as well.
    pub fn may_drop_items(&self) -> bool {
        let root = &self.inner.ast().root;
        answer_may_drop_items(root).unwrap_or_else(|| filters_anywhere(root))
    }

    /// The JSONata engine alone (`jlens-core`), never the fast path.
    pub fn evaluate_on_jsonata_engine(
        &self,
        input: &Value,
        scope: &Scope,
    ) -> Result<Option<Value>, EvalError> {
        self.inner
            .evaluate_with(Some(input), &scope.bindings, &options())
            .map_err(|error| EvalError {
                code: error.code().to_owned(),
                message: error.message(),
            })
    }
}

/// Calls that drop items of the arrays they are given.
const DROPPING_FUNCTIONS: [&str; 4] = ["filter", "distinct", "single", "reduce"];

/// Calls whose answer is one value however many items their arguments hold.
const ONE_VALUE_FUNCTIONS: [&str; 12] = [
    "merge",
    "string",
    "number",
    "boolean",
    "not",
    "exists",
    "count",
    "join",
    "type",
    "uppercase",
    "lowercase",
    "trim",
];

/// Calls whose answer keeps every item of their arguments, in some order.
const KEEPING_FUNCTIONS: [&str; 4] = ["append", "map", "sort", "reverse"];

/// Whether `node` has a filter, an index or a grouping of its own.
fn filters_here(node: &jlens_core::Node) -> bool {
    node.attrs.group.is_some()
        || node
            .attrs
            .stages
            .iter()
            .chain(&node.attrs.predicate)
            .any(|stage| matches!(stage, jlens_core::ast::Stage::Filter { .. }))
}

/// Whether a filter, an index, a grouping or a dropping call is anywhere in `root`.
fn filters_anywhere(root: &jlens_core::Node) -> bool {
    let mut drops = false;
    root.walk(&mut |node| {
        drops |= filters_here(node);
        if let jlens_core::NodeKind::Function { procedure, .. } = &node.kind
            && matches!(&procedure.kind, jlens_core::NodeKind::Variable { name } if DROPPING_FUNCTIONS.contains(&name.as_str()))
        {
            drops = true;
        }
    });
    drops
}

/// Whether the way `node`'s answer is made drops items (see [`Expression::may_drop_items`]);
/// `None` where that way passes something not read here, so a filter anywhere must count.
fn answer_may_drop_items(node: &jlens_core::Node) -> Option<bool> {
    use jlens_core::NodeKind;
    if filters_here(node) {
        return Some(true);
    }
    let any = |nodes: &mut dyn Iterator<Item = &jlens_core::Node>| {
        let mut drops = false;
        for node in nodes {
            drops |= answer_may_drop_items(node)?;
        }
        Some(drops)
    };
    match &node.kind {
        NodeKind::Object { .. }
        | NodeKind::Name { .. }
        | NodeKind::String { .. }
        | NodeKind::Number { .. }
        | NodeKind::Bool { .. }
        | NodeKind::Null
        | NodeKind::Wildcard
        | NodeKind::Sort { .. } => Some(false),
        NodeKind::Variable { name } => (name.is_empty() || name == "$").then_some(false),
        NodeKind::Path { steps, .. } => any(&mut steps.iter()),
        NodeKind::Array { items } => any(&mut items.iter()),
        NodeKind::Block { exprs, .. } => exprs.last().map_or(Some(false), answer_may_drop_items),
        NodeKind::Bind { rhs, .. } => answer_may_drop_items(rhs),
        NodeKind::Condition {
            then, otherwise, ..
        } => any(&mut std::iter::once(&**then).chain(otherwise.as_deref())),
        NodeKind::Fallback { lhs, rhs, .. } => any(&mut [&**lhs, &**rhs].into_iter()),
        NodeKind::Lambda(definition) => answer_may_drop_items(&definition.body),
        NodeKind::Function { procedure, args } => match &procedure.kind {
            NodeKind::Variable { name } if DROPPING_FUNCTIONS.contains(&name.as_str()) => {
                Some(true)
            }
            NodeKind::Variable { name } if ONE_VALUE_FUNCTIONS.contains(&name.as_str()) => {
                Some(false)
            }
            NodeKind::Variable { name } if KEEPING_FUNCTIONS.contains(&name.as_str()) => {
                any(&mut args.iter())
            }
            _ => None,
        },
        _ => None,
    }
}

/// Built-in functions whose answer is not the same for the same arguments: the clock, random
/// numbers, and `$eval`, which runs code made at run time. `$toMillis` reads the clock only
/// with a picture (a second argument), see [`reads_clock_or_chance`].
const UNSTEADY_FUNCTIONS: [&str; 5] = ["now", "millis", "random", "shuffle", "eval"];

/// Whether `expression` may answer differently for the same input and variables: it names one of
/// [`UNSTEADY_FUNCTIONS`], or `$toMillis` other than as a call with one argument (a picture fills
/// missing parts from the clock). Names only: a binding that shadows one counts as well.
fn reads_clock_or_chance(expression: &jlens_core::Expression) -> bool {
    let mut plain_to_millis: Vec<*const jlens_core::Node> = Vec::new();
    let mut unsteady = false;
    expression.ast().root.walk(&mut |node| match &node.kind {
        jlens_core::NodeKind::Function { procedure, args } if args.len() == 1 => {
            if matches!(&procedure.kind, jlens_core::NodeKind::Variable { name } if name == "toMillis")
            {
                plain_to_millis.push(&**procedure);
            }
        }
        jlens_core::NodeKind::Variable { name } => {
            unsteady |= UNSTEADY_FUNCTIONS.contains(&name.as_str())
                || (name == "toMillis" && !plain_to_millis.contains(&std::ptr::from_ref(node)));
        }
        _ => {}
    });
    unsteady
}

/// How many inputs a [`Memoized`] expression remembers the answers of.
const REMEMBERED_ANSWERS: usize = 8;

/// An expression that remembers its last answers by input and variables, for one evaluated
/// once per call with inputs that repeat (a list's `query_mapping`: the same filters for each
/// page a client fetches with a cursor, and for each run of a sync). It remembers only where that pays and is sound: the JSONata engine
/// runs the expression (a query mapping with helper functions costs tens of thousands of
/// instructions; the fast path's answer costs about what looking it up would) and the answer
/// depends on nothing but the input and the variables. Errors are not remembered. The
/// variables include the account's context (credentials): they stay in memory as the account
/// does, and `Debug` shows only how many answers are held.
pub struct Memoized {
    pub expression: Expression,
    answers: Option<Mutex<VecDeque<RememberedAnswer>>>,
}

struct RememberedAnswer {
    input: Value,
    variables: Arc<fast::Variables>,
    answer: Option<Value>,
}

impl std::fmt::Debug for Memoized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self
            .answers
            .as_ref()
            .map(|answers| answers.lock().map_or(0, |answers| answers.len()));
        f.debug_struct("Memoized")
            .field("expression", &self.expression)
            .field("answers_held", &held)
            .finish()
    }
}

impl Memoized {
    pub fn new(expression: Expression) -> Memoized {
        let remembers = expression.fast.is_err() && !reads_clock_or_chance(&expression.inner);
        Memoized {
            answers: remembers.then(|| Mutex::new(VecDeque::with_capacity(REMEMBERED_ANSWERS))),
            expression,
        }
    }

    /// Whether answers are remembered (see the type's note).
    pub fn remembers(&self) -> bool {
        self.answers.is_some()
    }

    /// [`Expression::evaluate`], or the answer it gave last time for an equal input and equal
    /// variables.
    pub fn evaluate(&self, input: &Value, scope: &Scope) -> Result<Option<Value>, EvalError> {
        let Some(answers) = &self.answers else {
            return self.expression.evaluate(input, scope);
        };
        let same = |held: &RememberedAnswer| {
            held.input == *input
                && (Arc::ptr_eq(&held.variables, &scope.variables)
                    || held.variables == scope.variables)
        };
        // A poisoned lock only means another evaluation panicked while holding it: the answers
        // held are whole (each is pushed complete), so they are still good.
        if let Some(held) = answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|held| same(held))
        {
            REMEMBERED_EVALUATIONS.fetch_add(1, Ordering::Relaxed);
            return Ok(held.answer.clone());
        }
        let answer = self.expression.evaluate(input, scope)?;
        let mut answers = answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !answers.iter().any(same) {
            answers.truncate(REMEMBERED_ANSWERS - 1);
            answers.push_front(RememberedAnswer {
                input: input.clone(),
                variables: scope.variables.clone(),
                answer: answer.clone(),
            });
        }
        Ok(answer)
    }
}

static FAST_EVALUATIONS: AtomicU64 = AtomicU64::new(0);
static REMEMBERED_EVALUATIONS: AtomicU64 = AtomicU64::new(0);
static ENGINE_EVALUATIONS: AtomicU64 = AtomicU64::new(0);

/// Evaluations answered by the fast path and by the JSONata engine since the process started
/// (for the gateway's metrics).
pub fn evaluations_by_path() -> (u64, u64) {
    (
        FAST_EVALUATIONS.load(Ordering::Relaxed),
        ENGINE_EVALUATIONS.load(Ordering::Relaxed),
    )
}

/// Evaluations a [`Memoized`] expression answered from its remembered answers since the process
/// started (for the gateway's metrics).
pub fn remembered_evaluations() -> u64 {
    REMEMBERED_EVALUATIONS.load(Ordering::Relaxed)
}

/// A node without step modifiers: no filters, `[]`, bindings, group-by or ancestor slot.
pub(crate) fn plain(node: &jlens_core::Node) -> bool {
    let a = &node.attrs;
    !a.keep_array
        && !a.cons_array
        && !a.tuple
        && a.focus.is_none()
        && a.index.is_none()
        && a.stages.is_empty()
        && a.predicate.is_empty()
        && a.group.is_none()
        && a.ancestor.is_none()
}

/// The literal keys of the object `node` ends in; of a choice between two such objects (a list
/// in parts mapping its invitations apart: `$pass = "invitations" ? {…} : {…}`), both branches'
/// keys, in the order of the one with more.
type VariableSets = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// The variables `node` reads, a variable bound in `bound` standing for what its value reads.
/// Read by compiling the node's own text: the engine's analysis of what an expression reads.
fn variables_of(
    node: &jlens_core::Node,
    source: &str,
    bound: &VariableSets,
) -> Option<std::collections::BTreeSet<String>> {
    let text = source.get(node.span.start..node.span.end)?;
    let reads = jlens_core::Expression::compile(text).ok()?.reads();
    let mut variables = std::collections::BTreeSet::new();
    for name in reads.bindings().keys() {
        match bound.get(name) {
            Some(through) => variables.extend(through.iter().cloned()),
            None => {
                variables.insert(name.clone());
            }
        }
    }
    Some(variables)
}

fn entry_variables(
    node: &jlens_core::Node,
    source: &str,
    bound: &VariableSets,
) -> Option<VariableSets> {
    match &node.kind {
        jlens_core::NodeKind::Block { exprs, .. } => {
            let (last, rest) = exprs.split_last()?;
            let mut bound = bound.clone();
            for expr in rest {
                if let jlens_core::NodeKind::Bind { lhs, rhs } = &expr.kind
                    && let jlens_core::NodeKind::Variable { name } = &lhs.kind
                {
                    let read = variables_of(rhs, source, &bound)?;
                    bound.insert(name.clone(), read);
                }
            }
            entry_variables(last, source, &bound)
        }
        jlens_core::NodeKind::Object { pairs } => pairs
            .iter()
            .map(|(key, value)| match &key.kind {
                jlens_core::NodeKind::String { value: key } => {
                    Some((key.clone(), variables_of(value, source, bound)?))
                }
                _ => None,
            })
            .collect(),
        jlens_core::NodeKind::Condition {
            then,
            otherwise: Some(otherwise),
            ..
        } => {
            let mut entries = entry_variables(then, source, bound)?;
            for (key, read) in entry_variables(otherwise, source, bound)? {
                entries.entry(key).or_default().extend(read);
            }
            Some(entries)
        }
        _ => None,
    }
}

fn object_keys_of(node: &jlens_core::Node) -> Option<Vec<String>> {
    let mut node = node;
    while let jlens_core::NodeKind::Block { exprs, .. } = &node.kind {
        node = exprs.last()?;
    }
    match &node.kind {
        jlens_core::NodeKind::Object { pairs } if plain(node) => pairs
            .iter()
            .map(|(key, _)| match &key.kind {
                jlens_core::NodeKind::String { value } if plain(key) => Some(value.clone()),
                _ => None,
            })
            .collect(),
        jlens_core::NodeKind::Condition {
            then,
            otherwise: Some(otherwise),
            ..
        } if plain(node) => {
            let (then, otherwise) = (object_keys_of(then)?, object_keys_of(otherwise)?);
            let (mut keys, rest) = match then.len() >= otherwise.len() {
                true => (then, otherwise),
                false => (otherwise, then),
            };
            for key in rest {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            Some(keys)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A filter drops items where it acts on the way the answer is made, not where it picks a
    /// field of one item; behind a binding or a function of the file's own, it counts anywhere.
    #[test]
    fn items_are_dropped_by_filters_on_the_way_the_answer_is_made() {
        let drops = |source: &str| {
            Expression::compile(source)
                .unwrap_or_else(|error| panic!("{source}: {error:?}"))
                .may_drop_items()
        };
        for dropping in [
            "data[active]",
            "data[0]",
            "[data.{\"id\": id}][active]",
            "$filter(data, function($u) { $u.active })",
            "$distinct(data.id)",
            "data{id: name}",
            "$append(members, invites[status = \"pending\"])",
            "$exists(data) ? data[type = \"user\"] : []",
            "($kept := data[active]; $kept)",
            "($pick := function($x) { $x[active] }; $pick(data))",
            "$map(data, function($u) { $u[active] })",
            "data.(type = \"user\" ? $ : $teams[0])",
        ] {
            assert!(drops(dropping), "{dropping} drops items");
        }
        for keeping in [
            "data",
            "data.user",
            "$append(members, invites)",
            "data.{\"id\": id, \"team\": $$.teams[id = $$.team][0].name}",
            "[userIds.($uid := $; $merge([{\"id\": $uid}, $lookup($$.users, $uid)]))]",
            "($teams := included[type = \"teams\"]; [data.$merge([$, {\"teams\": [$teams[id in $$.ids]]}])])",
            "data.{\"members\": $distinct(members)}",
            "$exists(data) ? data : []",
            "data^(name)",
        ] {
            assert!(!drops(keeping), "{keeping} keeps every item");
        }
    }

    /// Each built key with the variables its value reads, through the block's own bindings.
    #[test]
    fn an_object_key_reads_the_variables_its_value_names() {
        let expression = Expression::compile(
            r#"(
              $str := function($v) { $type($v) = "string" ? $v };
              $inTeams := [$teams[$not(anonymous = true)].{"id": $str(id)}];
              {
                "id": $str(id),
                "groups": $count($inTeams) > 0 ? $inTeams,
                "roles": $context.admin ? [{"id": "admin"}],
                "title": "a $teams in text"
              }
            )"#,
        )
        .unwrap();
        let entries = expression.object_entry_variables().unwrap();
        let names = |key: &str| entries[key].iter().cloned().collect::<Vec<_>>();
        assert_eq!(names("groups"), ["teams"]);
        assert!(names("id").is_empty());
        assert_eq!(names("roles"), ["context"]);
        assert!(names("title").is_empty());
        assert!(
            Expression::compile("$merge([{}, {}])")
                .unwrap()
                .object_entry_variables()
                .is_none()
        );
    }

    #[test]
    fn a_query_mapping_remembers_answers_per_input_and_variables_only_when_steady() {
        // A regular expression keeps it on the JSONata engine; `$context` is read.
        let source = r#"(
            $quote := function($v) { '"' & $replace($v, /"/, '\\"') & '"' };
            {"search": "status eq " & $quote(status) & " in " & $context.subdomain}
        )"#;
        let mapping = Memoized::new(Expression::compile(source).unwrap());
        assert!(mapping.expression.fast_path_gap().is_some());
        assert!(mapping.remembers());
        let acme = Scope::new([("context", json!({"subdomain": "acme"}))]);
        let other = Scope::new([("context", json!({"subdomain": "other"}))]);
        let before = remembered_evaluations();
        let answers: Vec<_> = [
            (json!({"status": "ACTIVE"}), &acme),
            (json!({"status": "ACTIVE"}), &acme),
            (json!({"status": "ACTIVE"}), &other),
            (json!({"status": "STAGED"}), &acme),
            (json!({"status": "ACTIVE"}), &other),
        ]
        .iter()
        .map(|(input, scope)| mapping.evaluate(input, scope).unwrap())
        .collect();
        assert_eq!(
            answers,
            [
                Some(json!({"search": "status eq \"ACTIVE\" in acme"})),
                Some(json!({"search": "status eq \"ACTIVE\" in acme"})),
                Some(json!({"search": "status eq \"ACTIVE\" in other"})),
                Some(json!({"search": "status eq \"STAGED\" in acme"})),
                Some(json!({"search": "status eq \"ACTIVE\" in other"})),
            ]
        );
        // The second and the fifth (tests in one process only add to the count).
        assert!(remembered_evaluations() - before >= 2);
        // An error is not remembered: the same input fails again, as it did.
        let failing = Memoized::new(
            Expression::compile(r#"(function($v) { $error("no " & $v) })(status)"#).unwrap(),
        );
        for _ in 0..2 {
            assert!(failing.evaluate(&json!({"status": "x"}), &acme).is_err());
        }
        // Past the remembered count the oldest answer gives way, and answers stay right.
        for round in 0..2 {
            for n in 0..(REMEMBERED_ANSWERS + 3) {
                let status = format!("S{n}");
                assert_eq!(
                    mapping
                        .evaluate(&json!({ "status": status }), &acme)
                        .unwrap(),
                    Some(json!({"search": format!("status eq \"{status}\" in acme")})),
                    "round {round}"
                );
            }
        }
        assert!(
            format!("{mapping:?}").contains(&format!("answers_held: Some({REMEMBERED_ANSWERS})"))
        );
        assert!(!format!("{mapping:?}").contains("acme"));
    }

    #[test]
    fn only_expressions_that_read_no_clock_or_chance_are_remembered() {
        // Each with a regular expression, which keeps it on the JSONata engine.
        let remembers = |source: &str| {
            let source = format!("($replace('a', /a/, 'b'); {source})");
            Memoized::new(Expression::compile(&source).unwrap()).remembers()
        };
        for steady in [
            "(function($v) { $v })(status)",
            "(function($v) { $toMillis($v) })(created)",
            "(function($v) { $fromMillis($v) })(1000)",
        ] {
            assert!(remembers(steady), "{steady}");
        }
        for unsteady in [
            "(function($v) { $now() })(1)",
            "(function($v) { $millis() })(1)",
            "(function($v) { $random() })(1)",
            "(function($v) { $shuffle($v) })([1, 2])",
            "(function($v) { $eval($v) })('1')",
            "(function($v) { $toMillis($v, '[Y0001]') })('2024')",
            "($f := $toMillis; (function($v) { $f($v) })(created))",
            "(function($v) { $v ~> $toMillis })(created)",
        ] {
            assert!(!remembers(unsteady), "{unsteady}");
        }
        // On the fast path: its answer costs about what looking it up would.
        assert!(!Memoized::new(Expression::compile("status").unwrap()).remembers());
    }

    #[test]
    fn compiles_once_and_evaluates_with_variables() {
        let expression = Expression::compile(r#"{"id": id, "sub": $context.subdomain}"#).unwrap();
        assert_eq!(
            expression.object_keys(),
            Some(vec!["id".to_owned(), "sub".to_owned()])
        );
        let choice = Expression::compile(
            r#"$pass = "invitations" ? {"id": id, "status": "invited"} : {"id": id, "name": name, "status": "active"}"#,
        )
        .unwrap();
        assert_eq!(
            choice.object_keys(),
            Some(vec![
                "id".to_owned(),
                "name".to_owned(),
                "status".to_owned()
            ])
        );
        let scope = Scope::new([("context", json!({"subdomain": "acme"}))]);
        assert_eq!(
            expression.evaluate(&json!({"id": 1}), &scope).unwrap(),
            Some(json!({"id": 1, "sub": "acme"}))
        );
        assert_eq!(
            Expression::compile("missing")
                .unwrap()
                .evaluate(&json!({}), &scope)
                .unwrap(),
            None
        );
    }

    #[test]
    fn the_fast_path_answers_its_subset_and_names_what_keeps_others_on_the_engine() {
        let scope = Scope::new([("context", json!({"domain": "acme.test"}))]);
        let record = json!({"profile": {"login": "Ada", "emails": ["a@x", "b@x"]}, "n": 1.5});
        let mapping = Expression::compile(
            r#"($str := function($v) { $type($v) = "string" and $v != "" ? $v };
               {"login": $lowercase($str(profile.login)) & "@" & $context.domain,
                "second": profile.emails[1], "count": $count(profile.emails)})"#,
        )
        .unwrap();
        assert_eq!(mapping.fast_path_gap(), None);
        assert_eq!(
            mapping.evaluate_fast(&record, &scope),
            FastOutcome::Done(Some(
                json!({"login": "ada@acme.test", "second": "b@x", "count": 2})
            ))
        );
        for (source, gap) in [
            ("$map(a, function($v) { $v })", "the function `$map`"),
            ("$replace(a, /x/, 'y')", "a regular expression"),
            ("$firstNonEmpty(a, b)", "the function `$firstNonEmpty`"),
            ("a ~> $uppercase()", "the chain operator `~>`"),
            (
                "($f := function($a, $a) { $a }; $f(1, 2))",
                "a function with a repeated parameter name",
            ),
        ] {
            assert_eq!(
                Expression::compile(source).unwrap().fast_path_gap(),
                Some(gap)
            );
        }
    }

    #[test]
    fn inputs_the_fast_path_does_not_model_get_the_engines_answer() {
        let scope = Scope::new([]);
        let expression = Expression::compile("$string(n)").unwrap();
        let record = json!({"n": 1.5});
        // JavaScript number formatting is the JSONata engine's: the plan hands this record over.
        assert_eq!(
            expression.evaluate_fast(&record, &scope),
            FastOutcome::Bailed
        );
        assert_eq!(
            expression.evaluate(&record, &scope).unwrap(),
            Some(json!("1.5"))
        );
        // A JSONata engine error stays the JSONata engine's error, code and all.
        let failing = Expression::compile("$number(n)").unwrap();
        let record = json!({"n": "twelve"});
        assert_eq!(failing.evaluate_fast(&record, &scope), FastOutcome::Bailed);
        assert_eq!(failing.evaluate(&record, &scope).unwrap_err().code, "D3030");
    }

    /// `source` compiles into the fast path, and both paths answer `expected` for `record`.
    fn assert_both_paths_answer(source: &str, record: &Value, scope: &Scope, expected: Value) {
        let expression = Expression::compile(source).unwrap();
        assert_eq!(expression.fast_path_gap(), None, "{source}");
        assert_eq!(
            expression
                .evaluate_on_jsonata_engine(record, scope)
                .unwrap(),
            Some(expected.clone()),
            "{source}"
        );
        assert_eq!(
            expression.evaluate_fast(record, scope),
            FastOutcome::Done(Some(expected)),
            "{source}"
        );
    }

    #[test]
    fn type_tests_answer_as_the_engine_does() {
        let record = json!({"s": "x", "n": 1, "a": [1], "o": {}, "z": null, "b": true});
        let scope = Scope::new([]);
        let cases = [
            (
                r#"[$type(s) = "string", "number" = $type(n), $type(a) != "array", $type(o) = "object"]"#,
                json!([true, true, false, true]),
            ),
            // *undefined* compares false both ways.
            (
                r#"[$type(missing) = "string", $type(missing) != "string", $type(z) = "null"]"#,
                json!([false, false, true]),
            ),
            (
                r#"[$type(b) = "boolean", $type(s) = "nonsense", $type(s) != "nonsense"]"#,
                json!([true, false, true]),
            ),
            // A `$type` of the expression's own is called, not the built-in.
            (
                r#"($type := function($v) { "string" }; [$type(n) = "string"])"#,
                json!([true]),
            ),
        ];
        for (source, expected) in cases {
            assert_both_paths_answer(source, &record, &scope, expected);
        }
        // A caller's `$type` value shadows the built-in: the JSONata engine answers.
        let shadowing = Scope::new([("type", json!("x"))]);
        let expression = Expression::compile(r#"$type(s) = "string""#).unwrap();
        assert_eq!(
            expression.evaluate_fast(&record, &shadowing),
            FastOutcome::Bailed
        );
    }

    #[test]
    fn an_item_of_an_array_constructor_is_picked_as_the_array_and_its_filter_pick_it() {
        let record = json!({
            "s": "x", "n": null, "a": [1, 2], "aa": [[1, 2], [3]], "o": {"k": 1}
        });
        let scope = Scope::new([]);
        let cases = [
            (r#"{"r": [missing, s][0]}"#, json!({"r": "x"})),
            // An array's items are flattened in; an array constructor's are not.
            (r#"{"r": [a, s][0]}"#, json!({"r": 1})),
            (r#"{"r": [a, s][2]}"#, json!({"r": "x"})),
            (r#"{"r": [a, s][3]}"#, json!({})),
            (r#"{"r": [[1, 2], s][0]}"#, json!({"r": [1, 2]})),
            (r#"{"r": [aa, s][0]}"#, json!({"r": [1, 2]})),
            (r#"{"r": [s, a][1.7]}"#, json!({"r": 1})),
            (r#"{"r": [s, a][2]}"#, json!({"r": 2})),
            (r#"{"r": [missing, also.missing][0]}"#, json!({})),
            (
                r#"{"r": [n, s][0], "o": [o][0]}"#,
                json!({"r": null, "o": {"k": 1}}),
            ),
        ];
        for (source, expected) in cases {
            assert_both_paths_answer(source, &record, &scope, expected);
        }
        // Starting a path, the filtered array is the JSONata engine's: it answers nothing for
        // this (as jsonata-js does), where picking first would give 1.
        let path = Expression::compile(r#"{"r": [o, s][0].k}"#).unwrap();
        assert_eq!(
            path.fast_path_gap(),
            Some("a filtered array constructor starting a path")
        );
        assert_eq!(path.evaluate(&record, &scope).unwrap(), Some(json!({})));
        // An item after the picked one is still evaluated: its error fails the expression.
        let failing = Expression::compile(r#"[s, $substring(o, 1)][0]"#).unwrap();
        assert!(failing.evaluate_on_jsonata_engine(&record, &scope).is_err());
        assert!(!matches!(
            failing.evaluate_fast(&record, &scope),
            FastOutcome::Done(_)
        ));
    }

    #[test]
    fn variables_resolve_lexically_and_functions_stay_in_their_frame() {
        let scope = Scope::new([]);
        let record = json!({"items": [1, 2]});
        let answered = [
            // Before the inner `:=` runs, `$x` is the outer one.
            (r#"($x := 1; ($y := $x; $x := 2; [$y, $x]))"#, json!([1, 2])),
            (
                r#"($f := function($v) { $v & "!" }; $f($f("a")))"#,
                json!("a!!"),
            ),
            // A function reads the frames where it was made, not where it is called.
            (
                r#"($x := "outer"; $f := function() { $x }; ($x := "inner"; $f()))"#,
                json!("outer"),
            ),
            (r#"items.($v := $; $v * 2)"#, json!([2, 4])),
            // Every run of a block, and every call, starts with its own variables unbound.
            (
                r#"($y := "s"; items.($y := $y & "+"; $y))"#,
                json!(["s+", "s+"]),
            ),
            (
                r#"($w := "o"; $f := function($v) { [$w, $w := $v] }; [$f(1), $f(2)])"#,
                json!(["o", 1, "o", 2]),
            ),
            // A filter on a block binds in the frame around the block.
            (r#"($a := items; $a)[$k := 1]"#, json!(2)),
            // Functions bound once at the top run in place of their calls (`Op::Inline`); one
            // bound twice, or a name called before its binding, is looked up as it runs.
            (
                r#"($f := function($v) { $v & "!" }; $a := $f("x"); $f := function($v) { $v & "?" }; [$a, $f("y")])"#,
                json!(["x!", "y?"]),
            ),
            (
                r#"($a := $string(1); $string := function($v) { "mine" }; [$a, $string(2)])"#,
                json!(["1", "mine"]),
            ),
            // `$` in the body is where the function was made, not where it is called.
            (
                r#"($f := function($v) { $count(items) & $v }; items.$f("-"))"#,
                json!(["2-", "2-"]),
            ),
            (
                r#"($s := function($v) { $v & "s" }; $t := function($v) { $s($v) & "t" }; $t($s("a")))"#,
                json!("asst"),
            ),
            (
                r#"($f := function($a, $b) { [$a, $b] }; $f(1))"#,
                json!([1]),
            ),
            // A body that reads its input only through its one parameter runs over the
            // argument (`Op::InlineOver`); one that reads `$`, a field or the parameter
            // inside a filter does not.
            (r#"($f := function($v) { $v[$ > 1] }; $f(items))"#, json!(2)),
            (r#"($f := function($v) { $v.a }; $f({"a": 5}))"#, json!(5)),
            (r#"($f := function($v) { items[$ = $v] }; $f(2))"#, json!(2)),
            (
                r#"($f := function($v) { $v & $string($count(items)) }; $f("n"))"#,
                json!("n2"),
            ),
            (r#"($f := function($v) { $ }; $f(1).items)"#, json!([1, 2])),
            (r#"($f := function($v) { items[$v] }; $f(-1))"#, json!(2)),
            (
                r#"($f := function($v) { $v[$v[1] = 2] }; $f(items))"#,
                json!([1, 2]),
            ),
            // A function also used as a value is still made.
            (
                r#"($f := function($v) { $v & "!" }; $g := $f; [$f("a"), $g("b")])"#,
                json!(["a!", "b!"]),
            ),
        ];
        for (source, expected) in answered {
            assert_both_paths_answer(source, &record, &scope, expected);
        }
        // Recursion, and a function returned out of the frame that made it, go to the JSONata engine.
        let handed_over = [
            (
                r#"($down := function($n) { $n > 0 ? $down($n - 1) + 1 : 0 }; $down(3))"#,
                json!(3),
            ),
            (
                r#"($prefix := function($a) { function($v) { $a & $v } }; $p := $prefix("p"); $p("q"))"#,
                json!("pq"),
            ),
        ];
        for (source, expected) in handed_over {
            let expression = Expression::compile(source).unwrap();
            assert_eq!(expression.fast_path_gap(), None, "{source}");
            assert_eq!(
                expression.evaluate_fast(&record, &scope),
                FastOutcome::Bailed,
                "{source}"
            );
            assert_eq!(
                expression.evaluate(&record, &scope).unwrap(),
                Some(expected),
                "{source}"
            );
        }
    }

    #[test]
    fn reports_errors_with_codes() {
        let error = Expression::compile("a.b[").unwrap_err();
        assert_eq!(error.code, "S0203");
        let failing = Expression::compile("$number('x')").unwrap();
        let error = failing.evaluate(&json!({}), &Scope::new([])).unwrap_err();
        assert_eq!(error.code, "D3030");
    }

    #[test]
    fn deep_input_is_an_error_not_a_crash() {
        let mut deep = json!(1);
        for _ in 0..2_000 {
            deep = json!({"a": deep});
        }
        let expression = Expression::compile("$string($)").unwrap();
        let result = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || expression.evaluate(&deep, &Scope::new([])).map(|_| ()))
            .unwrap()
            .join();
        assert!(result.is_ok(), "the evaluation must not abort the thread");
    }
}
