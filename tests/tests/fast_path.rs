//! Differential tests of the mapping fast path against the JSONata engine (`jlens-core`): whenever the
//! fast path answers, its answer must be the JSONata engine's, byte for byte once serialized (key order
//! and number forms included), also when the plan writes its answer as JSON text itself, and it
//! must never answer where the JSONata engine fails. Inputs: every expression of every mapping file over
//! every fixture body and record, the query mappings over representative unified queries,
//! generated records (proptest), and the official JSONata test suite's cases that fall in the
//! subset.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use unigate_mapping::doc::parse_doc;
use unigate_mapping::reads::parse_pruned;
use unigate_mapping::{Expression, FastOutcome, Scope, extract_records, extract_records_of};
use unigate_tests::{repo_catalog, repo_root};

/// The reference integrations: their response mappings are entirely in the subset, and the fast
/// path answers every fixture record of theirs without handing one to the JSONata engine.
const REFERENCE: [&str; 5] = ["okta", "microsoft-365", "scim", "slack", "google-workspace"];

#[derive(Default)]
struct Tally {
    answered: usize,
    bailed: usize,
    /// Hand-overs by what was compared (an integration id), to say where the fast path gives up.
    bailed_by: std::collections::BTreeMap<String, usize>,
    /// Inputs also compared parsed with only what the expression reads.
    pruned: usize,
    mismatches: Vec<String>,
}

impl Tally {
    /// Runs both paths on one input; `true` when the fast path answered.
    fn compare(
        &mut self,
        what: &str,
        expression: &Expression,
        input: &Value,
        scope: &Scope,
    ) -> bool {
        let engine = expression.evaluate_on_jsonata_engine(input, scope);
        self.compare_pruned(what, expression, input, scope, &engine);
        match expression.evaluate_fast(input, scope) {
            FastOutcome::NotCompiled(_) => false,
            FastOutcome::Bailed => {
                self.bailed += 1;
                *self.bailed_by.entry(what.to_owned()).or_default() += 1;
                false
            }
            FastOutcome::Done(fast) => {
                self.answered += 1;
                let same = match &engine {
                    Ok(engine) => text(engine) == text(&fast),
                    Err(_) => false,
                };
                // The answer written as text straight from the plan (the gateway's way) is the
                // same text, and written only when defined.
                let mut written = Vec::new();
                let defined = expression.evaluate_json_fast(input, scope, &mut written);
                let written = match defined {
                    Some(true) => String::from_utf8_lossy(&written).into_owned(),
                    Some(false) if written.is_empty() => "undefined".to_owned(),
                    other => format!("{other:?} with {written:?}"),
                };
                if (!same || written != text(&fast)) && self.mismatches.len() < 20 {
                    self.mismatches.push(format!(
                        "{what}\n  expression: {}\n  input: {}\n  fast:   {}\n  written: {written}\n  engine: {:?}",
                        one_line(expression.source()),
                        cut(&input.to_string()),
                        text(&fast),
                        engine.map(|value| text(&value)),
                    ));
                }
                true
            }
        }
    }

    /// The input parsed with only the fields the plan reads gives the same answer as the whole
    /// input: on the JSONata engine (the analysis is sound for the expression, whichever path
    /// evaluates it), on the fast path over the pruned tree, and on the fast path over the
    /// record parsed as a `Doc` (what the gateway runs), written as text too.
    fn compare_pruned(
        &mut self,
        what: &str,
        expression: &Expression,
        input: &Value,
        scope: &Scope,
        engine: &Result<Option<Value>, unigate_mapping::EvalError>,
    ) {
        let Some(reads) = expression.reads() else {
            return;
        };
        if reads.reads_everything() {
            return;
        }
        let pruned = parse_pruned(&input.to_string(), &reads).expect("a JSON value parses");
        self.pruned += 1;
        let on_engine = expression.evaluate_on_jsonata_engine(&pruned, scope);
        let same_on_engine = match (engine, &on_engine) {
            (Ok(full), Ok(pruned)) => text(full) == text(pruned),
            (Err(_), Err(_)) => true,
            _ => false,
        };
        let same_on_fast = match (engine, expression.evaluate_fast(&pruned, scope)) {
            (Ok(full), FastOutcome::Done(fast)) => text(full) == text(&fast),
            (_, FastOutcome::Bailed | FastOutcome::NotCompiled(_)) => true,
            (Err(_), FastOutcome::Done(_)) => false,
        };
        // The gateway's way: the record parsed as its own representation, on the fast path,
        // answered as a value and as text.
        let whole = input.to_string();
        let doc = parse_doc(&whole, &reads).expect("a JSON value parses");
        let on_doc = expression.evaluate_doc_fast(&doc, scope);
        let mut written = Vec::new();
        let defined = expression.evaluate_doc_json_fast(&doc, scope, &mut written);
        let same_on_doc = match (engine, &on_doc) {
            (Ok(full), FastOutcome::Done(fast)) => {
                text(full) == text(fast)
                    && match defined {
                        Some(true) => String::from_utf8_lossy(&written) == text(full),
                        Some(false) => full.is_none() && written.is_empty(),
                        None => false,
                    }
            }
            (_, FastOutcome::Bailed | FastOutcome::NotCompiled(_)) => defined.is_none(),
            (Err(_), FastOutcome::Done(_)) => false,
        };
        if (!same_on_engine || !same_on_fast || !same_on_doc) && self.mismatches.len() < 20 {
            self.mismatches.push(format!(
                "{what} (pruned input)\n  expression: {}\n  reads: {:?}\n  input: {}\n  pruned: {}\n  engine (whole): {:?}\n  engine (pruned): {:?}\n  fast (doc): {on_doc:?}, written {defined:?}: {}",
                one_line(expression.source()),
                reads.paths(),
                cut(&input.to_string()),
                cut(&pruned.to_string()),
                engine.as_ref().map(text),
                on_engine.map(|value| text(&value)),
                String::from_utf8_lossy(&written),
            ));
        }
    }

    fn assert_no_mismatch(&self) {
        assert!(
            self.mismatches.is_empty(),
            "the fast path disagrees with the JSONata engine:\n{}",
            self.mismatches.join("\n")
        );
    }

    /// More inputs were answered by the fast path than handed to the engine: a test of the
    /// fast path that mostly tests its hand-over would pass with the fast path broken.
    fn assert_mostly_answered(&self) {
        assert!(
            self.answered > self.bailed,
            "{} answered, {} bailed; handed over most: {}",
            self.answered,
            self.bailed,
            self.most_handed_over()
        );
    }

    /// What the fast path handed over most, with the counts.
    fn most_handed_over(&self) -> String {
        let mut most: Vec<(&String, &usize)> = self.bailed_by.iter().collect();
        most.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        most.iter()
            .take(60)
            .map(|(what, count)| format!("{what} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn text(value: &Option<Value>) -> String {
    match value {
        None => "undefined".to_owned(),
        Some(value) => serde_json::to_string(value).unwrap(),
    }
}

fn one_line(source: &str) -> String {
    cut(&source.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn cut(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Every JSON file under a fixture folder.
fn fixture_bodies(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let Ok(cases) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut cases: Vec<_> = cases.flatten().map(|entry| entry.path()).collect();
    cases.sort();
    for case in cases {
        let Ok(files) = std::fs::read_dir(&case) else {
            continue;
        };
        let mut files: Vec<_> = files.flatten().map(|entry| entry.path()).collect();
        files.sort();
        for file in files {
            if file.extension().is_some_and(|ext| ext == "json") {
                let body: Value =
                    serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
                out.push((file.display().to_string(), body));
            }
        }
    }
    out
}

/// Unified queries as the JSONata engine hands them to `query_mapping`.
fn unified_queries() -> Vec<Value> {
    vec![
        json!({"limit": 100}),
        json!({"limit": 2, "email": "ada@example.com"}),
        json!({"limit": 2, "email": {"eq": "ada@example.com"}}),
        json!({"limit": 2, "status": "active"}),
        json!({"limit": 2, "status": "created"}),
        json!({"limit": 2, "status": {"in": ["active", "invited"]}}),
        json!({"limit": 2, "status": {"ne": "deleted"}}),
        json!({"limit": 2, "updated_at": "2024-01-01T00:00:00Z"}),
        json!({"limit": 2, "updated_at": {"gt": "2024-01-01", "lte": "2024-02-01T10:00:00.000Z"}}),
        json!({"limit": 2, "created_at": {"gte": "2024-01-01T00:00:00Z"}}),
        json!({"limit": 2, "name": "Ada Lovelace", "first_name": "Ada", "last_name": "Lovelace"}),
        json!({"limit": 2, "id": "00u1", "external_id": "E-1", "username": "ada"}),
        json!({"limit": 2, "sort_by": "created_at", "sort_order": "desc"}),
        json!({"limit": 2, "user_type": "admin", "is_admin": true}),
    ]
}

#[test]
fn fast_path_equals_engine_on_every_mapping_and_fixture() {
    let catalog = repo_catalog();
    let root = repo_root();
    let mut tally = Tally::default();
    let mut coverage = Vec::new();
    for (id, integration) in &catalog.integrations {
        let context = json!({"subdomain": "acme", "api_token": "token", "domain": "example.com"});
        let bodies = fixture_bodies(&root.join("tests/fixtures").join(id));
        for (key, unified) in &integration.unified {
            let what = format!("{id} {}/{}.{}", key.model, key.resource, key.method);
            let list = &integration.resources[&unified.resource];
            let mut bailed_here = 0;
            let mut answered_here = 0;
            for query in unified_queries() {
                let scope = Scope::new([("context", context.clone()), ("query", query.clone())]);
                if let Some(mapping) = &unified.query_mapping {
                    tally.compare(
                        &format!("{what} query_mapping"),
                        &mapping.expression,
                        &query,
                        &scope,
                    );
                }
            }
            // As the gateway maps a list's records: its follow-ups' names may be unbound (a
            // record whose follow-up gave nothing), then undefined on both paths, as are the
            // names nothing binds.
            let scope = Scope::new([
                ("context", context.clone()),
                ("query", json!({"limit": 100})),
            ])
            .with_possibly_unbound(
                integration
                    .unified
                    .get(&unigate_mapping::MethodKey::new(
                        &key.model,
                        &key.resource,
                        unigate_mapping::Method::List,
                    ))
                    .into_iter()
                    .flat_map(|list| list.possibly_unbound()),
            );
            for (file, body) in &bodies {
                tally.compare(
                    &format!("{what} records {file}"),
                    &list.records,
                    body,
                    &scope,
                );
                let mut records = extract_records(list, body.clone(), &scope).unwrap_or_default();
                // Any object in a fixture is a record-like input too (unified outputs, errors).
                if let Value::Array(items) = body {
                    records.extend(items.iter().filter(|item| item.is_object()).cloned());
                } else {
                    records.push(body.clone());
                }
                // Each pass's own records, and every record as each named pass's (`$pass`).
                for (index, pass) in list.passes.iter().enumerate() {
                    if let Some((expression, _)) = &pass.records {
                        tally.compare(
                            &format!("{what} passes[{index}].records {file}"),
                            expression,
                            body,
                            &scope,
                        );
                        records.extend(
                            extract_records_of(list, Some(index), body.clone(), &scope)
                                .unwrap_or_default(),
                        );
                    }
                }
                let scopes: Vec<Scope> = std::iter::once(scope.clone())
                    .chain(list.passes.iter().filter_map(|pass| {
                        let name = pass.name.as_ref()?;
                        Some(scope.with("pass", Value::String(name.clone())))
                    }))
                    .collect();
                for record in &records {
                    for scope in &scopes {
                        let bailed_before = tally.bailed;
                        if tally.compare(
                            &format!("{what} response_mapping {file}"),
                            &unified.response_mapping,
                            record,
                            scope,
                        ) {
                            answered_here += 1;
                        }
                        bailed_here += tally.bailed - bailed_before;
                    }
                }
            }
            coverage.push((
                id.clone(),
                unified.response_mapping.fast_path_gap().map(str::to_owned),
                answered_here,
                bailed_here,
            ));
        }
        for expression in [
            integration.errors.as_ref().and_then(|e| e.when.as_ref()),
            integration.errors.as_ref().and_then(|e| e.message.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            let scope = Scope::new([("context", context.clone())]);
            for (file, body) in &bodies {
                tally.compare(&format!("{id} errors {file}"), expression, body, &scope);
            }
        }
    }
    tally.assert_no_mismatch();
    let compiled = coverage.iter().filter(|(_, gap, ..)| gap.is_none()).count();
    eprintln!(
        "fast path: {compiled}/{} response mappings compiled; {} evaluations answered, {} handed to the JSONata engine; {} inputs also compared pruned",
        coverage.len(),
        tally.answered,
        tally.bailed,
        tally.pruned
    );
    assert!(
        tally.pruned > 1000,
        "only {} pruned comparisons",
        tally.pruned
    );
    for (id, gap, answered, bailed) in &coverage {
        match gap {
            None => eprintln!("  {id}: fast ({answered} answered, {bailed} handed over)"),
            Some(gap) => eprintln!("  {id}: engine ({gap})"),
        }
    }
    for reference in REFERENCE {
        let (_, gap, answered, bailed) = coverage
            .iter()
            .find(|(id, ..)| id == reference)
            .unwrap_or_else(|| panic!("no mapping `{reference}`"));
        assert_eq!(gap, &None, "`{reference}` must be on the fast path");
        assert!(
            *answered > 5,
            "`{reference}`: only {answered} records answered"
        );
        assert_eq!(
            *bailed, 0,
            "`{reference}` handed fixture records to the JSONata engine"
        );
    }
    assert!(
        compiled * 10 >= coverage.len() * 8,
        "only {compiled} of {} response mappings are on the fast path",
        coverage.len()
    );
}

// ------------------------------------------------------------------------------------------------
// Generated records.

/// Field names the reference mappings read, so generated records exercise their branches.
const FIELDS: &[&str] = &[
    "id",
    "status",
    "profile",
    "firstName",
    "lastName",
    "displayName",
    "email",
    "secondEmail",
    "login",
    "title",
    "mobilePhone",
    "primaryPhone",
    "userType",
    "organization",
    "timezone",
    "preferredLanguage",
    "profileUrl",
    "employeeNumber",
    "created",
    "lastUpdated",
    "lastLogin",
    "statusChanged",
    "activated",
    "userName",
    "name",
    "givenName",
    "familyName",
    "formatted",
    "emails",
    "value",
    "type",
    "primary",
    "phoneNumbers",
    "active",
    "meta",
    "externalId",
    "mail",
    "userPrincipalName",
    "givenName",
    "surname",
    "accountEnabled",
    "businessPhones",
    "mobilePhone",
    "jobTitle",
    "createdDateTime",
    "deleted",
    "is_admin",
    "is_owner",
    "is_bot",
    "real_name",
    "tz",
    "updated",
    "primaryEmail",
    "suspended",
    "isAdmin",
    "creationTime",
    "lastLoginTime",
    "phones",
    "organizations",
    "thumbnailPhotoUrl",
    "roles",
    "groups",
];

const STRINGS: &[&str] = &[
    "",
    "ACTIVE",
    "STAGED",
    "SUSPENDED",
    "DEPROVISIONED",
    "PROVISIONED",
    "RECOVERY",
    "LOCKED_OUT",
    "ACTIVATING",
    "active",
    "Admin",
    "end_user",
    "Employee",
    "work",
    "home",
    "mobile",
    "other",
    "ada@example.com",
    "Ada",
    "Lovelace",
    "Ada Lovelace",
    "2024-01-02T03:04:05.000Z",
    "2024-01-02T03:04:05Z",
    "2024-13-40",
    "Europe/Berlin",
    "en-US",
    "https://example.com/ada",
    "42",
    "-1.5",
    "true",
    "ÄÖÜ ß",
    "a\"b",
    "  spaced  out  ",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..100_000).prop_map(Value::from),
        prop::sample::select(&[0.5f64, -2.25, 1e21, 3.0][..]).prop_map(|n| json!(n)),
        prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn record_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..6).prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn record() -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(FIELDS), record_value()), 0..14).prop_map(|pairs| {
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<_, _>>(),
        )
    })
}

#[test]
fn fast_path_equals_engine_on_generated_records() {
    let catalog = repo_catalog();
    let scope = Scope::new([
        ("context", json!({"subdomain": "acme"})),
        ("query", json!({"limit": 10})),
    ]);
    // As the gateway maps a list's records: its follow-ups' names may be unbound (an account
    // that sets none of their flags), and so may those nothing binds.
    let scopes: Vec<(&String, &Expression, Scope)> = catalog
        .integrations
        .iter()
        .flat_map(|(id, integration)| {
            let scope = &scope;
            integration.unified.values().map(move |unified| {
                (
                    id,
                    &unified.response_mapping,
                    scope.with_possibly_unbound(unified.possibly_unbound()),
                )
            })
        })
        .collect();
    let tally = run_generated("generated records", 512, record(), |tally, record| {
        for (id, mapping, scope) in &scopes {
            tally.compare(id, mapping, record, scope);
        }
    });
    // The generator makes records the mappings map, not only ones the fast path gives up on.
    tally.assert_mostly_answered();
}

/// Runs `each` on `cases` generated inputs; fails on the first input after which the tally holds
/// a mismatch (proptest then shrinks it), and prints `what` with the counts.
fn run_generated<T: std::fmt::Debug>(
    what: &str,
    cases: u32,
    strategy: impl Strategy<Value = T>,
    each: impl Fn(&mut Tally, &T),
) -> Tally {
    let tally = std::cell::RefCell::new(Tally::default());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let outcome = runner.run(&strategy, |input| {
        let mut tally = tally.borrow_mut();
        each(&mut tally, &input);
        prop_assert!(
            tally.mismatches.is_empty(),
            "{}",
            tally.mismatches.join("\n")
        );
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    let tally = tally.into_inner();
    eprintln!(
        "{what}: {} answered by the fast path, {} handed to the JSONata engine (most: {})",
        tally.answered,
        tally.bailed,
        tally.most_handed_over()
    );
    tally
}

// ------------------------------------------------------------------------------------------------
// Generated expressions: blocks, bindings and functions over a few names, so that shadowing,
// rebinding, reading before binding, recursion and functions leaving their frame all occur.

const VARIABLES: &[&str] = &["$x", "$y", "$z"];
const FUNCTIONS: &[&str] = &["$f", "$g"];

fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(&["1", "\"s\"", "a", "b.c", "d", "d[1]", "$", "missing"][..])
            .prop_map(str::to_owned),
        prop::sample::select(VARIABLES).prop_map(str::to_owned),
    ];
    leaf.prop_recursive(4, 40, 4, |inner| {
        let bind = prop_oneof![
            (prop::sample::select(VARIABLES), inner.clone())
                .prop_map(|(name, value)| format!("{name} := {value}")),
            (
                prop::sample::select(FUNCTIONS),
                prop::sample::select(VARIABLES),
                inner.clone()
            )
                .prop_map(|(name, param, body)| format!(
                    "{name} := function({param}) {{ {body} }}"
                )),
        ];
        prop_oneof![
            (prop::collection::vec(bind, 1..3), inner.clone())
                .prop_map(|(binds, last)| format!("({}; {last})", binds.join("; "))),
            (prop::sample::select(FUNCTIONS), inner.clone())
                .prop_map(|(name, arg)| format!("{name}({arg})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} & {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("({a} ? {b} : {c})")),
            inner.clone().prop_map(|a| format!("{{\"k\": {a}}}")),
            inner.clone().prop_map(|a| format!("d.({a})")),
            inner.prop_map(|a| format!("($type({a}) = \"string\")")),
        ]
    })
}

/// A name the caller declares possibly unbound (a follow-up's answer a record lacks) is
/// undefined on the fast path as on the engine, in every position a mapping reads it; bound, it
/// is its value; any other unbound name still goes to the engine (it may name a library
/// function).
#[test]
fn fast_path_equals_engine_on_a_name_declared_possibly_unbound() {
    let record = json!({"id": "u1", "groups": ["g1"]});
    let unbound = Scope::new([("context", json!({}))]).with_possibly_unbound(["groups", "detail"]);
    let bound = Scope::new([("context", json!({}))])
        .with_possibly_unbound(["groups", "detail"])
        .with(
            "groups",
            json!([{"id": "g1", "name": "Admins"}, {"id": "g2", "name": ""}]),
        );
    let bodies = [
        "$groups",
        "$groups.name",
        r#"$groups.{ "id": id, "name": name }[]"#,
        "$count($groups)",
        "$exists($groups)",
        r#"$groups ? "some" : "none""#,
        r#"$count($groups) > 0 ? [$groups.{ "id": id }]"#,
        r#"{ "id": id, "groups": $groups[name != ""].name, "detail": $detail.title }"#,
        r#"($g := $groups; $g[0].id)"#,
        "$groups[id = $$.groups[0]].name",
        r#"$string($detail)"#,
    ];
    let mut tally = Tally::default();
    for scope in [&unbound, &bound] {
        for body in bodies {
            let expression = Expression::compile(body).expect(body);
            tally.compare("possibly unbound", &expression, &record, scope);
        }
    }
    tally.assert_no_mismatch();
    assert_eq!(tally.bailed, 0, "a declared name never needs the engine");
    let expression = Expression::compile("$teams").unwrap();
    assert!(matches!(
        expression.evaluate_fast(&record, &unbound),
        FastOutcome::Bailed
    ));
}

/// The `$str` helper (in nearly every mapping, and run by a runner of its own on the fast path)
/// over every kind of value, written as the mappings write it and in near variants that must
/// not take that runner, with `$type` shadowed too (by the plan and by a caller's variable);
/// its answer used as a value, as a condition (which has a tester of its own) and written in
/// an object and an array (an object's value has a writer of its own).
#[test]
fn fast_path_equals_engine_on_the_text_guard_and_its_near_variants() {
    let record = json!({
        "s": "text", "e": "", "n": 0, "t": true, "z": null, "o": {"k": "v"}, "a1": ["one"],
        "a2": ["x", "y"], "ae": [""], "ao": [{"k": "deep"}], "aa": [["in"]], "es": "café",
        "objs": [{"k": "first"}, {"k": ""}, {"q": 1}]
    });
    // A caller's variable named `type` means `$type` is not the built-in the guard checks.
    let scopes = [
        Scope::new([("context", json!({"subdomain": "acme"}))]),
        Scope::new([("type", json!("caller's"))]),
    ];
    let args = [
        "s",
        "e",
        "n",
        "t",
        "z",
        "o",
        "a1",
        "a2",
        "ae",
        "ao",
        "aa",
        "es",
        "missing",
        "o.k",
        "ao.k",
        "objs.k",
        "objs[0].k",
        "objs.q",
        "$",
        "\"lit\"",
        "\"\"",
        "[s]",
        "[s][0]",
        "1",
    ];
    let guards = [
        r#"function($v) { $type($v) = "string" and $v != "" ? $v }"#,
        r#"function($v) { $type($v) = "string" and $v != "x" ? $v }"#,
        r#"function($v) { $type($v) = "number" and $v != "" ? $v }"#,
        r#"function($v) { $type($v) != "string" and $v != "" ? $v }"#,
        r#"function($v) { $type($v) = "string" or $v != "" ? $v }"#,
        r#"function($v) { $type($v) = "string" and $v != "" ? $v : "none" }"#,
        r#"function($v) { $type($v) = "string" and $v != "" ? [$v] }"#,
    ];
    let (mut plain, mut shadowed) = (Tally::default(), Tally::default());
    for (index, scope) in scopes.iter().enumerate() {
        let tally = match index {
            0 => &mut plain,
            _ => &mut shadowed,
        };
        for guard in guards {
            for arg in args {
                for prelude in ["", r#"$type := function($x) { "string" }; "#] {
                    for body in [
                        format!("$str({arg})"),
                        format!(r#"$str({arg}) ? "yes" : "no""#),
                        format!("$str({arg}) and true"),
                        format!("false or $str({arg})"),
                        format!(r#"{{"k": $str({arg}), "l": [$str({arg})]}}"#),
                    ] {
                        let source = format!("({prelude}$str := {guard}; {body})");
                        let expression = Expression::compile(&source).expect(&source);
                        tally.compare("text guard", &expression, &record, scope);
                    }
                }
            }
        }
    }
    plain.assert_no_mismatch();
    plain.assert_mostly_answered();
    shadowed.assert_no_mismatch();
}

/// What the gateway writes without making it (an object or array constructor, a condition
/// choosing one, and the `$nonEmpty` helper: its argument, taken back when it writes `[]`),
/// over arrays of every origin (constructed, the input's, empty, nested, flattened from a
/// condition's branch), with the helper in near variants that must not take its writer,
/// `$count` rebound, and a caller's variable named `count`; and `$join` of a constructor,
/// which joins its items without making the array.
#[test]
fn fast_path_equals_engine_on_written_constructors_and_the_non_empty_guard() {
    let record = json!({
        "s": "text", "e": "", "n": 0, "t": true, "z": null, "o": {"k": "v"}, "a1": ["one"],
        "a2": ["x", "y"], "ae": [], "ao": [{"k": "deep"}], "aa": [["in"], []],
        "objs": [{"k": "first"}, {"k": ""}, {"q": 1}]
    });
    let scopes = [
        Scope::new([("context", json!({"subdomain": "acme"}))]),
        Scope::new([("count", json!(1))]),
    ];
    let args = [
        "[]",
        "[[]]",
        "[[], []]",
        "[s]",
        "[missing]",
        "[z]",
        "s",
        "o",
        "$",
        "a1",
        "a2",
        "ae",
        "aa",
        "ao",
        "[ao]",
        "[a2, ae]",
        "[ae, [ae]]",
        "objs",
        "objs.k",
        "missing",
        "[o, ao]",
        r#"[s ? {"k": s, "n": n}, e ? {"k": e}]"#,
        r#"[e ? {"k": e}]"#,
        r#"[t ? a2 : s, t ? [a2] : s, t ? [] : s, e ? s : missing]"#,
        r#"[{"k": [missing], "m": missing, "a": [a1, [a2]]}]"#,
        r#"{"k": missing}"#,
        r#"{"k": $nonEmpty(ae), "l": $nonEmpty(a1)}"#,
        r#"$nonEmpty([ae])"#,
        "[n ? 1 : 2, t ? 3]",
        "[objs.{\"k\": k}]",
    ];
    let helpers = [
        r#"function($items) { $count($items) > 0 ? $items }"#,
        r#"function($items) { $count($items) > 1 ? $items }"#,
        r#"function($items) { $count($items) >= 0 ? $items }"#,
        r#"function($items) { $count($items) > 0 ? $items : "none" }"#,
        r#"function($items) { $count($items) > 0 ? [$items] }"#,
        r#"function($items) { $count($items) > 0 ? $items[0] }"#,
    ];
    let mut tally = Tally::default();
    for scope in &scopes {
        for helper in helpers {
            for arg in args {
                for prelude in ["", r#"$count := function($x) { 0 }; "#] {
                    for body in [
                        format!(r#"{{"x": $nonEmpty({arg}), "y": {arg}, "z": [{arg}]}}"#),
                        format!("[$nonEmpty({arg}), {arg}]"),
                        format!(r#"t ? {{"x": $nonEmpty({arg})}} : {arg}"#),
                        format!("$nonEmpty({arg})"),
                        arg.to_owned(),
                        format!(r#"$join([{arg}], "-")"#),
                        format!("$join([s, {arg}], t ? e : n)"),
                    ] {
                        let source = format!("({prelude}$nonEmpty := {helper}; {body})");
                        let expression = Expression::compile(&source).expect(&source);
                        tally.compare("written", &expression, &record, scope);
                    }
                }
            }
        }
    }
    tally.assert_no_mismatch();
    tally.assert_mostly_answered();
}

#[test]
fn fast_path_equals_engine_on_written_picks_joins_and_in() {
    let records = [
        json!({"d": "Dee", "f": "Ann", "l": "Löw"}),
        json!({"f": "Ann", "l": "Löw"}),
        json!({"d": "", "f": "A \"q\" \\ \n", "l": null}),
        json!({"f": "", "l": ""}),
        json!({"f": ["Ann", "Bo"], "l": "Löw"}),
        json!({"f": 7, "l": "Löw"}),
        json!({"f": ["x", ["y"]], "l": {"k": "v"}}),
        json!({}),
    ];
    let scopes = [
        Scope::new([("context", json!({"subdomain": "acme"}))]),
        Scope::new([("join", json!("mine"))]),
    ];
    let picks = [
        r#"[$str(d), $str($join([$str(f), $str(l)], " "))][0]"#,
        r#"[$str(d), $str($join([f, l], " "))][0]"#,
        r#"[$str($join([f, l], ", ")), $str(d)][0]"#,
        r#"[$str($join([f, l]))][0]"#,
        r#"[$str($join([f, l], s))][0]"#,
        r#"[$str($join([f, l], 1))][0]"#,
        r#"[$str($join([$str(f), "x"], ""))][0.5]"#,
        r#"[$str(d), $str(f)][1]"#,
        r#"[$str(d), $str(f), $str($join([l, 1], "-"))][0]"#,
        r#"[$str(d), [$str(f)]][0]"#,
        r#"$str($join([f, l], " "))"#,
        r#"$str($join([f, [l]], "\u0000"))"#,
        r#"{"name": [$str(d), $str($join([$str(f), $str(l)], " "))][0], "f": $str(f)}"#,
        r#"[[$str(d), $str($join([f], " "))][0], $str($join([l], "/"))]"#,
        // `in`, item by item over arrays of every origin.
        r#"[$str(f) in ["Ann", "x"], f in ["Ann"], l in "Löw", f in [["Ann"]], 7 in [7, "7"]]"#,
        r#"[f in [$str(f), l], l in [f, l], "Bo" in f, d in [], missing in [missing]]"#,
    ];
    let preludes = [
        "",
        r#"$join := function($a, $s) { "shadowed" }; "#,
        r#"$type := function($v) { "string" }; "#,
        r#"$join := "not a function"; "#,
    ];
    // The plain cases, mostly answered; then those handed to the engine by design (`$join` or
    // `$type` shadowed, a caller's `join`), which must agree all the same.
    let (mut plain, mut shadowed) = (Tally::default(), Tally::default());
    for record in &records {
        for (index, scope) in scopes.iter().enumerate() {
            for (prelude_index, prelude) in preludes.iter().enumerate() {
                let tally = match index == 0 && prelude_index == 0 {
                    true => &mut plain,
                    false => &mut shadowed,
                };
                for pick in picks {
                    let source = format!(
                        r#"({prelude}$str := function($v) {{ $type($v) = "string" and $v != "" ? $v }}; {pick})"#
                    );
                    let expression = Expression::compile(&source).expect(&source);
                    tally.compare("picked", &expression, record, scope);
                }
            }
        }
    }
    plain.assert_no_mismatch();
    plain.assert_mostly_answered();
    shadowed.assert_no_mismatch();
    // The shadowing `$join` is a function of the plan's: those are answered.
    assert!(shadowed.answered > 0);
}

/// Built-ins called with one and two arguments (held in place, not in a list), each argument
/// plain or one the fast path hands to the JSONata engine (`a in [a]`: an array compared by
/// identity there), and with arguments the built-in refuses.
#[test]
fn fast_path_equals_engine_on_builtin_calls_of_one_and_two_arguments() {
    let record = json!({"s": "text", "o": {"k": "v"}, "n": 3, "a": ["x", "y"], "e": ""});
    let scope = Scope::new([("context", json!({"subdomain": "acme"}))]);
    let plain = [
        r#"$lookup(o, "k")"#,
        "$lookup(o, s)",
        "$lookup(missing, s)",
        "$exists(s)",
        "$exists(missing)",
        "$string(n)",
        "$uppercase(s)",
        "$length(s)",
        r#"$contains(s, "ex")"#,
        r#"$substringBefore(s, "x")"#,
        "$count(a)",
        r#"$join(a, "-")"#,
        "$join(a)",
        r#"{"k": $lookup(o, "k"), "l": [$exists(e), $string(n)]}"#,
    ];
    // Each refused by the JSONata engine (a key or text that is not a string).
    // (`$lookup(o, missing)` and `$string(o)` are not modelled: handed over too.)
    let refused = [
        "$lookup(o, n)",
        "$contains(s, n)",
        "$uppercase(o)",
        "$lookup(o, missing)",
        "$string(o)",
    ];
    let bailing = [
        "$lookup(o, a in [a])",
        r#"$lookup(a in [a], "k")"#,
        "$exists(a in [a])",
        "$string(a in [a])",
        "$contains(s, a in [a])",
        "$join(a, a in [a])",
        "$lookup(o, n) and $exists(a in [a])",
    ];
    let mut tally = Tally::default();
    for source in plain {
        let expression = Expression::compile(source).expect(source);
        assert!(
            tally.compare("built-in", &expression, &record, &scope),
            "not answered: {source}"
        );
    }
    for source in refused.iter().chain(&bailing) {
        let expression = Expression::compile(source).expect(source);
        assert!(
            !tally.compare("built-in", &expression, &record, &scope),
            "answered: {source}"
        );
    }
    tally.assert_no_mismatch();
}

/// `$exists(E) ? E : F`, which the fast path reads as `E ?? F` (one evaluation of `E`), over
/// every kind of value `E` can give: missing, null, false, empty text, an empty array, an array
/// of one, a sequence, an object, a built-in's answer, and a mapping's own table; and the forms
/// it leaves as they are (another value in the branch, `$exists` rebound).
#[test]
fn fast_path_equals_engine_on_exists_then_the_same_value() {
    let record = json!({
        "s": "STAGED", "z": null, "f": false, "e": "", "none": [], "one": ["x"],
        "o": {"k": "v"}, "rows": [{"v": 1}, {"v": 2}, {}]
    });
    let scope = Scope::new([("context", json!({"subdomain": "acme"}))]);
    let mut tally = Tally::default();
    let mut answers = |source: &str, record: &Value| {
        let expression = Expression::compile(source).expect(source);
        assert!(
            tally.compare("exists", &expression, record, &scope),
            "not answered: {source} over {record}"
        );
    };
    for field in [
        "s",
        "z",
        "f",
        "e",
        "none",
        "one",
        "o",
        "rows.v",
        "rows[0].v",
        "missing",
        "o.k",
    ] {
        for source in [
            format!(r#"$exists({field}) ? {field} : "other""#),
            format!(r#"{{"x": $exists({field}) ? {field} : "other", "y": 1}}"#),
            format!("[$exists({field}) ? {field} : 0]"),
            format!(r#"$exists({field}) ? {field}.k : "other""#),
            format!(
                r#"($exists := function($v) {{ false }}; $exists({field}) ? {field} : "other")"#
            ),
        ] {
            answers(&source, &record);
        }
    }
    // `$string` of an array or object is the JSONata engine's (not modelled).
    for field in ["s", "z", "f", "e", "missing", "o.k", "rows[0].v"] {
        answers(
            &format!(r#"$exists($string({field})) ? $string({field}) : "none""#),
            &record,
        );
    }
    let table = r#"(
        $statusMap := {"STAGED": "invited", "ACTIVE": "active"};
        $status := s;
        $status ? ($exists($lookup($statusMap, $status)) ? $lookup($statusMap, $status) : $status)
    )"#;
    for s in ["STAGED", "ACTIVE", "SUSPENDED"] {
        answers(table, &json!({ "s": s }));
    }
    tally.assert_no_mismatch();
}

/// Literals written where they stand (an object's values, written as text made once when the
/// plan is linked): numbers in every form (`1.0`, `1e21`, `-0`, tiny and huge ones), strings
/// that need escapes, arrays and objects of them, alone, chosen by a condition, in an array and
/// in a nested object.
#[test]
fn fast_path_equals_engine_on_written_literals() {
    let record = json!({"s": "text", "n": 0});
    let scope = Scope::new([("context", json!({"subdomain": "acme"}))]);
    let literals = [
        "1.0",
        "1e21",
        "1.5e300",
        "0.000001",
        "1e-7",
        "-0",
        "0.1",
        "123456789012345678901234",
        r#""é \"q\" \\ \n \u0001 \ud83d\ude00""#,
        r#""""#,
        "true",
        "false",
        "null",
        "[1.0, 2.50, [], {}]",
        r#"{"x": 1.0, "y": [null, "z"]}"#,
        "[]",
    ];
    let mut tally = Tally::default();
    for literal in literals {
        for body in [
            format!(r#"{{"k": {literal}, "s": s}}"#),
            format!(r#"{{"k": s ? {literal} : n, "l": [{literal}], "m": {{"k": {literal}}}}}"#),
        ] {
            let expression = Expression::compile(&body).expect(&body);
            assert!(
                tally.compare("literal", &expression, &record, &scope),
                "not answered: {body}"
            );
        }
    }
    tally.assert_no_mismatch();
}

#[test]
fn fast_path_equals_engine_on_generated_expressions() {
    let record = json!({"a": 2, "b": {"c": "x"}, "d": [1, 2, 3]});
    let scope = Scope::new([("context", json!({"subdomain": "acme"}))]);
    // Every name bound first (so reads and calls mostly find something), then rebound within.
    let prelude = r#"$x := 1; $y := "s"; $z := d; $f := function($x) { $x }; $g := function($y) { [$y, $x] }"#;
    let tally = run_generated(
        "generated expressions",
        2048,
        expression(),
        |tally, source| {
            // The grammar makes a few sources JSONata refuses.
            if let Ok(expression) = Expression::compile(&format!("({prelude}; {source})")) {
                tally.compare("generated", &expression, &record, &scope);
            }
        },
    );
    // Most of them exercise the fast path, not only its hand-over.
    tally.assert_mostly_answered();
}

// ------------------------------------------------------------------------------------------------
// The official JSONata test suite.

#[test]
fn fast_path_equals_engine_on_the_jsonata_suite() {
    // `UNIGATE_JSONATA_SUITE` names the suite's folder; else it is `shared/` beside the checkout,
    // or at `/work/shared/` (where a clone made elsewhere, as CI's is, finds it).
    let suite = match std::env::var_os("UNIGATE_JSONATA_SUITE") {
        Some(dir) => Path::new(&dir).to_path_buf(),
        None => [
            repo_root().join("../shared/jsonata-test-suite"),
            Path::new("/work/shared/jsonata-test-suite").to_path_buf(),
        ]
        .into_iter()
        .find(|dir| dir.exists())
        .unwrap_or_else(|| repo_root().join("../shared/jsonata-test-suite")),
    };
    let mut groups: Vec<_> = std::fs::read_dir(suite.join("groups"))
        .unwrap_or_else(|error| {
            panic!(
                "the JSONata test suite at {} ({error}); set UNIGATE_JSONATA_SUITE to its folder",
                suite.display()
            )
        })
        .flatten()
        .map(|entry| entry.path())
        .collect();
    groups.sort();
    let mut tally = Tally::default();
    let (mut cases, mut in_subset) = (0, 0);
    for group in groups {
        let mut files: Vec<_> = std::fs::read_dir(&group)
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for file in files {
            let Ok(parsed) =
                serde_json::from_str::<Value>(&std::fs::read_to_string(&file).unwrap_or_default())
            else {
                continue;
            };
            let list = match parsed {
                Value::Array(list) => list,
                one => vec![one],
            };
            for case in list {
                cases += 1;
                let input = match (case.get("data"), case.get("dataset")) {
                    (Some(data), _) => data.clone(),
                    (None, Some(Value::String(name))) => serde_json::from_str(
                        &std::fs::read_to_string(
                            suite.join("datasets").join(format!("{name}.json")),
                        )
                        .unwrap(),
                    )
                    .unwrap(),
                    _ => continue, // undefined input: not a mapping's situation
                };
                let Some(source) = case.get("expr").and_then(Value::as_str) else {
                    continue;
                };
                let Ok(expression) = Expression::compile(source) else {
                    continue;
                };
                if expression.fast_path_gap().is_some() {
                    continue;
                }
                in_subset += 1;
                let bindings: Vec<(String, Value)> = case
                    .get("bindings")
                    .and_then(Value::as_object)
                    .map(|b| b.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                let scope = Scope::new(bindings.iter().map(|(k, v)| (k.as_str(), v.clone())));
                let name = format!("{}", file.display());
                tally.compare(&name, &expression, &input, &scope);
            }
        }
    }
    eprintln!(
        "JSONata suite: {cases} cases, {in_subset} in the fast path's subset, {} answered by it, {} handed to the JSONata engine",
        tally.answered, tally.bailed
    );
    tally.assert_no_mismatch();
    assert!(
        tally.answered >= 300,
        "only {} suite cases answered",
        tally.answered
    );
}

/// A filter whose predicate is positions keeps an item once per position naming it (JSONata:
/// `[0, 0.5]` names item 0 twice), none for positions past the end, and over an object (a
/// sequence of one) the same: found by the generated-records test on Google Workspace's
/// `organizations[name]` with a `name` of numbers.
#[test]
fn fast_path_equals_engine_on_positions_as_predicates() {
    let records = [
        json!({"a": [10, 20, 30], "n": [0, 0.5, 2], "o": {"name": [3330, 0.5, 0.5]}}),
        json!({"a": [10, 20, 30], "n": [-1, -1], "o": {"name": [7]}}),
        json!({"a": [{"k": [1, 1]}, {"k": [0]}, {"k": []}], "n": [], "o": {"name": []}}),
    ];
    let expressions = [
        "a[$$.n]",
        "a[[0, 0]]",
        "a[[0.5, 0, 5]]",
        "a[k]",
        "o[name]",
        r#"o[name].{"name": name}[]"#,
        "$count(a[[1, 1, 1]])",
    ];
    let scope = Scope::new([]);
    let mut tally = Tally::default();
    for record in &records {
        for source in expressions {
            let expression = Expression::compile(source).expect(source);
            tally.compare("positions", &expression, record, &scope);
        }
    }
    tally.assert_no_mismatch();
    assert!(tally.answered >= 15, "answered {} of 21", tally.answered);
}
