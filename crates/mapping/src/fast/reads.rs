//! What a plan can read of its input: the field paths it may look at, found once at load, so a
//! provider body can be parsed into only those fields (`crate::reads`). The analysis follows the
//! input through field steps; any other use of an input value (compared, copied into the output,
//! passed to a function, bound to a variable, tested for truth) keeps that value whole, so the
//! answer over the pruned input is the answer over the full one.

use super::{Filter, Node, Op, Plan};
use crate::reads::ReadSet;

/// The input paths `plan` may read.
pub(crate) fn reads(plan: &Plan) -> ReadSet {
    let mut set = ReadSet::default();
    let root = Some(Vec::new());
    let result = visit(&plan.root, &root, &mut set);
    keep_whole(&mut set, result);
    set
}

/// An input value during the analysis: the field path it sits at (arrays are transparent:
/// items share their array's path), or `None` for a value not taken from the input by field
/// steps alone (a constant, a variable, a computed value).
type At = Option<Vec<Box<str>>>;

fn keep_whole(set: &mut ReadSet, at: At) {
    if let Some(path) = at {
        set.node(&path).keep_all();
    }
}

/// Visits `node` evaluated with the context at `context`; returns where its value sits in the
/// input when it is an input value reached by field steps. Any other input value the node
/// might produce has been kept whole.
fn visit(node: &Node, context: &At, set: &mut ReadSet) -> At {
    let at = visit_op(node, context, set);
    for filter in node.filters.iter().chain(&node.stages) {
        if let Filter::Expr(predicate) = filter {
            // A predicate runs over each item of the value; its answer is a position or a
            // Boolean, so whatever input it reads is read whole.
            let answer = visit(predicate, &at, set);
            keep_whole(set, answer);
        }
    }
    at
}

fn visit_op(node: &Node, context: &At, set: &mut ReadSet) -> At {
    // Everything a node uses as a value rather than walks into.
    let used = |value: At, set: &mut ReadSet| keep_whole(set, value);
    match &node.op {
        Op::Context => context.clone(),
        Op::Root => Some(Vec::new()),
        Op::Variable(_) | Op::Constant(_) => None,
        Op::Name(name, _) => context.as_ref().map(|path| {
            let mut path = path.clone();
            path.push(name.clone());
            set.node(&path);
            path
        }),
        Op::Path { steps, .. } => {
            let mut at = context.clone();
            for step in steps {
                // A step that does not give an input value still runs once per item of the
                // previous one: that value must keep its items (it is present, pruned below).
                if let Some(path) = &at {
                    set.node(path);
                }
                at = visit(step, &at, set);
            }
            at
        }
        Op::Array(items) => {
            for item in items {
                let value = visit(&item.node, context, set);
                used(value, set);
            }
            None
        }
        Op::Object { pairs, .. } => {
            for (key, value) in pairs {
                let key = visit(key, context, set);
                used(key, set);
                let value = visit(value, context, set);
                used(value, set);
            }
            None
        }
        Op::Binary(_, lhs, rhs) | Op::And(lhs, rhs) | Op::Or(lhs, rhs) => {
            let lhs = visit(lhs, context, set);
            used(lhs, set);
            let rhs = visit(rhs, context, set);
            used(rhs, set);
            None
        }
        Op::Coalesce(lhs, rhs) | Op::Default(lhs, rhs) => {
            let lhs = visit(lhs, context, set);
            used(lhs, set);
            let rhs = visit(rhs, context, set);
            used(rhs, set);
            None
        }
        Op::TypeIs { arg, .. } => {
            let value = visit(arg, context, set);
            used(value, set);
            None
        }
        Op::Negate(expr) => {
            let value = visit(expr, context, set);
            used(value, set);
            None
        }
        Op::Condition(condition, then, otherwise) => {
            for branch in [Some(condition), Some(then), otherwise.as_ref()]
                .into_iter()
                .flatten()
            {
                let value = visit(branch, context, set);
                used(value, set);
            }
            None
        }
        Op::Block { exprs, .. } => {
            let mut last = None;
            for expr in exprs {
                used(last.take(), set);
                last = visit(expr, context, set);
            }
            last
        }
        Op::Bind(_, value) => {
            let value = visit(value, context, set);
            used(value, set);
            None
        }
        // The body runs later, with `$` the context where the function was made.
        Op::Lambda(lambda) => {
            let value = visit(&lambda.body, context, set);
            used(value, set);
            None
        }
        // The body of a function bound at the top of the root block: its `$` is the input.
        Op::Inline(lambda, args) => {
            for arg in args {
                let value = visit(arg, context, set);
                used(value, set);
            }
            let value = visit(&lambda.body, &Some(Vec::new()), set);
            used(value, set);
            None
        }
        // The body runs with the argument as its context.
        Op::InlineOver { body, arg } => {
            let at = visit(arg, context, set);
            let value = visit(body, &at, set);
            used(value, set);
            None
        }
        Op::Call { args, .. } => {
            for arg in args {
                let value = visit(arg, context, set);
                used(value, set);
            }
            None
        }
    }
}
