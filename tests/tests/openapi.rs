//! `/openapi.json` against the running gateway: every documented path and method is routed and
//! answers a documented status, every route of the router is documented, the documented query
//! parameters are exactly those the parsers take, the documented error statuses are exactly
//! those the error table gives; then an OpenAPI validator (openapi-spec-validator) and a
//! property-based fuzz run (schemathesis) against a live gateway, from the project's Python
//! environment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Value, json};
use unigate_gateway::{Gateway, ROUTES, sandbox};
use unigate_mapping::Catalog;
use unigate_store::MemoryStore;
use unigate_tests::{RunningGateway, get_json, python_or_skip, serve};
use unigate_unified::ErrorKind;

/// One token for both the unified and the admin API, so a fuzzer needs one header.
const TOKEN: &str = "openapi-test-token-0123456789";

async fn gateway() -> RunningGateway {
    let catalog = Catalog::from_sources(&sandbox::model_sources(), &sandbox::integration_sources())
        .expect("sandbox mappings");
    let provider = sandbox::start_provider(sandbox::DEFAULT_USERS)
        .await
        .expect("sandbox provider");
    let store = MemoryStore::new(sandbox::accounts(provider)).expect("store");
    let gateway = Gateway::assemble_with_store(
        catalog,
        Arc::new(store),
        Default::default(),
        Default::default(),
        b"openapi-test-cursor-secret-0123",
        &[TOKEN.to_owned()],
        &[TOKEN.to_owned()],
    )
    .expect("gateway");
    serve(gateway).await
}

async fn document(origin: &str) -> Value {
    let response = reqwest::get(format!("{origin}/openapi.json"))
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    response.json().await.expect("JSON")
}

/// Does the concrete documented path stand for the axum pattern? `{model}` and `{resource}`
/// are the loaded model's names; any other `{x}` must be documented as the same parameter.
fn matches(pattern: &str, path: &str, models: &BTreeMap<String, BTreeSet<String>>) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    if pattern.len() != path.len() {
        return false;
    }
    let mut model = None;
    for (want, have) in pattern.iter().zip(&path) {
        match *want {
            "{model}" => {
                if !models.contains_key(*have) {
                    return false;
                }
                model = Some(*have);
            }
            "{resource}" if !model.is_some_and(|model| models[model].contains(*have)) => {
                return false;
            }
            "{resource}" => {}
            _ if want != have => return false,
            _ => {}
        }
    }
    true
}

fn documented_operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            operations.push((path.clone(), method.to_uppercase(), operation.clone()));
        }
    }
    operations
}

fn loaded_models() -> BTreeMap<String, BTreeSet<String>> {
    let catalog = Catalog::from_sources(&sandbox::model_sources(), &sandbox::integration_sources())
        .expect("sandbox mappings");
    catalog
        .models
        .iter()
        .map(|(name, model)| (name.clone(), model.resources.keys().cloned().collect()))
        .collect()
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let running = gateway().await;
    let document = document(&running.origin).await;
    let models = loaded_models();
    let operations = documented_operations(&document);

    // Router → document: each (pattern, method) has a documented path for every model resource.
    for (pattern, methods) in ROUTES {
        for method in *methods {
            let documented = operations
                .iter()
                .filter(|(path, have, _)| have == method && matches(pattern, path, &models))
                .count();
            let expected = if pattern.contains("{model}") {
                models.values().map(BTreeSet::len).sum()
            } else {
                1
            };
            assert_eq!(
                documented, expected,
                "{method} {pattern} is documented {documented} time(s)"
            );
        }
    }
    // Document → router: each documented operation stands for a route of the table.
    for (path, method, _) in &operations {
        assert!(
            ROUTES
                .iter()
                .any(|(pattern, methods)| methods.contains(&method.as_str())
                    && matches(pattern, path, &models)),
            "{method} {path} is documented but not routed"
        );
    }

    // Each documented operation, called with its required parameters, is routed (not the
    // fallback 404, not 405) and answers one of its documented statuses.
    let client = reqwest::Client::new();
    for (path, method, operation) in &operations {
        let concrete = path
            .replace(
                "{id}",
                if path.starts_with("/admin") {
                    "sandbox"
                } else {
                    "usr_00001"
                },
            )
            .replace("{method}", "list")
            .replace("{integration}", "sandbox");
        let mut url = format!("{}{concrete}", running.origin);
        let required: Vec<String> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|parameter| parameter["in"] == "query" && parameter["required"] == true)
            .map(|parameter| parameter["name"].as_str().unwrap().to_owned())
            .collect();
        if !required.is_empty() {
            assert_eq!(required, ["integrated_account_id"], "{method} {path}");
            url.push_str("?integrated_account_id=sandbox");
        }
        let mut request = client
            .request(method.parse().unwrap(), &url)
            .bearer_auth(TOKEN);
        if method == "POST" {
            request = request.json(&json!({"id": "openapi-new", "integration": "sandbox", "context": {"api_key": "k", "sandbox_url": "http://127.0.0.1:9"}}));
        }
        if method == "PATCH" {
            request = request.json(&json!({"status": "active"}));
        }
        if method == "DELETE" {
            // Delete a fresh account, not the one the other calls use.
            url = url.replace("/sandbox", "/openapi-new");
            request = client.delete(&url).bearer_auth(TOKEN);
        }
        let response = request.send().await.expect("answer");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("no such route") && status != 405,
            "{method} {url}: {status} {text}"
        );
        assert!(
            operation["responses"].get(status.to_string()).is_some(),
            "{method} {url} answered {status}, which its operation does not document: {text}"
        );
        assert!(status < 300, "{method} {url}: {status} {text}");
    }
}

#[tokio::test]
async fn the_documented_query_parameters_are_exactly_those_the_gateway_takes() {
    let running = gateway().await;
    let document = document(&running.origin).await;
    let catalog =
        Catalog::from_sources(&sandbox::model_sources(), &sandbox::integration_sources()).unwrap();
    let users = &catalog.models["user-directory"].resources["users"];
    let names = |path: &str| -> BTreeSet<String> {
        document["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|parameter| parameter["in"] == "query")
            .map(|parameter| parameter["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = names("/unified/user-directory/users");
    let mut expected: BTreeSet<String> = unigate_unified::ListParameter::ALL
        .iter()
        .map(|parameter| parameter.name().to_owned())
        .collect();
    expected.extend(users.filters.keys().cloned());
    assert_eq!(list, expected);
    let get = names("/unified/user-directory/users/{id}");
    let expected: BTreeSet<String> = unigate_unified::GetParameter::ALL
        .iter()
        .map(|parameter| parameter.name().to_owned())
        .collect();
    assert_eq!(get, expected);

    // The gateway takes each documented parameter, and refuses one the document lacks.
    let sample = |name: &str| -> &str {
        match name {
            "integrated_account_id" => "sandbox",
            "limit" => "2",
            "truto_response_format" => "unified",
            "truto_key_by" => "id",
            "sort_by" => "id",
            "sort_order" => "desc",
            "created_at" | "updated_at" | "last_login_at" => "2024-01-01T00:00:00Z",
            "status" => "active",
            "next_cursor" => "",
            "truto_ignore_limit" | "truto_ignore_remote_data" => "false",
            _ => "x",
        }
    };
    for (path, parameters) in [
        ("/unified/user-directory/users", &list),
        ("/unified/user-directory/users/usr_00001", &get),
    ] {
        for name in parameters
            .iter()
            .filter(|name| *name != "integrated_account_id")
        {
            let query = if name == "remote_query" {
                "remote_query[x]=1".to_owned()
            } else {
                format!("{name}={}", sample(name))
            };
            let url = format!(
                "{}{path}?integrated_account_id=sandbox&{query}",
                running.origin
            );
            let (_, body) = get_json(&url, Some(TOKEN)).await;
            assert!(
                !body.to_string().contains("unknown query parameter"),
                "{url}: {body}"
            );
        }
        let url = format!(
            "{}{path}?integrated_account_id=sandbox&not_documented=1",
            running.origin
        );
        let (status, body) = get_json(&url, Some(TOKEN)).await;
        assert_eq!(status, 400);
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("unknown query parameter `not_documented`"),
            "{body}"
        );
    }
}

/// The statuses the error table gives, one kind of each; the match has no wildcard so that a
/// new kind cannot be added without deciding here whether the document shows it.
fn statuses_of_the_error_table() -> BTreeSet<u16> {
    let kinds = [
        ErrorKind::BadRequest,
        ErrorKind::Unauthorized,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Conflict,
        ErrorKind::Remote {
            provider_status: 500,
        },
        ErrorKind::RateLimited {
            provider_status: 429,
        },
        ErrorKind::BadGateway,
        ErrorKind::GatewayTimeout,
        ErrorKind::Mapping,
        ErrorKind::Http { status: 413 },
        ErrorKind::Http { status: 414 },
        ErrorKind::Http { status: 431 },
        ErrorKind::Overloaded,
        ErrorKind::Deadline,
        ErrorKind::Internal,
    ];
    kinds
        .into_iter()
        .filter(|kind| match kind {
            // Answered for a method a route lacks: not an operation's answer.
            ErrorKind::MethodNotAllowed => false,
            ErrorKind::BadRequest
            | ErrorKind::Unauthorized
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Remote { .. }
            | ErrorKind::RateLimited { .. }
            | ErrorKind::BadGateway
            | ErrorKind::GatewayTimeout
            | ErrorKind::Mapping
            | ErrorKind::Http { .. }
            | ErrorKind::Overloaded
            | ErrorKind::Deadline
            | ErrorKind::Internal => true,
        })
        .map(ErrorKind::status)
        .collect()
}

#[tokio::test]
async fn the_documented_error_statuses_are_those_of_the_error_table() {
    let running = gateway().await;
    let document = document(&running.origin).await;
    let mut documented = BTreeSet::new();
    for (_, _, operation) in documented_operations(&document) {
        for status in operation["responses"].as_object().unwrap().keys() {
            if let Ok(status) = status.parse::<u16>()
                && status >= 400
            {
                documented.insert(status);
            }
        }
    }
    assert_eq!(documented, statuses_of_the_error_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_validates_and_a_fuzz_run_finds_no_5xx_and_no_schema_violation() {
    let Some(python) = python_or_skip("the OpenAPI validator and fuzz run") else {
        return;
    };
    let running = gateway().await;
    let document = document(&running.origin).await;
    let dir = std::env::temp_dir().join(format!("unigate-openapi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document).unwrap()).unwrap();

    let validated = tokio::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .await
        .expect("openapi-spec-validator runs");
    assert!(
        validated.status.success(),
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let schemathesis = python.with_file_name("schemathesis");
    let fuzzed = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{}/openapi.json", running.origin))
        .args([
            "--checks",
            "all",
            // Valid input may still name an account or a record that does not exist (404).
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "30",
            "--seed",
            "7",
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
        ])
        .current_dir(&dir)
        .output()
        .await
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        fuzzed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&fuzzed.stdout),
        String::from_utf8_lossy(&fuzzed.stderr)
    );
}
