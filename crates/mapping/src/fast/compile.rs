//! Compiling the JSONata engine's processed tree into a fast-path [`Plan`], or saying which construct
//! keeps the expression on the JSONata engine.

use std::ops::Range;

use jlens_core::ast::{Ast, BinaryOp, FallbackOp, NodeKind, Stage};
use serde_json::{Map, Value};

use super::builtins::{self, Builtin};
use super::{Binary, Filter, Item, Lambda, Node, Op, Plan, Var};
use crate::expression::plain;

/// The plan for `ast`, or the first construct outside the subset.
pub(crate) fn compile(ast: &Ast) -> Result<Plan, String> {
    let mut root = node(&ast.root)?;
    let mut resolver = Resolver::default();
    let mut names = Vec::new();
    collect_binds(&mut root, &mut names);
    let root_frame = resolver.open(&[], names);
    resolver.resolve(&mut root);
    resolver.frames.pop();
    debug_assert_eq!(root_frame.start, 0);
    unwrap_blocks(&mut root, false);
    inline_known_calls(&mut root);
    link(&mut root);
    if let Some(name) = resolver.unknown {
        // The caller's scope holds values, never functions, so a call of a name the expression
        // does not bind is a host function (`$firstNonEmpty`, …): the JSONata engine's.
        return Err(format!("the function `${name}`"));
    }
    Ok(Plan {
        root,
        slots: resolver.next_slot,
        lambdas: resolver.next_lambda,
    })
}

/// Gives every frame its slots and every variable the slots that may hold it.
#[derive(Default)]
struct Resolver {
    /// The frames around the node being resolved: the names each binds, with their slots.
    frames: Vec<Vec<(Box<str>, u32)>>,
    next_slot: u32,
    next_lambda: u32,
    /// The first call of a function that is neither built in nor bound by the expression.
    unknown: Option<Box<str>>,
}

impl Resolver {
    /// Opens a frame binding `params`, then `names` (the first binding of each name counts).
    fn open(&mut self, params: &[Box<str>], names: Vec<Box<str>>) -> Range<u32> {
        let start = self.next_slot;
        let mut frame: Vec<(Box<str>, u32)> = Vec::new();
        for name in params.iter().cloned().chain(names) {
            if !frame.iter().any(|(bound, _)| *bound == name) {
                frame.push((name, self.next_slot));
                self.next_slot += 1;
            }
        }
        self.frames.push(frame);
        start..self.next_slot
    }

    fn slots_of(&self, name: &str) -> Box<[u32]> {
        self.frames
            .iter()
            .rev()
            .filter_map(|frame| frame.iter().find(|(bound, _)| &**bound == name))
            .map(|(_, slot)| *slot)
            .collect()
    }

    fn resolve(&mut self, node: &mut Node) {
        match &mut node.op {
            Op::Block {
                exprs,
                own_frame: true,
                frame,
            } => {
                let mut names = Vec::new();
                exprs
                    .iter_mut()
                    .for_each(|expr| collect_binds(expr, &mut names));
                *frame = self.open(&[], names);
                exprs.iter_mut().for_each(|expr| self.resolve(expr));
                self.frames.pop();
                return self.resolve_filters(node);
            }
            Op::Lambda(lambda) => {
                lambda.id = self.next_lambda;
                self.next_lambda += 1;
                let mut names = Vec::new();
                collect_binds(&mut lambda.body, &mut names);
                lambda.frame = self.open(&lambda.params, names);
                self.resolve(&mut lambda.body);
                self.frames.pop();
                return self.resolve_filters(node);
            }
            Op::Variable(var) | Op::Bind(var, _) => var.slots = self.slots_of(&var.text),
            Op::Call { name, builtin, .. } => {
                name.slots = self.slots_of(&name.text);
                if name.slots.is_empty() && builtin.is_none() && self.unknown.is_none() {
                    self.unknown = Some(name.text.clone());
                }
            }
            _ => {}
        }
        for child in children(node) {
            self.resolve(child);
        }
        if let Some(type_is) = type_test(node) {
            node.op = type_is;
        }
        exists_test(node);
    }

    fn resolve_filters(&mut self, node: &mut Node) {
        for filter in node.filters.iter_mut().chain(&mut node.stages) {
            if let Filter::Expr(expr) = filter {
                self.resolve(expr);
            }
        }
    }
}

/// `$type(x) = "name"` / `"name" = $type(x)` (and `!=`) as [`Op::TypeIs`], when `$type` is the
/// built-in (no slot of the expression binds it) and the call and the literal are bare.
fn type_test(node: &mut Node) -> Option<Op> {
    let Op::Binary(op @ (Binary::Eq | Binary::Ne), lhs, rhs) = &mut node.op else {
        return None;
    };
    let equal = *op == Binary::Eq;
    let (call, literal) = match (&lhs.op, &rhs.op) {
        (Op::Call { .. }, Op::Constant(_)) => (lhs, rhs),
        (Op::Constant(_), Op::Call { .. }) => (rhs, lhs),
        _ => return None,
    };
    let type_name = match constant(literal) {
        Some(Value::String(name)) => builtins::type_named(name)?,
        _ => return None,
    };
    let bare = call.filters.is_empty() && call.stages.is_empty() && !call.keep_array;
    match &mut call.op {
        Op::Call {
            name,
            builtin: Some(Builtin::Type),
            args,
        } if bare && name.slots.is_empty() && args.len() == 1 => Some(Op::TypeIs {
            arg: Box::new(args.pop()?),
            type_name,
            equal,
        }),
        _ => None,
    }
}

/// `$exists(E) ? E : F` as `E ?? F` (JSONata's own reading of `??`), when `$exists` is the
/// built-in and the call is bare: `E` is evaluated once instead of twice. The two `E`s must be
/// the same tree in the same scope; they are compared by their `Debug` text, which shows every
/// field (before `link`, every node's `run`, `test` and `write` are the same defaults, and two
/// functions are never the same tree: each has its own number). Evaluating `E` once is exact
/// because nothing in the subset answers differently when evaluated again (no `$random`,
/// `$now`, or host function: those go to the JSONata engine).
fn exists_test(node: &mut Node) {
    let Op::Condition(condition, then, Some(_)) = &node.op else {
        return;
    };
    let bare = condition.filters.is_empty() && condition.stages.is_empty() && !condition.keep_array;
    let Op::Call {
        name,
        builtin: Some(Builtin::Exists),
        args,
    } = &condition.op
    else {
        return;
    };
    if !bare
        || !name.slots.is_empty()
        || args.len() != 1
        || format!("{:?}", args[0]) != format!("{then:?}")
    {
        return;
    }
    node.op = match std::mem::replace(&mut node.op, Op::Context) {
        Op::Condition(_, then, Some(otherwise)) => Op::Coalesce(then, otherwise),
        op => op,
    };
}

/// The names a frame's own `:=` bind below `node`: not those of the blocks with a frame of their
/// own, nor of the functions, inside it.
fn collect_binds(node: &mut Node, names: &mut Vec<Box<str>>) {
    match &node.op {
        Op::Lambda(_)
        | Op::Block {
            own_frame: true, ..
        } => {
            // Its filters run in the enclosing frame.
            for filter in node.filters.iter_mut().chain(&mut node.stages) {
                if let Filter::Expr(expr) = filter {
                    collect_binds(expr, names);
                }
            }
            return;
        }
        Op::Bind(var, _) => names.push(var.text.clone()),
        _ => {}
    }
    for child in children(node) {
        collect_binds(child, names);
    }
}

/// Calls of a function bound once, by a top-level `:=` of the root block, to a leaf function
/// (one whose body calls only built-ins and makes no function) become [`Op::Inline`] in the
/// expressions after that binding. There the name can only mean that function, its `$` is the
/// input (the root block's context), and a leaf is never running when it is called, so its
/// frame is free: the call needs no lookup, no function value and no recursion guard.
fn inline_known_calls(root: &mut Node) {
    let mut binds: Vec<u32> = Vec::new();
    each_node(root, &mut |node| {
        if let Op::Bind(var, _) = &node.op {
            binds.extend(var.slots.first());
        }
    });
    let Op::Block { exprs, .. } = &mut root.op else {
        return;
    };
    // Each function, and its body over its argument when it has one.
    let mut known: Vec<(u32, Lambda, Option<Node>)> = Vec::new();
    // Where each is bound: the slot and the expression.
    let mut bound_at: Vec<(u32, usize)> = Vec::new();
    let last = exprs.len().saturating_sub(1);
    for (index, expr) in exprs.iter_mut().enumerate() {
        if !known.is_empty() {
            each_node(expr, &mut |node| {
                let Op::Call { name, args, .. } = &mut node.op else {
                    return;
                };
                let Some((_, lambda, over)) = known
                    .iter()
                    .find(|(slot, ..)| name.slots.first() == Some(slot))
                else {
                    return;
                };
                node.op = match (over, args.len()) {
                    (Some(body), 1) => Op::InlineOver {
                        body: Box::new(body.clone()),
                        arg: Box::new(args.remove(0)),
                    },
                    _ => Op::Inline(Box::new(lambda.clone()), std::mem::take(args)),
                };
            });
        }
        if let Some((slot, lambda)) = leaf_binding(expr)
            && binds.iter().filter(|bound| **bound == slot).count() == 1
        {
            known.push((slot, lambda.clone(), over_argument(lambda)));
            bound_at.push((slot, index));
        }
    }
    // A function every call of which now runs in place need not be made: its binding (never
    // the block's value) becomes a constant, which saves making a function value per input.
    let mut uses: Vec<u32> = Vec::new();
    each_node(root, &mut |node| match &node.op {
        Op::Variable(var) | Op::Call { name: var, .. } => uses.extend(var.slots.iter()),
        _ => {}
    });
    let Op::Block { exprs, .. } = &mut root.op else {
        return;
    };
    for (slot, index) in bound_at {
        if index != last && !uses.contains(&slot) {
            exprs[index].op = Op::Constant(Value::Null);
        }
    }
}

/// The body of a leaf function of one parameter with `$` in the parameter's place, when that
/// is the same function: the parameter is its only binding, and the body reads it only where
/// `$` would be the function's context, and reads that context nowhere (no `$`, no field name
/// or path starting from it). Run with the argument as its context, such a body needs no slot.
fn over_argument(lambda: &Lambda) -> Option<Node> {
    let param = lambda.frame.start;
    if lambda.params.len() != 1 || lambda.frame.end != param + 1 {
        return None;
    }
    if !context_free(&lambda.body, param, true) {
        return None;
    }
    let mut body = lambda.body.clone();
    each_node(&mut body, &mut |node| {
        if matches!(&node.op, Op::Variable(var) if var.slots.first() == Some(&param)) {
            node.op = Op::Context;
            node.finished = false; // `Op::Context`'s value is finished where it is read
        }
    });
    Some(body)
}

/// Whether `node`, evaluated with the function's context when `top`, reads that context only
/// through the parameter in slot `param`, and the parameter only at the top.
fn context_free(node: &Node, param: u32, top: bool) -> bool {
    let filters_free = node
        .filters
        .iter()
        .chain(&node.stages)
        .all(|filter| match filter {
            Filter::Index(_) => true,
            Filter::Expr(predicate) => context_free(predicate, param, false),
        });
    let op_free = match &node.op {
        Op::Context | Op::Name(..) => !top,
        Op::Variable(var) | Op::Bind(var, _) if var.slots.contains(&param) => {
            top && var.slots.len() == 1 && matches!(node.op, Op::Variable(_))
        }
        Op::Path { steps, .. } => {
            let starts_with_value = matches!(
                steps.first().map(|step| &step.op),
                Some(Op::Variable(_) | Op::Root | Op::Context)
            );
            (starts_with_value || !top)
                && steps
                    .iter()
                    .enumerate()
                    .all(|(index, step)| context_free(step, param, top && index == 0))
        }
        // Another known function's body over its argument reads only that argument.
        Op::InlineOver { arg, .. } => context_free(arg, param, top),
        Op::Lambda(_) | Op::Inline(..) => false,
        _ => {
            let mut copy = node.clone();
            copy.filters.clear();
            copy.stages.clear();
            children(&mut copy)
                .into_iter()
                .all(|child| context_free(child, param, top))
        }
    };
    filters_free && op_free
}

/// `$name := function(…) {…}`, bare, with a leaf body: the slot and the function.
fn leaf_binding(expr: &Node) -> Option<(u32, &Lambda)> {
    let bare = |node: &Node| node.filters.is_empty() && node.stages.is_empty() && !node.keep_array;
    let Op::Bind(var, value) = &expr.op else {
        return None;
    };
    let Op::Lambda(lambda) = &value.op else {
        return None;
    };
    if !bare(expr) || !bare(value) {
        return None;
    }
    let mut leaf = true;
    let mut body = lambda.body.clone();
    each_node(&mut body, &mut |node| match &node.op {
        Op::Lambda(_) => leaf = false,
        Op::Call { name, builtin, .. } => leaf &= builtin.is_some() && name.slots.is_empty(),
        _ => {}
    });
    Some((*var.slots.first()?, &**lambda)).filter(|_| leaf)
}

/// Visits `node` and every node below it, lambda bodies and filters included.
fn each_node(node: &mut Node, visit: &mut impl FnMut(&mut Node)) {
    visit(node);
    for child in children(node) {
        each_node(child, visit);
    }
}

/// Replaces each block of one expression that binds nothing (`(expr)`, parentheses around a
/// part of an expression) by that expression: its value is the block's, and running the block
/// cost a general node, a frame opened for nothing and a call per evaluation. A block with
/// filters, `[]` or a constructor flag of its own stays, and so does a path's step (a step's
/// kind decides how the path flattens what it gives).
fn unwrap_blocks(node: &mut Node, is_step: bool) {
    while !is_step
        && node.filters.is_empty()
        && node.stages.is_empty()
        && !node.keep_array
        && !node.cons_array
        && let Op::Block {
            exprs,
            own_frame: false,
            frame,
        } = &mut node.op
        && frame.start == frame.end
        && exprs.len() == 1
    {
        let Some(inner) = exprs.pop() else {
            break;
        };
        *node = inner;
    }
    // A path's steps come first among its children.
    let step_count = match &node.op {
        Op::Path { steps, .. } => steps.len(),
        _ => 0,
    };
    for (index, child) in children(node).into_iter().enumerate() {
        unwrap_blocks(child, index < step_count);
    }
}

/// Chooses how each node runs, once its op is final.
fn link(node: &mut Node) {
    if let Op::Path {
        steps,
        fields_only: true,
        symbols,
        hints,
        ..
    } = &mut node.op
    {
        *symbols = steps
            .iter()
            .map(|step| match step.op {
                Op::Name(_, symbol) if symbol != crate::doc::NO_SYMBOL => Some(symbol),
                _ => None,
            })
            .collect::<Option<_>>()
            .unwrap_or_default();
        *hints = symbols.iter().map(|_| Default::default()).collect();
    }
    node.run = super::eval::runner(node);
    node.test = super::eval::tester(node);
    node.write = super::eval::writer(node);
    if node.write == super::eval::Writer::Constant
        && let Op::Constant(value) = &node.op
    {
        node.text = super::eval::constant_text(value);
    }
    for child in children(node) {
        link(child);
    }
}

/// The nodes directly below `node`: its operands, then its filters.
fn children(node: &mut Node) -> Vec<&mut Node> {
    let mut out: Vec<&mut Node> = Vec::new();
    match &mut node.op {
        Op::Context | Op::Root | Op::Variable(_) | Op::Constant(_) | Op::Name(..) => {}
        Op::Path { steps: nodes, .. }
        | Op::Block { exprs: nodes, .. }
        | Op::Call { args: nodes, .. } => out.extend(nodes.iter_mut()),
        Op::Inline(lambda, args) => {
            out.extend(args.iter_mut());
            out.push(&mut lambda.body);
        }
        Op::InlineOver { body, arg } => {
            out.push(arg);
            out.push(body);
        }
        Op::Array(items) => out.extend(items.iter_mut().map(|item| &mut item.node)),
        Op::Object { pairs, .. } => {
            for (key, value) in pairs {
                out.push(key);
                out.push(value);
            }
        }
        Op::Binary(_, a, b)
        | Op::And(a, b)
        | Op::Or(a, b)
        | Op::Coalesce(a, b)
        | Op::Default(a, b) => {
            out.push(a);
            out.push(b);
        }
        Op::Negate(a) | Op::Bind(_, a) | Op::TypeIs { arg: a, .. } => out.push(a),
        Op::Condition(a, b, c) => {
            out.push(a);
            out.push(b);
            out.extend(c.as_deref_mut());
        }
        Op::Lambda(lambda) => out.push(&mut lambda.body),
    }
    for filter in node.filters.iter_mut().chain(&mut node.stages) {
        if let Filter::Expr(expr) = filter {
            out.push(expr);
        }
    }
    out
}

fn filters_of(stages: &[Stage]) -> Result<Vec<Filter>, String> {
    stages
        .iter()
        .map(|stage| match stage {
            Stage::Filter { expr, .. } => Ok(match &expr.kind {
                NodeKind::Number { value } if plain(expr) => Filter::Index(*value),
                _ => Filter::Expr(node(expr)?),
            }),
            Stage::Index { .. } => Err("a position variable (`#$i`)".to_owned()),
        })
        .collect()
}

fn node(source: &jlens_core::Node) -> Result<Node, String> {
    let attrs = &source.attrs;
    if attrs.tuple
        || attrs.focus.is_some()
        || attrs.index.is_some()
        || attrs.group.is_some()
        || attrs.ancestor.is_some()
        || !attrs.seeking_parent.is_empty()
    {
        return Err("position, context or parent bindings, or a group-by".to_owned());
    }
    let mut filters = filters_of(&attrs.predicate)?;
    let stages = filters_of(&attrs.stages)?;
    let op = match &source.kind {
        NodeKind::Path {
            steps,
            keep_singleton_array,
        } => {
            let steps: Vec<Node> = steps.iter().map(node).collect::<Result<_, _>>()?;
            if steps.first().is_some_and(|first| {
                first.cons_array && !(first.filters.is_empty() && first.stages.is_empty())
            }) {
                // `[a, b][0].c`: JSONata does not pick from the array before the next step
                // (jsonata-js and the engine answer nothing for `[o, s][0].k` where `o.k` is 1),
                // and the rule it follows instead is not modelled.
                return Err("a filtered array constructor starting a path".to_owned());
            }
            let bare = |step: &Node| {
                step.filters.is_empty()
                    && step.stages.is_empty()
                    && !step.keep_array
                    && !step.cons_array
            };
            let fields_only = !*keep_singleton_array
                && steps.iter().all(bare)
                && steps.iter().enumerate().all(|(index, step)| match step.op {
                    Op::Name(..) => true,
                    Op::Variable(_) | Op::Context | Op::Root => index == 0,
                    _ => false,
                });
            Op::Path {
                steps,
                keep_singleton: *keep_singleton_array,
                fields_only,
                symbols: Box::new([]),
                hints: Box::new([]),
            }
        }
        NodeKind::Binary { op, lhs, rhs } => {
            let (lhs, rhs) = (Box::new(node(lhs)?), Box::new(node(rhs)?));
            match op {
                BinaryOp::And => Op::And(lhs, rhs),
                BinaryOp::Or => Op::Or(lhs, rhs),
                BinaryOp::Range => return Err("a range (`..`)".to_owned()),
                other => Op::Binary(binary(*other), lhs, rhs),
            }
        }
        NodeKind::Negate { expr } => Op::Negate(Box::new(node(expr)?)),
        NodeKind::Array { items } => {
            let items = items
                .iter()
                .map(|item| {
                    Ok(Item {
                        nested_constructor: matches!(item.kind, NodeKind::Array { .. }),
                        node: node(item)?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            match constant_array(&items) {
                Some(value) if !attrs.cons_array => Op::Constant(value),
                _ => Op::Array(items),
            }
        }
        NodeKind::Object { pairs } => {
            let pairs = pairs
                .iter()
                .map(|(key, value)| Ok((node(key)?, node(value)?)))
                .collect::<Result<Vec<_>, String>>()?;
            match constant_object(&pairs) {
                Some(value) => Op::Constant(value),
                None => {
                    let mut keys: Vec<&str> = Vec::new();
                    let literal_keys = pairs.iter().all(|(key, _)| match constant(key) {
                        Some(Value::String(key)) if !keys.contains(&key.as_str()) => {
                            keys.push(key);
                            true
                        }
                        _ => false,
                    });
                    let keys_text = match literal_keys {
                        true => keys
                            .iter()
                            .map(|key| {
                                let mut text = vec![b','];
                                text.extend(serde_json::to_vec(key).unwrap_or_default());
                                text.push(b':');
                                text.into_boxed_slice()
                            })
                            .collect(),
                        false => Box::default(),
                    };
                    Op::Object {
                        pairs,
                        literal_keys,
                        keys_text,
                    }
                }
            }
        }
        NodeKind::Name { name } => Op::Name(name.as_str().into(), crate::doc::symbol(name)),
        NodeKind::Variable { name } => match name.as_str() {
            "" => Op::Context,
            "$" => Op::Root,
            other => Op::Variable(Var::new(other)),
        },
        NodeKind::String { value } => Op::Constant(Value::String(value.clone())),
        NodeKind::Number { value } => Op::Constant(super::eval::json_number(*value)),
        NodeKind::Bool { value } => Op::Constant(Value::Bool(*value)),
        NodeKind::Null => Op::Constant(Value::Null),
        NodeKind::Condition {
            condition,
            then,
            otherwise,
        } => Op::Condition(
            Box::new(node(condition)?),
            Box::new(node(then)?),
            otherwise.as_deref().map(node).transpose()?.map(Box::new),
        ),
        NodeKind::Fallback { op, lhs, rhs } => {
            let (lhs, rhs) = (Box::new(node(lhs)?), Box::new(node(rhs)?));
            match op {
                FallbackOp::Coalesce => Op::Coalesce(lhs, rhs),
                FallbackOp::Default => Op::Default(lhs, rhs),
            }
        }
        NodeKind::Block { exprs, frame } => Op::Block {
            exprs: exprs.iter().map(node).collect::<Result<_, _>>()?,
            own_frame: *frame,
            frame: 0..0,
        },
        NodeKind::Bind { lhs, rhs } => match &lhs.kind {
            NodeKind::Variable { name } if !name.is_empty() && name != "$" => {
                Op::Bind(Var::new(name), Box::new(node(rhs)?))
            }
            _ => return Err("a binding to something other than a variable".to_owned()),
        },
        NodeKind::Function { procedure, args } => {
            let NodeKind::Variable { name } = &procedure.kind else {
                return Err("a call of a computed function".to_owned());
            };
            if !plain(procedure) {
                return Err("a call of a filtered function value".to_owned());
            }
            let builtin = Builtin::named(name);
            match builtin {
                Some(builtin) if !builtin.accepts(args.len()) => {
                    return Err(format!(
                        "`${name}` with {} arguments (the context default is not in the subset)",
                        args.len()
                    ));
                }
                _ => {}
            }
            Op::Call {
                name: Var::new(name),
                builtin,
                args: args.iter().map(node).collect::<Result<_, _>>()?,
            }
        }
        NodeKind::Lambda(def) => {
            if def.thunk {
                // A tail call wrapped for the JSONata engine's trampoline: the fast path calls it directly.
                let mut body = node(&def.body)?;
                body.filters.append(&mut filters);
                body.stages.extend(stages);
                body.keep_array |= attrs.keep_array;
                return Ok(body);
            }
            if def.signature.is_some() {
                return Err("a function signature".to_owned());
            }
            if def
                .params
                .iter()
                .enumerate()
                .any(|(at, param)| def.params[..at].contains(param))
            {
                // Each parameter has a slot of its own (see `Resolver::open`).
                return Err("a function with a repeated parameter name".to_owned());
            }
            Op::Lambda(Box::new(Lambda {
                id: u32::MAX, // numbered, and its frame given slots, once the expression is known
                params: def.params.iter().map(|p| p.as_str().into()).collect(),
                frame: 0..0,
                body: node(&def.body)?,
            }))
        }
        NodeKind::Apply { .. } => return Err("the chain operator `~>`".to_owned()),
        NodeKind::Partial { .. } | NodeKind::Placeholder => {
            return Err("a partial application".to_owned());
        }
        NodeKind::Regex { .. } => return Err("a regular expression".to_owned()),
        NodeKind::Wildcard | NodeKind::Descendant => return Err("a wildcard".to_owned()),
        NodeKind::Parent { .. } => return Err("the parent operator `%`".to_owned()),
        NodeKind::Transform(_) => return Err("a transform".to_owned()),
        NodeKind::Sort { .. } => return Err("an order-by".to_owned()),
        NodeKind::Error { .. } => return Err("a syntax error".to_owned()),
    };
    // Values of these are never a sequence, or are finished where they are made.
    let finished = filters.is_empty()
        && !attrs.keep_array
        && matches!(
            op,
            Op::Root
                | Op::Path { .. }
                | Op::Call { .. }
                | Op::Variable(_)
                | Op::Constant(_)
                | Op::Array(_)
                | Op::Object { .. }
                | Op::Binary(..)
                | Op::TypeIs { .. }
                | Op::And(..)
                | Op::Or(..)
                | Op::Negate(_)
                | Op::Condition(..)
                | Op::Coalesce(..)
                | Op::Default(..)
                | Op::Block { .. }
                | Op::Bind(..)
                | Op::Lambda(_)
        );
    Ok(Node {
        op,
        filters,
        stages,
        keep_array: attrs.keep_array,
        cons_array: attrs.cons_array,
        finished,
        run: super::eval::run_general,
        test: super::eval::test_value,
        write: super::eval::Writer::Value,
        text: Box::default(),
    })
}

fn binary(op: BinaryOp) -> Binary {
    match op {
        BinaryOp::Add => Binary::Add,
        BinaryOp::Sub => Binary::Sub,
        BinaryOp::Mul => Binary::Mul,
        BinaryOp::Div => Binary::Div,
        BinaryOp::Mod => Binary::Mod,
        BinaryOp::Eq => Binary::Eq,
        BinaryOp::Ne => Binary::Ne,
        BinaryOp::Lt => Binary::Lt,
        BinaryOp::Le => Binary::Le,
        BinaryOp::Gt => Binary::Gt,
        BinaryOp::Ge => Binary::Ge,
        BinaryOp::Concat => Binary::Concat,
        BinaryOp::In => Binary::In,
        BinaryOp::And | BinaryOp::Or | BinaryOp::Range => unreachable!("handled by the caller"),
    }
}

/// The value of a node that is a bare constant.
fn constant(node: &Node) -> Option<&Value> {
    match &node.op {
        Op::Constant(value)
            if node.filters.is_empty()
                && node.stages.is_empty()
                && !node.keep_array
                && !node.cons_array =>
        {
            Some(value)
        }
        _ => None,
    }
}

/// `[…]` of constants: scalars are appended, nested constructors kept whole; an item that is
/// a folded array of another kind would be flattened in, so that case is left to run time.
fn constant_array(items: &[Item]) -> Option<Value> {
    let mut values = Vec::with_capacity(items.len());
    for item in items {
        let value = constant(&item.node)?;
        if value.is_array() && !item.nested_constructor {
            return None;
        }
        values.push(value.clone());
    }
    Some(Value::Array(values))
}

/// `{…}` with literal keys (each once) and constant values.
fn constant_object(pairs: &[(Node, Node)]) -> Option<Value> {
    let mut object = Map::new();
    for (key, value) in pairs {
        let Value::String(key) = constant(key)? else {
            return None;
        };
        if object
            .insert(key.clone(), constant(value)?.clone())
            .is_some()
        {
            return None;
        }
    }
    Some(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::{Op, compile};

    /// Whether the plan of `source` has a `??` anywhere, and a condition anywhere.
    fn coalesce_and_condition(source: &str) -> (bool, bool) {
        let inner = jlens_core::Expression::compile(source).expect(source);
        let mut plan = compile(inner.ast()).expect(source);
        let (mut coalesce, mut condition) = (false, false);
        super::each_node(&mut plan.root, &mut |node| match node.op {
            Op::Coalesce(..) => coalesce = true,
            Op::Condition(..) => condition = true,
            _ => {}
        });
        (coalesce, condition)
    }

    #[test]
    fn reads_exists_then_the_same_value_as_a_coalesce() {
        for source in [
            "$exists(a) ? a : b",
            "$exists(a.b[0]) ? a.b[0] : 1",
            r#"($m := {"x": 1}; $exists($lookup($m, s)) ? $lookup($m, s) : s)"#,
            r#"{"n": $exists($string(n)) ? $string(n) : "none"}"#,
        ] {
            assert_eq!(coalesce_and_condition(source), (true, false), "{source}");
        }
        for source in [
            // Not the same value, or no other branch, or not the built-in `$exists`, or the
            // call filtered, or two functions (each made anew).
            "$exists(a) ? b : c",
            "$exists(a) ? a.b : c",
            "$exists(a) ? a",
            "($exists := function($v) { true }; $exists(a) ? a : b)",
            "$exists(a)[0] ? a : b",
            "$exists(function($v) { $v }) ? function($v) { $v } : b",
        ] {
            assert_eq!(coalesce_and_condition(source), (false, true), "{source}");
        }
    }
}
