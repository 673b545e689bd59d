//! Mapping throughput: records per second through a unified `response_mapping`.
//!
//! Not part of CI; run it through `bench/mapping-throughput.sh`, which also runs the same
//! expressions on the same records with jsonata-js and prints the comparison table. By hand:
//!
//! ```sh
//! cargo bench -p unigate-mapping --bench mapping_throughput -- [--records N] [--runs N] [--root DIR] [--out DIR]
//! ```
//!
//! For each mapping (the `user-directory/users/list` `response_mapping` of okta, microsoft-365
//! and scim) it builds `--records` provider records (default 20,000) from the records of the
//! integration's `two-pages` fixture, varying ids, emails and dates deterministically, in pages
//! of 100. It writes them to `<out>/<integration>.json` together with the expression source and
//! its `$context`/`$query` bindings, and the mapped first page to
//! `<out>/<integration>.expected.json`, so another engine can map exactly the same records and
//! check that it agrees. It maps every record once to warm up, then `--runs` times (default 3)
//! on each path — the JSONata engine alone (`jlens-core`) and the fast path alone (which must answer every
//! record itself, and answer it as the JSONata engine does) — and prints the best runs as one line per
//! mapping:
//!
//! ```text
//! RESULT <integration> <records> <engine-records-per-second> <fast-path-records-per-second> <fast-path-to-text-records-per-second> <doc-to-text-records-per-second>
//! ```
//!
//! The JSONata engine and fast-path figures include building the mapped record as a `serde_json` tree
//! (what `Expression::evaluate` answers); the last one is the fast path writing the record as
//! JSON text instead, as the gateway does when nothing looks inside the record afterwards; the
//! last one is that over each record parsed from its text with only the fields the mapping
//! reads, into the fast path's own representation, as the gateway parses a page's records
//! (`unigate_mapping::doc`; parsing is not timed, as jsonata-js's `JSON.parse` is not).
//!
//! `--profile <integration>` times that mapping's doc->text path alone (the other columns `NaN`),
//! for running under a profiler: `perf record target/release/deps/mapping_throughput-* --bench --profile okta`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use unigate_mapping::doc::{Doc, parse_doc};
use unigate_mapping::{Catalog, Expression, FastOutcome, Scope};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PAGE_SIZE: usize = 100;

/// One benchmarked mapping: the integration, where its fixture pages keep their records, and the
/// account context the fixtures use.
struct Case {
    integration: &'static str,
    /// JSON pointer to the records array in a fixture page ("" for a top-level array).
    records_at: &'static str,
    pages: usize,
    context: fn() -> Value,
}

const CASES: [Case; 3] = [
    Case {
        integration: "okta",
        records_at: "",
        // Five pages of the plain list and the DEPROVISIONED pass's one.
        pages: 6,
        context: || json!({"subdomain": "acme", "api_token": "00a-test-token"}),
    },
    Case {
        integration: "microsoft-365",
        records_at: "/value",
        pages: 3,
        context: || json!({"access_token": "eyJ0-test"}),
    },
    Case {
        integration: "scim",
        records_at: "/Resources",
        pages: 3,
        context: || json!({"base_url": "https://scim.example.com/scim/v2", "token": "scim-test-token"}),
    },
];

struct Args {
    records: usize,
    runs: usize,
    root: PathBuf,
    out: Option<PathBuf>,
    /// Only this integration, fast path only (for a profiler).
    profile: Option<String>,
}

fn parse_args() -> Option<Args> {
    let mut args = Args {
        records: 20_000,
        runs: 3,
        root: Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        out: None,
        profile: None,
    };
    let mut benching = false;
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            // `cargo bench` passes `--bench`; `cargo test --benches` does not.
            "--bench" => benching = true,
            "--records" => args.records = value("--records").parse().expect("--records N"),
            "--runs" => args.runs = value("--runs").parse().expect("--runs N"),
            "--root" => args.root = PathBuf::from(value("--root")),
            "--out" => args.out = Some(PathBuf::from(value("--out"))),
            "--profile" => args.profile = Some(value("--profile")),
            _ => {} // libtest-style flags (filters, --nocapture, …) do not apply here
        }
    }
    assert!(
        args.records > 0 && args.runs > 0,
        "--records and --runs must be > 0"
    );
    benching.then_some(args)
}

fn main() {
    let Some(args) = parse_args() else {
        println!("mapping_throughput: run it with `cargo bench` (see bench/mapping-throughput.sh)");
        return;
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.root.join("target/bench-data"));
    std::fs::create_dir_all(&out).expect("create the output directory");
    let catalog = Catalog::load_dir(&args.root.join("mappings")).expect("load mappings/");

    for case in &CASES {
        if args
            .profile
            .as_ref()
            .is_some_and(|only| only != case.integration)
        {
            continue;
        }
        let integration = &catalog.integrations[case.integration];
        let method = integration
            .unified_method("user-directory", "users", unigate_mapping::Method::List)
            .expect("a user-directory/users/list method");
        let context = (case.context)();
        let query = json!({});
        let scope = Scope::new([("context", context.clone()), ("query", query.clone())]);
        let pages = generate(&fixture_records(&args.root, case), args.records);
        let expression = &method.response_mapping;

        // Warm-up, and the reference output of the first page for the other engine.
        let mut expected = Vec::new();
        for (index, page) in pages.iter().enumerate() {
            for record in page {
                let mapped = map(expression, record, &scope);
                if index == 0 {
                    expected.push(mapped);
                }
            }
        }
        write_json(
            &out.join(format!("{}.json", case.integration)),
            &json!({
                "integration": case.integration,
                "expression": expression.source(),
                "bindings": {"context": context, "query": query},
                "records": args.records,
                "pages": pages,
            }),
        );
        write_json(
            &out.join(format!("{}.expected.json", case.integration)),
            &Value::Array(expected),
        );

        for (index, page) in pages.iter().enumerate() {
            for (position, record) in page.iter().enumerate() {
                match expression.evaluate_fast(record, &scope) {
                    FastOutcome::Done(Some(mapped))
                        if mapped == map_on_engine(expression, record, &scope) => {}
                    other => panic!(
                        "{}: the fast path did not map page {index} record {position} as the JSONata engine does: {other:?}",
                        case.integration
                    ),
                }
            }
        }

        let engine = if args.profile.is_some() {
            f64::NAN
        } else {
            best_rate(args.runs, &pages, |record| {
                map_on_engine(expression, record, &scope)
                    .as_object()
                    .map_or(0, |object| object.len())
            })
        };
        // Profiling looks at the gateway's way alone (the last column).
        let profiling = args.profile.is_some();
        let fast = if profiling {
            f64::NAN
        } else {
            best_rate(args.runs, &pages, |record| {
                match expression.evaluate_fast(record, &scope) {
                    FastOutcome::Done(Some(Value::Object(mapped))) => mapped.len(),
                    other => panic!("the fast path gave {other:?}"),
                }
            })
        };
        // The answer written as JSON text without building it.
        let mut text = Vec::with_capacity(4096);
        let fast_text = if profiling {
            f64::NAN
        } else {
            best_rate(args.runs, &pages, |record| {
                text.clear();
                match expression.evaluate_json_fast(record, &scope, &mut text) {
                    Some(true) => text.len(),
                    other => panic!("the fast path gave {other:?}"),
                }
            })
        };
        // The same over the records as the gateway holds them: each parsed from its text into
        // the fast path's own representation with only the fields the mapping reads
        // (`PageReads::record`), so lookups compare symbols over small objects.
        let reads = expression.reads().expect("a fast-path mapping");
        let texts: Vec<Vec<String>> = pages
            .iter()
            .map(|page| page.iter().map(Value::to_string).collect())
            .collect();
        let docs: Vec<Vec<Doc<'_>>> = texts
            .iter()
            .map(|page| {
                page.iter()
                    .map(|record| parse_doc(record, &reads).expect("a record parses"))
                    .collect()
            })
            .collect();
        let doc_text = best_rate_of(args.runs, &docs, |record| {
            text.clear();
            match expression.evaluate_doc_json_fast(record, &scope, &mut text) {
                Some(true) => text.len(),
                other => panic!("the fast path gave {other:?}"),
            }
        });
        println!(
            "RESULT {} {} {engine:.1} {fast:.1} {fast_text:.1} {doc_text:.1}",
            case.integration, args.records
        );
    }
}

/// Maps one record as the gateway does; anything but an object is a broken benchmark.
fn map(expression: &Expression, record: &Value, scope: &Scope) -> Value {
    match expression.evaluate(record, scope) {
        Ok(Some(mapped @ Value::Object(_))) => mapped,
        other => panic!("the mapping gave {other:?} for {record}"),
    }
}

fn map_on_engine(expression: &Expression, record: &Value, scope: &Scope) -> Value {
    match expression.evaluate_on_jsonata_engine(record, scope) {
        Ok(Some(mapped @ Value::Object(_))) => mapped,
        other => panic!("the JSONata engine gave {other:?} for {record}"),
    }
}

/// Records per second of the best of `runs` passes over every page. `map` answers a size of
/// what it made, so that nothing is optimized away.
fn best_rate(runs: usize, pages: &[Vec<Value>], map: impl FnMut(&Value) -> usize) -> f64 {
    best_rate_of(runs, pages, map)
}

fn best_rate_of<T>(runs: usize, pages: &[Vec<T>], mut map: impl FnMut(&T) -> usize) -> f64 {
    let records: usize = pages.iter().map(Vec::len).sum();
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let mut size = 0usize;
        for page in pages {
            for record in page {
                size += map(black_box(record));
            }
        }
        black_box(size);
        best = best.min(start.elapsed());
    }
    records as f64 / best.as_secs_f64()
}

fn write_json(path: &Path, value: &Value) {
    let text = serde_json::to_vec(value).expect("serialize");
    std::fs::write(path, text).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

/// The records of the integration's `two-pages` fixture, in page order.
fn fixture_records(root: &Path, case: &Case) -> Vec<Value> {
    let mut records = Vec::new();
    for page in 1..=case.pages {
        let path = root.join(format!(
            "tests/fixtures/{}/two-pages/page{page}.json",
            case.integration
        ));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        let body: Value = serde_json::from_str(&text).expect("a JSON fixture page");
        let Some(Value::Array(page_records)) = body.pointer(case.records_at) else {
            panic!(
                "{} has no records array at {:?}",
                path.display(),
                case.records_at
            );
        };
        records.extend(page_records.iter().cloned());
    }
    assert!(
        !records.is_empty(),
        "no fixture records for {}",
        case.integration
    );
    records
}

/// `count` records in pages of [`PAGE_SIZE`]: record `i` is fixture record `i % n` with its id,
/// its emails and its dates varied by `i`.
fn generate(base: &[Value], count: usize) -> Vec<Vec<Value>> {
    let records: Vec<Value> = (0..count).map(|i| vary(&base[i % base.len()], i)).collect();
    records.chunks(PAGE_SIZE).map(<[Value]>::to_vec).collect()
}

fn vary(record: &Value, i: usize) -> Value {
    let old_id = record.get("id").and_then(Value::as_str).unwrap_or_default();
    let new_id = if old_id.len() >= 12 && old_id.is_ascii() {
        // Same length and alphabet as the provider's ids (hex digits fit GUIDs and Okta ids).
        format!("{}{:06x}", &old_id[..old_id.len() - 6], i)
    } else {
        format!("{old_id}-{i}")
    };
    let mut record = record.clone();
    vary_strings(&mut record, &|text: &str| {
        let text = if old_id.is_empty() {
            text.to_owned()
        } else {
            text.replace(old_id, &new_id) // the id, and the links and locations that carry it
        };
        if let Some(varied) = vary_email(&text, i) {
            varied
        } else if let Some(varied) = vary_date(&text, i) {
            varied
        } else {
            text
        }
    });
    record
}

fn vary_strings(value: &mut Value, vary: &dyn Fn(&str) -> String) {
    match value {
        Value::String(text) => *text = vary(text),
        Value::Array(items) => items.iter_mut().for_each(|item| vary_strings(item, vary)),
        Value::Object(object) => object
            .values_mut()
            .for_each(|item| vary_strings(item, vary)),
        _ => {}
    }
}

/// `local@domain` -> `local.<i>@domain`; the same `i` for every address of one record, so
/// addresses that were equal (ignoring case) stay equal.
fn vary_email(text: &str, i: usize) -> Option<String> {
    let (local, domain) = text.split_once('@')?;
    let plain = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
    };
    (plain(local) && plain(domain) && domain.contains('.')).then(|| format!("{local}.{i}@{domain}"))
}

/// A string starting `YYYY-MM-DD` gets its date moved back by `(7 i) mod 1500` days; the time and
/// zone that follow stay as they were.
fn vary_date(text: &str, i: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() < 10
        || !(digits(0..4) && bytes[4] == b'-' && digits(5..7) && bytes[7] == b'-' && digits(8..10))
    {
        return None;
    }
    let year: i64 = text[0..4].parse().ok()?;
    let month: i64 = text[5..7].parse().ok()?;
    let day: i64 = text[8..10].parse().ok()?;
    let days = days_from_civil(year, month, day) - (7 * i as i64) % 1500;
    let (year, month, day) = civil_from_days(days);
    Some(format!("{year:04}-{month:02}-{day:02}{}", &text[10..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
