//! The fast path: a native evaluator for the JSONata subset mappings are written in.
//!
//! Owns compiling a parsed expression (`jlens-core`'s processed tree) into a [`Plan`] when every
//! node is in the subset — paths with predicates, object and array constructors, variables and
//! blocks, user functions (`function($x) {…}`), conditionals, `??` / `?:`, `and` / `or` / `in`,
//! comparisons, arithmetic, `&`, and the built-in functions listed in [`builtins`] — and
//! evaluating a plan over the borrowed input record. It does not own the semantics: `jlens-core`
//! does. Anything outside the subset is refused at compile time (the whole expression stays on the
//! engine), and anything the plan meets at run time that the engine would answer with an error or
//! a value the fast path does not model (a type error, a non-integral number turned into a string,
//! a regular expression, …) ends the fast evaluation with [`Bail`], and the caller evaluates that
//! one input on the engine. The differential tests (`tests/tests/fast_path.rs`) hold the two
//! equal.

mod builtins;
mod compile;
mod eval;

pub(crate) use compile::compile;
pub(crate) use eval::evaluate;

use serde_json::Value;

use builtins::Builtin;

/// The fast path gave up on this input; the engine answers instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bail;

/// A compiled expression in the subset.
#[derive(Debug)]
pub(crate) struct Plan {
    root: Node,
}

#[derive(Debug)]
struct Node {
    op: Op,
    /// Filters (`[…]`) applied to the node's value (JSONata's `predicate`).
    filters: Vec<Filter>,
    /// Filters of a path step, applied to each item's value after it is finished (`stages`).
    stages: Vec<Filter>,
    /// The `[]` modifier: a singleton sequence stays an array.
    keep_array: bool,
    /// An array constructor that is the first or last step of a path: not flattened.
    cons_array: bool,
}

#[derive(Debug)]
enum Filter {
    /// `[n]` with a number literal: the item at that position.
    Index(f64),
    /// Any other predicate: a number (position) or a Boolean per item.
    Expr(Node),
}

#[derive(Debug)]
enum Op {
    /// `$`: the context.
    Context,
    /// `$$`: the input the evaluation started with.
    Root,
    /// `$name`, looked up in the frames, then in the caller's scope.
    Variable(Ident),
    /// A literal, or a constructor of literals folded at compile time.
    Constant(Value),
    Name(Box<str>),
    Path {
        steps: Vec<Node>,
        keep_singleton: bool,
        /// Every step a bare field name (the first may be a variable): walked without building
        /// sequences while no array is met.
        fields_only: bool,
    },
    Array(Vec<Item>),
    Object(Vec<(Node, Node)>),
    Binary(Binary, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Negate(Box<Node>),
    Condition(Box<Node>, Box<Node>, Option<Box<Node>>),
    /// `??`: the left value when it exists.
    Coalesce(Box<Node>, Box<Node>),
    /// `?:`: the left value when it is true as a Boolean.
    Default(Box<Node>, Box<Node>),
    Block {
        exprs: Vec<Node>,
        frame: bool,
    },
    Bind(Ident, Box<Node>),
    Lambda(Box<Lambda>),
    Call {
        name: Ident,
        /// The built-in of that name, used when no frame binds the name to a function.
        builtin: Option<Builtin>,
        /// The expression binds this name somewhere, so the frames are searched first.
        bindable: bool,
        args: Vec<Node>,
    },
}

/// A variable name, and its number within the plan (frames compare numbers, not text).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ident {
    text: Box<str>,
    id: u32,
}

impl Ident {
    fn new(text: &str) -> Ident {
        Ident {
            text: text.into(),
            id: u32::MAX, // numbered once the whole expression is compiled
        }
    }
}

#[derive(Debug)]
struct Item {
    node: Node,
    /// The item is itself an array constructor: kept as one nested array, not flattened in.
    nested_constructor: bool,
}

#[derive(Debug)]
struct Lambda {
    params: Vec<Ident>,
    body: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Concat,
    In,
}
