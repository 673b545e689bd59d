//! The JSON Schemas in `mappings/schema/` agree with the mapping files and are strict enough to
//! be useful: every `mappings/*.yaml` validates against `mapping.schema.json` and every
//! `mappings/models/*.yaml` against `model.schema.json` (all failures of all files are reported
//! at once), and the schemas reject the mistakes the loader rejects — an unknown key (top level,
//! inside a unified method, inside a nested model field), an auth kind without the fields it
//! needs, a pagination style without the fields it needs, an unknown filter operator.

use std::fs;
use std::path::{Path, PathBuf};

use jsonschema::Validator;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validator(schema_file: &str) -> Validator {
    let path = repo().join("mappings/schema").join(schema_file);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let schema: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    jsonschema::meta::validate(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display()));
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("compile {}: {e}", path.display()))
}

/// The `*.yaml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Every schema violation of `instance`, as `instance path: message`.
fn violations(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("at `{}`: {error}", error.instance_path()))
        .collect()
}

/// Validates every `*.yaml` of `dir` and appends `file: violation` lines to `failures`;
/// returns how many files were checked.
fn check_dir(dir: &Path, validator: &Validator, failures: &mut Vec<String>) -> usize {
    let files = yaml_files(dir);
    for file in &files {
        let text =
            fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let instance = match serde_saphyr::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(e) => {
                failures.push(format!("{}: not valid YAML: {e}", file.display()));
                continue;
            }
        };
        for violation in violations(validator, &instance) {
            failures.push(format!("{}: {violation}", file.display()));
        }
    }
    files.len()
}

#[test]
fn every_repo_mapping_and_model_matches_its_schema() {
    let mappings = repo().join("mappings");
    let mut failures = Vec::new();
    let integrations = check_dir(&mappings, &validator("mapping.schema.json"), &mut failures);
    let models = check_dir(
        &mappings.join("models"),
        &validator("model.schema.json"),
        &mut failures,
    );
    assert!(
        integrations > 0,
        "no mappings/*.yaml found in {}",
        mappings.display()
    );
    assert!(
        models > 0,
        "no mappings/models/*.yaml found in {}",
        mappings.display()
    );
    assert!(
        failures.is_empty(),
        "{} schema violation(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A small integration file that uses every section the negative cases break.
fn valid_integration() -> Value {
    json!({
        "name": "Example",
        "docs": "https://example.com/docs",
        "base_url": "https://{{context.subdomain}}.example.com/api",
        "headers": { "Accept": "application/json" },
        "auth": { "kind": "header", "header": "Authorization", "value": "Token {{context.token}}" },
        "pagination": {
            "style": "cursor",
            "cursor_param": "cursor",
            "next_cursor": "meta.next",
            "page_size_param": "limit",
            "max_page_size": 100
        },
        "errors": { "when": "ok = false", "message": "error" },
        "resources": {
            "users": {
                "list": {
                    "method": "GET",
                    "path": "/users",
                    "query": { "active": "true" },
                    "records": "users",
                    "pagination": { "style": "page", "page_param": "page", "first_page": 0 }
                }
            }
        },
        "unified": {
            "user-directory": {
                "users": {
                    "list": {
                        "resource": "users.list",
                        "partial": false,
                        "native_filters": ["email"],
                        "native_sorts": [],
                        "query_mapping": "{ \"email\": email }",
                        "response_mapping": "{ \"id\": id }"
                    }
                }
            }
        }
    })
}

/// Asserts `instance` is rejected with at least one violation located at `path`.
fn assert_rejected_at(validator: &Validator, case: &str, instance: &Value, path: &str) {
    let found = violations(validator, instance);
    assert!(!found.is_empty(), "{case}: the schema accepted it");
    let prefix = format!("at `{path}`:");
    assert!(
        found.iter().any(|v| v.starts_with(&prefix)),
        "{case}: expected a violation at `{path}`, got:\n{}",
        found.join("\n")
    );
}

#[test]
fn mapping_schema_rejects_what_the_loader_rejects() {
    let validator = validator("mapping.schema.json");
    let base = valid_integration();
    let ok = violations(&validator, &base);
    assert!(
        ok.is_empty(),
        "the valid example is rejected:\n{}",
        ok.join("\n")
    );

    // (a) an unknown top-level key
    let mut doc = base.clone();
    doc["paginaton"] = json!({ "style": "none" });
    assert_rejected_at(&validator, "unknown top-level key", &doc, "");

    // (b) auth kind header without `value`
    let mut doc = base.clone();
    doc["auth"]
        .as_object_mut()
        .expect("auth object")
        .remove("value");
    assert_rejected_at(&validator, "auth header without value", &doc, "/auth");

    // ... and a field the kind does not use
    let mut doc = base.clone();
    doc["auth"]["token"] = json!("{{context.token}}");
    assert_rejected_at(&validator, "auth header with token", &doc, "/auth/token");

    // (c) pagination style cursor without `next_cursor`
    let mut doc = base.clone();
    doc["pagination"]
        .as_object_mut()
        .expect("pagination object")
        .remove("next_cursor");
    assert_rejected_at(
        &validator,
        "cursor without next_cursor",
        &doc,
        "/pagination",
    );

    // ... the same inside a resource's own pagination (page without page_param)
    let mut doc = base.clone();
    doc["resources"]["users"]["list"]["pagination"]
        .as_object_mut()
        .expect("resource pagination object")
        .remove("page_param");
    assert_rejected_at(
        &validator,
        "page without page_param",
        &doc,
        "/resources/users/list/pagination",
    );

    // (d) an unknown key inside unified.user-directory.users.list
    let mut doc = base.clone();
    doc["unified"]["user-directory"]["users"]["list"]["response_maping"] = json!("{}");
    assert_rejected_at(
        &validator,
        "unknown key in a unified method",
        &doc,
        "/unified/user-directory/users/list",
    );

    // enums: an unknown auth kind, pagination style and HTTP method
    let mut doc = base.clone();
    doc["auth"]["kind"] = json!("oauth");
    assert_rejected_at(&validator, "unknown auth kind", &doc, "/auth/kind");
    let mut doc = base.clone();
    doc["pagination"]["style"] = json!("cursors");
    assert_rejected_at(
        &validator,
        "unknown pagination style",
        &doc,
        "/pagination/style",
    );
    let mut doc = base;
    doc["resources"]["users"]["list"]["method"] = json!("PUT");
    assert_rejected_at(
        &validator,
        "unknown method",
        &doc,
        "/resources/users/list/method",
    );
}

#[test]
fn model_schema_rejects_what_the_loader_rejects() {
    let validator = validator("model.schema.json");
    let base = json!({
        "name": "example",
        "resources": {
            "users": {
                "fields": {
                    "id": { "type": "string", "required": true },
                    "emails": {
                        "type": "array",
                        "items": { "type": "object", "fields": { "email": { "type": "string" } } }
                    }
                },
                "filters": { "created_at": { "type": "datetime", "operators": ["gt", "lte"] } },
                "sorts": ["id"]
            }
        }
    });
    let ok = violations(&validator, &base);
    assert!(
        ok.is_empty(),
        "the valid example is rejected:\n{}",
        ok.join("\n")
    );

    let mut doc = base.clone();
    doc["resources"]["users"]["fields"]["emails"]["items"]["fields"]["email"]["format"] =
        json!("email");
    assert_rejected_at(
        &validator,
        "unknown key in a nested field",
        &doc,
        "/resources/users/fields/emails/items/fields/email",
    );

    let mut doc = base.clone();
    doc["resources"]["users"]["fields"]["id"]["type"] = json!("integer");
    assert_rejected_at(
        &validator,
        "unknown field type",
        &doc,
        "/resources/users/fields/id/type",
    );

    let mut doc = base;
    doc["resources"]["users"]["filters"]["created_at"]["operators"] = json!(["eq", "like"]);
    assert_rejected_at(
        &validator,
        "unknown operator",
        &doc,
        "/resources/users/filters/created_at/operators/1",
    );
}
