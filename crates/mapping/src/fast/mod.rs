//! The fast path: a native evaluator for the JSONata subset mappings are written in.
//!
//! Owns compiling a parsed expression (`jlens-core`'s processed tree) into a [`Plan`] when every
//! node is in the subset — paths with predicates, object and array constructors, variables and
//! blocks, user functions (`function($x) {…}`), conditionals, `??` / `?:`, `and` / `or` / `in`,
//! comparisons, arithmetic, `&`, and the built-in functions listed in [`builtins`] — and
//! evaluating a plan over the borrowed input record. It does not own the semantics: `jlens-core`
//! does. Anything outside the subset is refused at compile time (the whole expression stays on the
//! engine), and anything the plan meets at run time that the JSONata engine would answer with an error or
//! a value the fast path does not model (a type error, a non-integral number turned into a string,
//! a regular expression, …) ends the fast evaluation with [`Bail`], and the caller evaluates that
//! one input on the JSONata engine. The differential tests (`tests/tests/fast_path.rs`) hold the two
//! equal.

mod builtins;
mod compile;
mod eval;
mod reads;

pub(crate) use compile::compile;
pub(crate) use eval::{Variables, evaluate, evaluate_doc, evaluate_doc_json, evaluate_json};
pub(crate) use reads::reads;

use std::ops::Range;

use serde_json::Value;

use builtins::Builtin;

/// The fast path gave up on this input; the JSONata engine answers instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bail;

/// A compiled expression in the subset.
///
/// Variables live in numbered slots, one per name a frame (the whole expression, a block, a
/// function) binds, found at compile time: an evaluation holds them in one array instead of a
/// chain of frames, so a function call allocates nothing. That is exact because a frame has at
/// most one live activation at a time: a function already running is not entered again (a
/// recursive call goes to the JSONata engine), and a function value never leaves the frame that made it
/// (one that would is handed to the JSONata engine too).
#[derive(Debug)]
pub(crate) struct Plan {
    root: Node,
    /// How many variable slots the plan uses.
    slots: u32,
    /// How many functions (`function(…) {…}`) it defines.
    lambdas: u32,
}

#[derive(Debug, Clone)]
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
    /// The op's value needs no filter and no `finish` (see `eval`): it is returned as it is,
    /// which lets the value be written once into the caller's place instead of copied on the way.
    finished: bool,
    /// How the evaluator runs this node, chosen once the plan is compiled ([`eval::runner`]):
    /// a small function per kind of node, called through this pointer, instead of one `match`
    /// over every kind in a function large enough that entering it cost more than most nodes'
    /// own work.
    run: eval::Run,
    /// How the evaluator tests this node as a Boolean ([`eval::tester`]): a condition, `and`,
    /// `or` or a comparison answers without making a value to test.
    test: eval::Test,
    /// How the evaluator writes this node's value as JSON text where it is written at once
    /// ([`eval::writer`]): an object or array constructor, a condition choosing one, or a
    /// `$nonEmpty` call is written as its parts come instead of being made, written, dropped.
    write: eval::Writer,
    /// A plain literal's JSON text, as [`eval::Writer::Constant`] writes it (written once, at
    /// link, by the function that would write it per record); empty for any other node.
    text: Box<[u8]>,
}

#[derive(Debug, Clone)]
enum Filter {
    /// `[n]` with a number literal: the item at that position.
    Index(f64),
    /// Any other predicate: a number (position) or a Boolean per item.
    Expr(Node),
}

#[derive(Debug, Clone)]
enum Op {
    /// `$`: the context.
    Context,
    /// `$$`: the input the evaluation started with.
    Root,
    /// `$name`, looked up in its slots, then in the caller's scope.
    Variable(Var),
    /// A literal, or a constructor of literals folded at compile time.
    Constant(Value),
    /// A field step: the name, and its [`crate::doc::symbol`] for looking it up in a [`crate::doc::Doc`].
    Name(Box<str>, u32),
    Path {
        steps: Vec<Node>,
        keep_singleton: bool,
        /// Every step a bare field name (the first may be a variable): walked without building
        /// sequences while no array is met.
        fields_only: bool,
        /// With every step a bare field name, their symbols (set once the op is final, by
        /// `compile::link`): a record parsed as a `Doc` is walked by these alone, without
        /// reading the steps' nodes.
        symbols: Box<[u32]>,
        /// Where each of those steps last found its field ([`crate::doc::Doc::field_hinted`]).
        hints: Box<[crate::doc::Hint]>,
    },
    Array(Vec<Item>),
    Object {
        pairs: Vec<(Node, Node)>,
        /// Every key a string literal, each once: nothing to evaluate or check per input.
        literal_keys: bool,
        /// With literal keys, each pair's `,"key":` as JSON text, for writing the object (the
        /// comma left out before the first pair written).
        keys_text: Box<[Box<[u8]>]>,
    },
    Binary(Binary, Box<Node>, Box<Node>),
    /// `$type(arg) = "name"` (or `!=`), the built-in `$type` not rebound: compares the type
    /// without making its name. `equal` is false for `!=`; either is false for *undefined*.
    TypeIs {
        arg: Box<Node>,
        type_name: u8,
        equal: bool,
    },
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
        /// The block binds variables, in a frame of its own (the JSONata engine's choice).
        own_frame: bool,
        /// The slots of that frame: unbound on entry.
        frame: Range<u32>,
    },
    /// `$name := value`, into the slot of the innermost frame.
    Bind(Var, Box<Node>),
    Lambda(Box<Lambda>),
    /// A call of a function the plan binds once, before the call, to a leaf function (see
    /// `compile::inline_known_calls`): the function's body, run with its arguments in the
    /// parameters' slots, without looking the function up or making it a value.
    Inline(Box<Lambda>, Vec<Node>),
    /// An [`Op::Inline`] call of a function of one parameter whose body reads its input only
    /// through that parameter (see `compile::over_argument`): the body, with `$` in the
    /// parameter's place, run with the argument as its context. Nothing is written to a slot.
    InlineOver {
        body: Box<Node>,
        arg: Box<Node>,
    },
    Call {
        /// The function's name, and the slots that may bind it to a function value.
        name: Var,
        /// The built-in of that name, used when no slot binds the name.
        builtin: Option<Builtin>,
        args: Vec<Node>,
    },
}

/// A variable name, and the slots that may hold it, innermost frame first: a frame binds a
/// name when its `:=` has run, so until then the frames around it answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Var {
    text: Box<str>,
    slots: Box<[u32]>,
}

impl Var {
    fn new(text: &str) -> Var {
        Var {
            text: text.into(),
            slots: Box::new([]), // resolved once the whole expression is compiled
        }
    }
}

#[derive(Debug, Clone)]
struct Item {
    node: Node,
    /// The item is itself an array constructor: kept as one nested array, not flattened in.
    nested_constructor: bool,
}

#[derive(Debug, Clone)]
struct Lambda {
    /// Numbers the functions of a plan, to see one entered while it runs.
    id: u32,
    params: Vec<Box<str>>,
    /// The slots of the function's frame: its parameters first, then what its body binds.
    frame: Range<u32>,
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
