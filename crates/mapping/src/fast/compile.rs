//! Compiling the engine's processed tree into a fast-path [`Plan`], or saying which construct
//! keeps the expression on the engine.

use jlens_core::ast::{Ast, BinaryOp, FallbackOp, NodeKind, Stage};
use serde_json::{Map, Value};

use super::builtins::Builtin;
use super::{Binary, Filter, Ident, Item, Lambda, Node, Op, Plan};
use crate::expression::plain;

/// The plan for `ast`, or the first construct outside the subset.
pub(crate) fn compile(ast: &Ast) -> Result<Plan, String> {
    let mut root = node(&ast.root)?;
    let mut bound = Vec::new();
    visit(&mut root, &mut |node| match &node.op {
        Op::Bind(name, _) => bound.push(name.text.clone()),
        Op::Lambda(lambda) => bound.extend(lambda.params.iter().map(|p| p.text.clone())),
        _ => {}
    });
    let mut unknown = None;
    visit(&mut root, &mut |node| {
        if let Op::Call {
            name,
            builtin: None,
            ..
        } = &node.op
            && !bound.contains(&name.text)
            && unknown.is_none()
        {
            unknown = Some(name.text.clone());
        }
    });
    // The caller's scope holds values, never functions, so a call of a name the expression does
    // not bind is a host function (`$firstNonEmpty`, …): the engine's.
    if let Some(name) = unknown {
        return Err(format!("the function `${name}`"));
    }
    let mut names: Vec<Box<str>> = Vec::new();
    let mut number = |ident: &mut Ident| {
        ident.id = match names.iter().position(|n| *n == ident.text) {
            Some(at) => at,
            None => {
                names.push(ident.text.clone());
                names.len() - 1
            }
        } as u32;
    };
    visit(&mut root, &mut |node| match &mut node.op {
        Op::Call { name, bindable, .. } => {
            *bindable = bound.contains(&name.text);
            number(name);
        }
        Op::Variable(name) | Op::Bind(name, _) => number(name),
        Op::Lambda(lambda) => lambda.params.iter_mut().for_each(&mut number),
        _ => {}
    });
    Ok(Plan { root })
}

/// Calls `f` on every node of the plan.
fn visit(node: &mut Node, f: &mut impl FnMut(&mut Node)) {
    f(node);
    for filter in node.filters.iter_mut().chain(&mut node.stages) {
        if let Filter::Expr(expr) = filter {
            visit(expr, f);
        }
    }
    match &mut node.op {
        Op::Context | Op::Root | Op::Variable(_) | Op::Constant(_) | Op::Name(_) => {}
        Op::Path { steps: nodes, .. } | Op::Block { exprs: nodes, .. } => {
            nodes.iter_mut().for_each(|n| visit(n, f));
        }
        Op::Call { args, .. } => args.iter_mut().for_each(|n| visit(n, f)),
        Op::Array(items) => items.iter_mut().for_each(|item| visit(&mut item.node, f)),
        Op::Object(pairs) => pairs.iter_mut().for_each(|(k, v)| {
            visit(k, f);
            visit(v, f);
        }),
        Op::Binary(_, a, b)
        | Op::And(a, b)
        | Op::Or(a, b)
        | Op::Coalesce(a, b)
        | Op::Default(a, b) => {
            visit(a, f);
            visit(b, f);
        }
        Op::Negate(a) | Op::Bind(_, a) => visit(a, f),
        Op::Condition(a, b, c) => {
            visit(a, f);
            visit(b, f);
            if let Some(c) = c {
                visit(c, f);
            }
        }
        Op::Lambda(lambda) => visit(&mut lambda.body, f),
    }
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
            let bare = |step: &Node| {
                step.filters.is_empty()
                    && step.stages.is_empty()
                    && !step.keep_array
                    && !step.cons_array
            };
            let fields_only = !*keep_singleton_array
                && steps.iter().all(bare)
                && steps.iter().enumerate().all(|(index, step)| match step.op {
                    Op::Name(_) => true,
                    Op::Variable(_) | Op::Context | Op::Root => index == 0,
                    _ => false,
                });
            Op::Path {
                steps,
                keep_singleton: *keep_singleton_array,
                fields_only,
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
                None => Op::Object(pairs),
            }
        }
        NodeKind::Name { name } => Op::Name(name.as_str().into()),
        NodeKind::Variable { name } => match name.as_str() {
            "" => Op::Context,
            "$" => Op::Root,
            other => Op::Variable(Ident::new(other)),
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
            frame: *frame,
        },
        NodeKind::Bind { lhs, rhs } => match &lhs.kind {
            NodeKind::Variable { name } if !name.is_empty() && name != "$" => {
                Op::Bind(Ident::new(name), Box::new(node(rhs)?))
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
                name: Ident::new(name),
                builtin,
                bindable: true, // narrowed once the whole expression is known
                args: args.iter().map(node).collect::<Result<_, _>>()?,
            }
        }
        NodeKind::Lambda(def) => {
            if def.thunk {
                // A tail call wrapped for the engine's trampoline: the fast path calls it directly.
                let mut body = node(&def.body)?;
                body.filters.append(&mut filters);
                body.stages.extend(stages);
                body.keep_array |= attrs.keep_array;
                return Ok(body);
            }
            if def.signature.is_some() {
                return Err("a function signature".to_owned());
            }
            Op::Lambda(Box::new(Lambda {
                params: def.params.iter().map(|p| Ident::new(p)).collect(),
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
    Ok(Node {
        op,
        filters,
        stages,
        keep_array: attrs.keep_array,
        cons_array: attrs.cons_array,
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
