//! Loading mapping files: the repository's files load, and broken ones are reported with file,
//! line and field path, all at once.

use std::path::{Path, PathBuf};

use unigate_mapping::{
    Catalog, Credential, PaceScope, Source, Vars, render_request, render_resource_credential,
};

fn repo_mappings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings")
}

fn model() -> Source {
    let path = repo_mappings().join("models/user-directory.yaml");
    Source {
        text: std::fs::read_to_string(&path).unwrap(),
        path,
    }
}

fn integration(name: &str, text: &str) -> Source {
    Source {
        path: PathBuf::from(format!("mappings/{name}.yaml")),
        text: text.to_owned(),
    }
}

/// The load errors of `sources` (which must not load), one line each.
fn load_errors(sources: &[Source]) -> Vec<String> {
    Catalog::from_sources(&[model()], sources)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

const GOOD: &str = r#"name: Example
docs: https://example.test/docs
base_url: "https://{{context.subdomain}}.example.test/api"
auth: { kind: bearer, token: "{{context.token}}" }
pagination: { style: cursor, cursor_param: cursor, next_cursor: meta.next, page_size_param: limit }
resources:
  users:
    list: { path: /users, records: data }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id }
"#;

#[test]
fn the_repository_mappings_load() {
    let catalog = Catalog::load_dir(&repo_mappings()).unwrap_or_else(|errors| panic!("{errors}"));
    assert!(catalog.models.contains_key("user-directory"));
    assert!(catalog.integrations.contains_key("sandbox"));
    let sandbox = &catalog.integrations["sandbox"];
    assert_eq!(
        sandbox.context_keys().into_iter().collect::<Vec<_>>(),
        vec!["api_key".to_owned(), "sandbox_url".to_owned()]
    );
}

#[test]
fn a_good_file_compiles() {
    let catalog = Catalog::from_sources(&[model()], &[integration("example", GOOD)]).unwrap();
    let example = &catalog.integrations["example"];
    assert!(
        example
            .unified_method("user-directory", "users", unigate_mapping::Method::List)
            .is_some()
    );
    assert!(
        example
            .unified_method("user-directory", "users", unigate_mapping::Method::Get)
            .is_none()
    );
}

#[test]
fn every_error_is_reported_with_file_line_and_path() {
    let broken_expression = GOOD.replace(r#"{ "id": id }"#, r#"{ "id": id "#);
    let unknown_key = GOOD.replace(
        "    list: { path: /users, records: data }",
        "    list: { path: /users, records: data, colour: red }",
    );
    let bad_template = GOOD.replace("{{context.subdomain}}", "{{secrets.subdomain}}");
    let unknown_field = GOOD.replace(r#"{ "id": id }"#, r#"{ "id": id, "shoe_size": size }"#);
    let bad_filter = GOOD.replace("        resource: users.list", "        resource: users.list\n        native_filters: [colour]\n        query_mapping: '{}'");
    let wrong_resource = GOOD.replace(
        "        resource: users.list",
        "        resource: people.list",
    );
    let pagination_missing = GOOD.replace(", next_cursor: meta.next", "");
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration("a", &broken_expression),
            integration("b", &unknown_key),
            integration("c", &bad_template),
            integration("d", &unknown_field),
            integration("e", &bad_filter),
            integration("f", &wrong_resource),
            integration("g", &pagination_missing),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "mappings/a.yaml:15: unified.user-directory.users.list.response_mapping: JSONata does not compile: Expected \"}\" before end of expression (S0203)",
            "mappings/b.yaml:8: resources.users.list: unknown field `colour`, expected one of method, path, base_url, query, headers, auth, records, body, pagination, omit, passes, pace",
            "mappings/c.yaml:3: base_url: bad template: `{{secrets.subdomain}}`: templates can only read `context.<key>`",
            "mappings/d.yaml:15: unified.user-directory.users.list.response_mapping: produces `shoe_size`, which is not a field of the unified model",
            "mappings/e.yaml:14: unified.user-directory.users.list.native_filters[0]: `colour` is not a filter of the unified model",
            "mappings/f.yaml:13: unified.user-directory.users.list.resource: names `people.list`, which is not a `resource.method` under `resources`",
            "mappings/g.yaml:5: resources.users.list.pagination: pagination style `cursor` needs `next_cursor`",
        ],
        "{errors}"
    );
}

#[test]
fn a_file_can_extend_another_and_override_only_what_differs() {
    let child = r#"extends: example
name: Example Enterprise
base_url: "https://{{context.host}}/enterprise/api"
unified:
  user-directory:
    users:
      list:
        response_mapping: '{ "id": id, "username": login }'
"#;
    let catalog = Catalog::from_sources(
        &[model()],
        &[
            integration("example", GOOD),
            integration("example-enterprise", child),
        ],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let child = &catalog.integrations["example-enterprise"];
    assert_eq!(child.name, "Example Enterprise");
    assert_eq!(child.docs, "https://example.test/docs");
    assert_eq!(
        child.context_keys().into_iter().collect::<Vec<_>>(),
        vec!["host".to_owned(), "token".to_owned()]
    );
    let method = child
        .unified_method("user-directory", "users", unigate_mapping::Method::List)
        .unwrap();
    assert_eq!(method.resource, "users.list", "inherited");
    assert_eq!(
        method.response_mapping.source(),
        r#"{ "id": id, "username": login }"#
    );
    assert!(child.resources.contains_key("users.list"));
}

/// A file that extends another changes single entries of the response mapping it inherits:
/// a field replaced keeps its place and sees the base's bindings, `null` removes one, a new one
/// goes last; a further file merges its own over them, and a file with its own
/// `response_mapping` inherits none. The result is an ordinary expression, fast path included.
#[test]
fn a_file_extending_another_may_change_single_fields_of_its_mapping() {
    let base = GOOD.replace(
        r#"{ "id": id }"#,
        r#"( $given := name.given; { "id": id, "username": login, "first_name": $given, "title": title } )"#,
    );
    let child = r#"extends: example
name: Example Enterprise
unified:
  user-directory:
    users:
      list:
        response_fields:
          title: "$uppercase(title)"
          username: null
          name: "$given & ' ' & name.family"
"#;
    let grandchild = r#"extends: example-enterprise
name: Example Enterprise EU
unified:
  user-directory:
    users:
      list:
        response_fields:
          username: login
          title: null
"#;
    let own = r#"extends: example-enterprise
name: Example Own
unified:
  user-directory:
    users:
      list:
        response_mapping: '{ "id": id }'
"#;
    let catalog = Catalog::from_sources(
        &[model()],
        &[
            integration("example", &base),
            integration("example-enterprise", child),
            integration("example-eu", grandchild),
            integration("example-own", own),
        ],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let record = serde_json::json!({
        "id": "u1", "login": "ada", "title": "engineer",
        "name": { "given": "Ada", "family": "Lovelace" }
    });
    let mapped = |id: &str| {
        let method = catalog.integrations[id]
            .unified_method("user-directory", "users", unigate_mapping::Method::List)
            .unwrap();
        let scope = unigate_mapping::Scope::new([]);
        let fast = method.response_mapping.evaluate_fast(&record, &scope);
        let answer = method
            .response_mapping
            .evaluate(&record, &scope)
            .unwrap()
            .unwrap();
        assert_eq!(
            fast,
            unigate_mapping::FastOutcome::Done(Some(answer.clone())),
            "{id} on the fast path"
        );
        let fields = method
            .mapped_fields
            .clone()
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>();
        (serde_json::to_string(&answer).unwrap(), fields)
    };
    assert_eq!(
        mapped("example"),
        (
            r#"{"id":"u1","username":"ada","first_name":"Ada","title":"engineer"}"#.to_owned(),
            vec![
                "first_name".to_owned(),
                "id".into(),
                "title".into(),
                "username".into()
            ]
        )
    );
    assert_eq!(
        mapped("example-enterprise"),
        (
            r#"{"id":"u1","first_name":"Ada","title":"ENGINEER","name":"Ada Lovelace"}"#.to_owned(),
            vec![
                "first_name".to_owned(),
                "id".into(),
                "name".into(),
                "title".into()
            ]
        )
    );
    assert_eq!(
        mapped("example-eu"),
        (
            r#"{"id":"u1","username":"ada","first_name":"Ada","name":"Ada Lovelace"}"#.to_owned(),
            vec![
                "first_name".to_owned(),
                "id".into(),
                "name".into(),
                "username".into()
            ]
        )
    );
    assert_eq!(mapped("example-own").0, r#"{"id":"u1"}"#);
}

/// Every response mapping of the repository that builds one object with literal keys can have
/// its entries rebuilt: unchanged, every value replaced, or every other key removed, the result
/// compiles and builds the keys expected (the values' source ranges are read right).
#[test]
fn every_repository_mapping_object_can_have_its_entries_changed() {
    let catalog = Catalog::load_dir(&repo_mappings()).unwrap_or_else(|errors| panic!("{errors}"));
    let mut objects = 0;
    for (id, integration) in &catalog.integrations {
        for method in integration.unified.values() {
            let mapping = &method.response_mapping;
            let Some(keys) = mapping.object_keys() else {
                continue;
            };
            let Ok(unchanged) = mapping.with_object_entries(&[]) else {
                continue;
            };
            objects += 1;
            let keys_of = |source: &str| {
                unigate_mapping::Expression::compile(source)
                    .unwrap_or_else(|error| panic!("{id}: {error:?}\n{source}"))
                    .object_keys()
            };
            assert_eq!(keys_of(&unchanged).as_ref(), Some(&keys), "{id}");
            // Rebuilt unchanged, it is the same text but for spacing (and comments, dropped).
            let bare = |text: &str| text.split_whitespace().collect::<String>();
            if !mapping.source().contains("/*") {
                assert_eq!(bare(&unchanged), bare(mapping.source()), "{id}");
            }
            let replaced: Vec<(&str, Option<&str>)> =
                keys.iter().map(|key| (key.as_str(), Some("1"))).collect();
            let replaced = mapping.with_object_entries(&replaced).unwrap();
            assert_eq!(
                keys_of(&replaced).as_ref(),
                Some(&keys),
                "{id} with every value replaced"
            );
            // Every other key removed: a removed entry between kept ones, and at either end.
            let removed: Vec<(&str, Option<&str>)> = keys
                .iter()
                .step_by(2)
                .map(|key| (key.as_str(), None))
                .collect();
            let kept: Vec<String> = keys.iter().skip(1).step_by(2).cloned().collect();
            let removed = mapping.with_object_entries(&removed).unwrap();
            assert_eq!(
                keys_of(&removed),
                Some(kept),
                "{id} without every other key"
            );
        }
    }
    assert!(objects > 300, "{objects} objects");
}

/// A follow-up made only with an account-context flag (`only_with`), and one chained over it
/// (which takes the flag), leave the pages' reads to an account without the flag: its pages
/// hold each record as the mapping reads it, not what the follow-ups read of them.
#[test]
fn an_opt_in_follow_up_costs_an_account_without_its_flag_nothing() {
    let file = GOOD.replace(
        "    list: { path: /users, records: data }",
        "    list: { path: /users, records: data }\n  groups:\n    list: { path: /groups, records: data }\n  members:\n    list: { path: \"/groups/{{id}}/members\", records: data }",
    ).replace(
        r#"        response_mapping: |
          { "id": id }"#,
        r#"        follow_up:
          catalog:
            resource: groups.list
            per: page
            only_with: read_groups
            id: "$count(id) > 0 ? 'all'"
          members:
            resource: members.list
            over: catalog
            id: id
            key: id
            matches: id
        response_mapping: |
          { "id": id, "groups": $members.{ "id": id } }"#,
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("example", &file)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let method = catalog.integrations["example"]
        .unified_method("user-directory", "users", unigate_mapping::Method::List)
        .unwrap();
    let flags: Vec<_> = (method.follow_ups.iter())
        .map(|follow_up| (follow_up.name.as_str(), follow_up.only_with.as_deref()))
        .collect();
    assert_eq!(
        flags,
        [
            ("catalog", Some("read_groups")),
            ("members", Some("read_groups"))
        ]
    );
    let path = ["data".to_owned()];
    let with = method.page_reads.as_ref().unwrap();
    assert!(unigate_mapping::reads::reads_each_record(&with.page, &path));
    let without = method
        .page_reads_without_opt_ins
        .as_ref()
        .unwrap()
        .as_ref()
        .unwrap();
    assert!(!unigate_mapping::reads::reads_each_record(
        &without.page,
        &path
    ));
    let made = |context: serde_json::Value| method.follow_ups[0].made_for(&context);
    assert!(made(serde_json::json!({"read_groups": true})));
    assert!(made(serde_json::json!({"read_groups": "true"})));
    assert!(!made(serde_json::json!({"read_groups": "yes"})));
    assert!(!made(serde_json::json!({})));

    let bad = file.replace("only_with: read_groups", "only_with: \"read groups\"");
    assert_eq!(
        load_errors(&[integration("bad", &bad)]),
        [
            "mappings/bad.yaml:22: unified.user-directory.users.list.follow_up.catalog.only_with: must name an account-context key, such as `read_groups`"
        ]
    );
}

/// `response_fields` mistakes name the file, the line and the field.
#[test]
fn response_fields_mistakes_name_their_line() {
    let child = |fields: &str| {
        format!(
            "extends: example\nname: Child\nunified:\n  user-directory:\n    users:\n      list:\n        response_fields:\n{fields}"
        )
    };
    let not_an_object = GOOD.replace(r#"{ "id": id }"#, r#"$merge([{ "id": id }, {}])"#);
    let with_get = GOOD.replace(
        "    list: { path: /users, records: data }",
        "    list: { path: /users, records: data }\n    get: { path: \"/users/{{id}}\", records: data }",
    ) + "      get:\n        resource: users.get\n        response_fields:\n          title: title\n";
    assert_eq!(
        load_errors(&[
            integration("example", GOOD),
            integration(
                "a",
                &child("          shoe_size: size\n          title: title\n")
            ),
            integration("b", &child("          title: \"title &\"\n")),
        ]),
        [
            "mappings/a.yaml:8: unified.user-directory.users.list.response_fields.shoe_size: `shoe_size` is not a field of the unified model",
            "mappings/b.yaml:8: unified.user-directory.users.list.response_fields.title: JSONata does not compile: Unexpected end of expression (S0207)",
        ]
    );
    assert_eq!(
        load_errors(&[
            integration("example", &not_an_object),
            integration("c", &child("          title: title\n")),
        ]),
        [
            "mappings/c.yaml:8: unified.user-directory.users.list.response_fields: cannot change the entries of the response mapping: it does not end in an object constructor `{…}`",
        ]
    );
    assert_eq!(
        load_errors(&[integration("d", &with_get)]),
        [
            "mappings/d.yaml:20: unified.user-directory.users.get.response_fields.title: a get without a `response_mapping` of its own maps as its list does: put `response_fields` on the list",
        ]
    );
}

#[test]
fn extends_errors_name_the_line() {
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration("a", "extends: b\n"),
            integration("b", "extends: a\n"),
            integration("c", "name: C\nextends: nowhere\n"),
            integration("d", "name: D\n"),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "mappings/a.yaml:1: extends: `extends` loops: a -> b -> a",
            "mappings/b.yaml:1: extends: `extends` loops: b -> a -> b",
            "mappings/c.yaml:2: extends: extends `nowhere`, which is not an integration file here",
            "mappings/d.yaml:1: docs: is required (here or in the file this one extends)",
            "mappings/d.yaml:1: base_url: is required (here or in the file this one extends)",
            "mappings/d.yaml:1: auth: is required (here or in the file this one extends)",
            "mappings/d.yaml:1: resources: is required (here or in the file this one extends)",
        ]
    );
}

#[test]
fn an_abstract_base_is_not_served_and_its_children_are() {
    let base = r#"abstract: true
docs: https://example.test/docs
auth: { kind: bearer, token: "{{context.token}}" }
errors: { when: "ok = false" }
"#;
    let child = r#"extends: family
name: Family Product
base_url: https://product.example.test
resources:
  users:
    list: { path: /users, records: data }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id }
"#;
    let catalog = Catalog::from_sources(
        &[model()],
        &[integration("family", base), integration("product", child)],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        catalog.integrations.keys().collect::<Vec<_>>(),
        vec!["product"]
    );
    let product = &catalog.integrations["product"];
    assert!(product.errors.is_some());
    assert_eq!(product.docs, "https://example.test/docs");
    // Not inherited: a child that is itself incomplete is reported, not skipped.
    let incomplete = "extends: family\nname: Broken\n";
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration("family", base),
            integration("broken", incomplete),
        ],
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains("mappings/broken.yaml:1: base_url"),
        "{errors}"
    );
}

#[test]
fn format_v2_mistakes_are_reported_with_file_line_and_path() {
    let broken = r#"name: Broken v2
docs: https://example.test/docs
base_url: "https://example.test"
auth:
  kind: token_exchange
  token: access_token
  value: "Bearer"
rate_limit:
  pace: { requests: 0, seconds: 1 }
pagination: { style: page, page_param: page, send_in: body }
resources:
  users:
    list: { path: /users, records: data }
    get: { path: /users/me, records: "$" }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        follow_up:
          detail: { resource: users.get, id: login }
        response_mapping: |
          { "id": id }
variants:
  - name: broken
    when: "version = "
    with:
      base_url: "https://other.example.test"
"#;
    let errors = Catalog::from_sources(&[model()], &[integration("broken", broken)])
        .unwrap_err()
        .to_string();
    for expected in [
        "mappings/broken.yaml:5: auth: auth kind `token_exchange` needs `exchange`",
        "mappings/broken.yaml:9: rate_limit.pace: needs `requests` of at least 1",
        "mappings/broken.yaml:10: resources.users.list.pagination.send_in: `send_in: body` needs the resource's `body` expression",
        "mappings/broken.yaml:21: unified.user-directory.users.list.follow_up.detail.resource: `users.get` never reads `{{id}}`",
        "mappings/broken.yaml:26: variants[0].when: JSONata does not compile",
    ] {
        assert!(
            errors.contains(expected),
            "missing `{expected}` in:\n{errors}"
        );
    }
}

#[test]
fn hmac_signature_blocks_are_checked_with_file_and_line() {
    let broken = r#"name: Signed
docs: https://example.test/docs
base_url: https://api.example.test
auth:
  kind: hmac_signature
  secret: "{{context.secret_key}}"
  string_to_sign: "{{date}}\n{{verb}}"
  value: "HMAC {{context.key_id}}"
  token_url: https://example.test/token
pagination: { style: none }
resources:
  users:
    list: { path: /users, records: data }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id }
"#;
    let errors = Catalog::from_sources(&[model()], &[integration("signed", broken)])
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains(
            "mappings/signed.yaml:9: auth.token_url: is not used by auth kind `hmac_signature`"
        ),
        "{errors}"
    );
    let fixed = broken.replace("  token_url: https://example.test/token\n", "");
    let errors = Catalog::from_sources(&[model()], &[integration("signed", &fixed)])
        .unwrap_err()
        .to_string();
    for expected in [
        "mappings/signed.yaml:7: auth.string_to_sign: bad template: `{{verb}}`: templates can only read `context.<key>`",
        "mappings/signed.yaml:8: auth.value: must read `{{signature}}` exactly once",
    ] {
        assert!(
            errors.contains(expected),
            "missing `{expected}` in:\n{errors}"
        );
    }
}

#[test]
fn omitted_fields_must_be_dotted_paths() {
    let text = GOOD.replacen(
        "records: data }",
        "records: data, omit: [api_key, \"credentials..password\"] }",
        1,
    );
    assert_ne!(text, GOOD, "GOOD has a resource with `records`");
    let errors = Catalog::from_sources(&[model()], &[integration("omits", &text)])
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains(
            "omit[1]: must be a dotted field path such as `api_key` or `credentials.password`"
        ),
        "{errors}"
    );
}

/// The context values an error answer is cleaned of: what the auth's credential templates read
/// (not its token URL or client id), and of headers and query parameters those named as
/// credentials (a tenant or an organization id stays readable in a provider's message).
#[test]
fn credential_context_paths_are_the_auth_secrets_and_the_named_ones() {
    let text = r#"name: Example
docs: https://example.test/docs
base_url: "https://{{context.subdomain}}.example.test/api"
headers:
  xero-tenant-id: "{{context.tenant_id}}"
  X-Api-Password: "{{context.pw}}"
  X-Customer: "{{context.customer.secret_key}}"
auth:
  kind: oauth2_refresh_token
  token_url: "https://{{context.subdomain}}.example.test/token"
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}"
  refresh_token: "{{context.refresh_token}}"
resources:
  users:
    list:
      path: /users
      records: data
      query: { organization: "{{context.org}}", app_key: "{{context.app}}" }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;
    let catalog = Catalog::from_sources(&[model()], &[integration("example", text)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let paths: Vec<String> = catalog.integrations["example"]
        .credential_context_paths()
        .into_iter()
        .map(|path| path.join("."))
        .collect();
    assert_eq!(
        paths,
        [
            "app",
            "client_secret",
            "customer.secret_key",
            "pw",
            "refresh_token"
        ]
    );
}

#[test]
fn a_resource_sends_its_own_headers_over_the_files() {
    let text = r#"name: Example
docs: https://example.test/docs
base_url: "https://example.test/api"
headers:
  Accept: application/json
  x-scope: public
auth: { kind: bearer, token: "{{context.token}}" }
resources:
  users:
    list: { path: /users, records: data }
  groups:
    list:
      path: /groups
      records: data
      headers: { X-Scope: beta, X-Tenant: "{{context.tenant}}", X-Api-Key: "{{context.group_key}}" }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;
    let catalog = Catalog::from_sources(&[model()], &[integration("example", text)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let example = &catalog.integrations["example"];
    let context = serde_json::json!({"token": "t", "tenant": "acme", "group_key": "k"});
    let headers_of = |resource: &str| {
        let request = render_request(
            example,
            &example.resources[resource],
            Vars::context(&context),
            None,
        )
        .unwrap();
        let mut headers: Vec<String> = request
            .headers
            .iter()
            .map(|(name, value)| format!("{name}: {value}"))
            .chain(
                request
                    .secret_headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {} (secret)", value.expose())),
            )
            .collect();
        headers.sort();
        headers
    };
    assert_eq!(
        headers_of("users.list"),
        ["Accept: application/json", "x-scope: public"]
    );
    // The same name in another case replaces the file's header; the others are added.
    assert_eq!(
        headers_of("groups.list"),
        [
            "Accept: application/json",
            "X-Api-Key: k (secret)",
            "X-Scope: beta",
            "X-Tenant: acme (secret)"
        ]
    );
    assert_eq!(
        example.context_keys().into_iter().collect::<Vec<_>>(),
        ["group_key", "tenant", "token"]
    );
    let credentials: Vec<String> = example
        .credential_context_paths()
        .into_iter()
        .map(|path| path.join("."))
        .collect();
    assert_eq!(credentials, ["group_key", "token"]);

    let bad_name = text.replace("X-Scope: beta", "\"X Scope\": beta");
    let errors = Catalog::from_sources(&[model()], &[integration("bad", &bad_name)]).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/bad.yaml:15: resources.groups.list.headers.X Scope: is not a valid HTTP header name"
        ]
    );
}

/// A resource may send a static credential of its own (`auth`) in place of the file's: its
/// calls carry it, the others the file's; its values are the account's secrets; a token kind,
/// a signature or `rejected` there is an error naming the field.
#[test]
fn a_resource_may_send_a_credential_of_its_own() {
    let text = r#"name: Example
docs: https://example.test/docs
base_url: "https://{{context.realm}}.example.test/v1"
auth: { kind: header, header: Authorization, value: "QB-USER-TOKEN {{context.user_token}}" }
resources:
  users:
    list: { path: /users, records: data }
  groups:
    list:
      base_url: "https://{{context.realm}}.example.test/scim/v2"
      path: /Groups
      records: Resources
      auth: { kind: bearer, token: "{{context.scim_token?}}" }
  teams:
    list:
      path: /teams
      records: data
      auth: { kind: basic, username: "{{context.login}}", password: "{{context.password}}" }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;
    let catalog = Catalog::from_sources(&[model()], &[integration("example", text)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let example = &catalog.integrations["example"];
    let context = serde_json::json!({
        "realm": "acme", "user_token": "u-token", "scim_token": "s-token",
        "login": "ann", "password": "pw"
    });
    let sent =
        |resource: &str| match render_resource_credential(&example.resources[resource], &context)
            .unwrap()
        {
            None => "the file's".to_owned(),
            Some(Credential::Header { name, value }) => format!("{name}: {}", value.expose()),
            Some(other) => format!("{other:?}"),
        };
    assert_eq!(sent("users.list"), "the file's");
    assert_eq!(sent("groups.list"), "Authorization: Bearer s-token");
    assert_eq!(sent("teams.list"), "Authorization: Basic YW5uOnB3");
    // `?`: an account without the SCIM token still loads and lists; only the groups call
    // would need it.
    assert_eq!(
        example.context_keys().into_iter().collect::<Vec<_>>(),
        ["login", "password", "realm", "user_token"]
    );
    let credentials: Vec<String> = example
        .credential_context_paths()
        .into_iter()
        .map(|path| path.join("."))
        .collect();
    assert_eq!(
        credentials,
        ["login", "password", "scim_token", "user_token"]
    );

    let errors_of = |text: &str| load_errors(&[integration("bad", text)]);
    let token_kind = text.replace(
        r#"auth: { kind: bearer, token: "{{context.scim_token?}}" }"#,
        r#"auth: { kind: oauth2_client_credentials, token_url: "https://example.test/token", client_id: a, client_secret: "{{context.s}}" }"#,
    );
    assert_eq!(
        errors_of(&token_kind),
        [
            "mappings/bad.yaml:13: resources.groups.list.auth: a resource's own auth is `header`, `query`, `basic`, `bearer` or `none`, not `oauth2_client_credentials`: tokens, signatures and body credentials are the file's `auth`"
        ]
    );
    let rejected = text.replace(
        r#"token: "{{context.scim_token?}}" }"#,
        r#"token: "{{context.scim_token?}}", rejected: "$status = 403" }"#,
    );
    assert_eq!(
        errors_of(&rejected),
        [
            "mappings/bad.yaml:13: resources.groups.list.auth.rejected: is the file's: `auth.rejected` says for every call when an answer refuses a credential"
        ]
    );
    let stray = text.replace(
        r#"username: "{{context.login}}""#,
        r#"username: "{{context.login}}", token: "{{context.t}}""#,
    );
    assert_eq!(
        errors_of(&stray),
        ["mappings/bad.yaml:18: resources.teams.list.auth.token: is not used by auth kind `basic`"]
    );
}

/// A resource may call another host (`base_url`): its URL is the resource's own, whatever the
/// account's base URL, an account value may not move its host, and its host must be fixed text.
#[test]
fn a_resource_may_have_a_base_url_of_its_own() {
    let text = r#"name: Example
docs: https://example.test/docs
base_url: "https://{{context.subdomain}}.api.example.test/v4"
auth: { kind: bearer, token: "{{context.token}}" }
resources:
  users:
    list: { path: /users, records: data }
  exports:
    list:
      base_url: "https://{{context.subdomain}}.example.biz/api/v3"
      path: /exports/groups.json
      records: data
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{ "id": id }'
"#;
    let catalog = Catalog::from_sources(&[model()], &[integration("example", text)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let example = &catalog.integrations["example"];
    let context = serde_json::json!({"subdomain": "acme", "token": "t"});
    let url_of = |resource: &str, own_base: Option<&str>| {
        render_request(
            example,
            &example.resources[resource],
            Vars::context(&context),
            own_base,
        )
        .unwrap()
        .url
    };
    assert_eq!(
        url_of("users.list", None),
        "https://acme.api.example.test/v4/users"
    );
    assert_eq!(
        url_of("exports.list", None),
        "https://acme.example.biz/api/v3/exports/groups.json"
    );
    // An account's own base URL replaces the file's, not a resource's own.
    assert_eq!(
        url_of("users.list", Some("https://eu.example.test/v4")),
        "https://eu.example.test/v4/users"
    );
    assert_eq!(
        url_of("exports.list", Some("https://eu.example.test/v4")),
        "https://acme.example.biz/api/v3/exports/groups.json"
    );
    assert_eq!(
        example.url_problems(&serde_json::json!({"subdomain": "evil.test/", "token": "t"}), true),
        ["`context.subdomain` would change the host the mapping names: only letters, digits, `-` and `.` of a host name may stand there".to_owned()]
    );
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration(
                "a",
                &text.replace(
                    "https://{{context.subdomain}}.example.biz/api/v3",
                    "{{context.v3_url}}",
                ),
            ),
            integration(
                "b",
                &text.replace(
                    "https://{{context.subdomain}}.example.biz/api/v3",
                    "/api/v3",
                ),
            ),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let refused = "must be an absolute http(s) URL whose host is fixed text (a part of it may read the context, as `https://{{context.subdomain}}.example.com/api`)";
    assert_eq!(
        lines,
        [
            format!("mappings/a.yaml:10: resources.exports.list.base_url: {refused}"),
            format!("mappings/b.yaml:10: resources.exports.list.base_url: {refused}"),
        ]
    );
}

/// `opt_in_fields` names fields the response mapping builds, each with an account-context key.
#[test]
fn opt_in_fields_name_built_fields_and_context_keys() {
    let with = |fields: &str| {
        GOOD.replacen(
            "        resource: users.list\n",
            &format!("        resource: users.list\n        opt_in_fields: {fields}\n"),
            1,
        )
        .replace(
            r#"{ "id": id }"#,
            r#"{ "id": id, "groups": $context.read_groups ? groups }"#,
        )
    };
    let catalog = Catalog::from_sources(
        &[model()],
        &[integration("ok", &with("{ groups: read_groups }"))],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        catalog.integrations["ok"]
            .unified
            .values()
            .next()
            .unwrap()
            .opt_in_fields,
        [("groups".to_owned(), "read_groups".to_owned())].into()
    );
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration("a", &with("{ title: read_titles }")),
            integration("b", &with("{ groups: \"read groups\" }")),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/a.yaml:14: unified.user-directory.users.list.opt_in_fields.title: `title` is not a field the response mapping builds",
            "mappings/b.yaml:14: unified.user-directory.users.list.opt_in_fields.groups: must name an account-context key, such as `read_groups`",
        ]
    );
}

#[test]
fn passes_are_plain_distinct_parameter_sets_apart_from_the_query() {
    let with = |passes: &str| {
        GOOD.replacen(
            "    list: { path: /users, records: data }\n",
            &format!(
                "    list:\n      path: /users\n      records: data\n      query: {{ type: person }}\n      passes:\n{passes}"
            ),
            1,
        )
    };
    let good = with("        - query: { status: active }\n        - query: {}\n");
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &good)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let passes = &catalog.integrations["parts"].resources["users.list"].passes;
    assert_eq!(
        passes
            .iter()
            .map(|pass| pass.query.clone())
            .collect::<Vec<_>>(),
        vec![vec![("status".to_owned(), "active".to_owned())], vec![]]
    );
    assert!(
        passes
            .iter()
            .all(|pass| pass.name.is_none() && pass.path.is_none())
    );
    let named = with(
        "        - name: members\n        - name: invitations\n          path: \"/orgs/{{context.org}}/invites\"\n          query: { state: pending }\n          records: invites\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &named)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let passes = &catalog.integrations["parts"].resources["users.list"].passes;
    assert_eq!(
        passes
            .iter()
            .map(|pass| (pass.name.as_deref(), pass.path.is_some()))
            .collect::<Vec<_>>(),
        vec![(Some("members"), false), (Some("invitations"), true)]
    );
    let invites = passes[1].records.as_ref().map(|(_, path)| path.clone());
    assert_eq!(invites, Some(Some(vec!["invites".to_owned()])));
    // A pass paged its own way: the members keep the file's cursor, the invitations none.
    let paged = with(
        "        - name: members\n        - name: invitations\n          path: /invites\n          pagination: { style: none }\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &paged)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let resource = &catalog.integrations["parts"].resources["users.list"];
    assert_eq!(
        [None, Some(0), Some(1)].map(|pass| resource.pagination_of(pass).strategy.style.name()),
        ["cursor", "cursor", "none"]
    );
    // A pass that omits fields of its own: its pages alone are parsed whole.
    let omitting = with(
        "        - name: members\n        - name: invitations\n          path: /invites\n          omit: [code, links.accept]\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &omitting)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let resource = &catalog.integrations["parts"].resources["users.list"];
    assert_eq!(
        [None, Some(0), Some(1)].map(|pass| resource.omit_of(pass).cloned().collect::<Vec<_>>()),
        [
            vec![],
            vec![],
            vec![
                vec!["code".to_owned()],
                vec!["links".to_owned(), "accept".to_owned()]
            ]
        ]
    );
    assert_eq!(
        [None, Some(0), Some(1)].map(|pass| resource.pass_reads_whole(pass)),
        [false, false, true]
    );
    // A pass that leaves out one of the resource's parameters and sends headers of its own:
    // alike in path and parameters to the first, different in what it sends.
    let own_headers = with(
        "        - name: members\n        - name: invitations\n          query: { type: null }\n          headers: { Accept: application/vnd.invites+json, Range: null }\n",
    )
    .replace(
        "resources:\n",
        "headers: { Accept: application/json, range: \"email ..\" }\nresources:\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &own_headers)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let passes = &catalog.integrations["parts"].resources["users.list"].passes;
    assert_eq!(
        passes
            .iter()
            .map(|pass| (pass.drop_query.clone(), pass.headers.clone()))
            .collect::<Vec<_>>(),
        vec![
            (vec![], vec![]),
            (
                vec!["type".to_owned()],
                vec![
                    (
                        "Accept".to_owned(),
                        Some("application/vnd.invites+json".to_owned())
                    ),
                    ("Range".to_owned(), None)
                ]
            )
        ]
    );
    let cases = [
        (
            "        - query: { status: active }\n",
            "mappings/parts.yaml:13: resources.users.list.passes: needs two passes or more (the parameters of a single pass belong in `query`)",
        ),
        (
            "        - {}\n        - query: { status: null }\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].query.status: is `null`, which leaves one of the resource's `query` out of this pass, but the resource's `query` has no such parameter",
        ),
        (
            "        - {}\n        - headers: { Range: null }\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].headers.Range: is `null`, which sends no header of that name on this pass, but neither the file's nor the resource's `headers` has one",
        ),
        (
            "        - {}\n        - headers: { Accept: \"{{context.version}}\" }\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].headers.Accept: a pass's headers are plain values, not templates",
        ),
        (
            "        - {}\n        - query: { status: active }\n          omit: [\"links..accept\"]\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].omit[0]: must be a dotted field path such as `api_key` or `credentials.password`",
        ),
        (
            "        - headers: { Accept: a }\n        - headers: { Accept: a }\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1]: repeats an earlier pass: the same users would be listed twice",
        ),
        (
            "        - query: { status: active }\n        - query: { status: \"{{context.status}}\" }\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].query.status: a pass's parameters are plain values, not templates",
        ),
        (
            "        - query: { type: robot }\n        - query: {}\n",
            "mappings/parts.yaml:13: resources.users.list.passes[0].query.type: is also set in the resource's `query`; a parameter is either the same for every pass or a pass's own",
        ),
        (
            "        - query: { status: active }\n        - query: { status: active }\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1]: repeats an earlier pass: the same users would be listed twice",
        ),
        (
            "        - query: { status: active }\n        - status: inactive\n",
            "unknown field `status`",
        ),
        (
            "        - name: members\n        - name: members\n          path: /invites\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].name: is an earlier pass's name; `$pass` could not tell them apart",
        ),
        (
            "        - {}\n        - path: /users\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1]: repeats an earlier pass: the same users would be listed twice",
        ),
        (
            "        - {}\n        - path: invites\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].path: must start with `/`",
        ),
        (
            "        - {}\n        - path: \"/invites/{{id}}\"\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].path: a list's pass cannot read `{{id}}` (only a pass `over` a catalog, whose records give it)",
        ),
        (
            "        - {}\n        - path: /invites\n          records: \"invites[\"\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].records:",
        ),
        (
            "        - {}\n        - path: \"/invites/{{secret}}\"\n",
            "mappings/parts.yaml:14: resources.users.list.passes[1].path: bad template",
        ),
        (
            "        - {}\n        - path: /invites\n          pagination: { style: cursor, cursor_param: c, next_cursor: n, continue_path: /more }\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].pagination.continue_path: a pass's pages are walked at its own path; `continue_path` is the resource's",
        ),
        (
            "        - {}\n        - path: /invites\n          pagination: { style: page }\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].pagination: pagination style `page` needs `page_param`",
        ),
        (
            "        - {}\n        - path: /invites\n          pagination: { style: none, send_in: body }\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].pagination.send_in: `send_in: body` needs the resource's `body` expression",
        ),
        (
            "        - only_with: read_members\n        - path: /invites\n",
            "mappings/parts.yaml:13: resources.users.list.passes[0].only_with: the first pass is every account's: a pass made only for some accounts comes after it",
        ),
        (
            "        - {}\n        - path: /invites\n          only_with: \"read invitations\"\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].only_with: must name an account-context key, such as `read_invitations`",
        ),
        (
            "        - {}\n        - path: /robots\n          method: GET\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].method: is the resource's method already; a pass names only a method of its own",
        ),
        (
            "        - {}\n        - path: /robots\n          method: PUT\n",
            "unknown variant `PUT`",
        ),
    ];
    for (passes, expected) in cases {
        let errors = Catalog::from_sources(&[model()], &[integration("parts", &with(passes))])
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains(expected),
            "missing `{expected}` in:\n{errors}"
        );
    }
}

/// A pass `over` a catalog: after the first pass, named, its own path reading `{{id}}`, its
/// catalog another plain list of the file; `$over` is no follow-up's name.
#[test]
fn a_pass_over_a_catalog_names_a_plain_list_of_the_file() {
    let with = |passes: &str, catalog: &str| {
        GOOD.replacen(
            "    list: { path: /users, records: data }\n",
            &format!(
                "    list:\n      path: /users\n      records: data\n      passes:\n{passes}  merchants:\n{catalog}"
            ),
            1,
        )
    };
    let plain = "    list: { path: /merchants, records: data }\n";
    let over = "        - {}\n        - name: merchant_users\n          path: \"/merchants/{{id}}/users\"\n          over: { resource: merchants.list, id: code, not_found: skip }\n";
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &with(over, plain))])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let passes = &catalog.integrations["parts"].resources["users.list"].passes;
    let compiled = passes[1]
        .over
        .as_ref()
        .expect("the second pass is over a catalog");
    assert_eq!(
        (
            compiled.catalog.resource.as_str(),
            compiled.catalog.name.as_str(),
            compiled.catalog.walk,
            compiled.skip_not_found
        ),
        ("merchants.list", "merchant_users", true, true)
    );
    assert!(passes[0].over.is_none());
    // The record's id may go in a parameter or a header instead, the pass at the list's path.
    // A pass that differs from the first by the id's header alone is a part of its own.
    let by_header = "        - {}\n        - name: subaccounts\n          headers: { X-On-Behalf-Of: \"{{id}}\" }\n          over: { resource: merchants.list, id: code }\n";
    Catalog::from_sources(&[model()], &[integration("parts", &with(by_header, plain))])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let by_query = "        - {}\n        - name: sub_teams\n          query: { team_id: \"{{id}}\", view: all }\n          headers: { X-On-Behalf-Of: \"{{id}}\" }\n          over: { resource: merchants.list, id: code }\n";
    let catalog =
        Catalog::from_sources(&[model()], &[integration("parts", &with(by_query, plain))])
            .unwrap_or_else(|errors| panic!("{errors}"));
    let pass = &catalog.integrations["parts"].resources["users.list"].passes[1];
    let compiled = pass
        .over
        .as_ref()
        .expect("the second pass is over a catalog");
    assert_eq!(
        (
            &compiled.id_params,
            &compiled.id_headers,
            &pass.query,
            pass.path.is_none()
        ),
        (
            &vec!["team_id".to_owned()],
            &vec!["X-On-Behalf-Of".to_owned()],
            &vec![("view".to_owned(), "all".to_owned())],
            true
        )
    );
    let cases = [
        (
            over.replace("merchants.list", "merchants.lists"),
            plain,
            "mappings/parts.yaml:15: resources.users.list.passes[1].over.resource: names `merchants.lists`, which is not a `resource.method` under `resources`",
        ),
        (
            over.replace("resource: merchants.list", "resource: users.list"),
            plain,
            "mappings/parts.yaml:15: resources.users.list.passes[1].over.resource: is the list this pass belongs to",
        ),
        (
            over.to_owned(),
            "    list:\n      path: /merchants\n      records: data\n      passes: [{ query: { a: b } }, { query: { a: c } }]\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].over.resource: names `merchants.list`, a list served in parts; a catalog is one list",
        ),
        (
            over.to_owned(),
            "    list: { path: \"/merchants/{{id}}\", records: data }\n",
            "mappings/parts.yaml:15: resources.users.list.passes[1].over.resource: names `merchants.list`, whose path reads `{{id}}`; a catalog is read with nothing to fill in",
        ),
        (
            over.replace("/merchants/{{id}}/users", "/merchant-users"),
            plain,
            "mappings/parts.yaml:15: resources.users.list.passes[1].over: sends no `{{id}}` (the catalog record's id) in the pass's path, a query parameter or a header: every record's walk would ask the same list",
        ),
        (
            over.replace("          path:", "          query: { merchant: \"{{id}} \" }\n          path:").replace("/merchants/{{id}}/users", "/merchant-users"),
            plain,
            "mappings/parts.yaml:14: resources.users.list.passes[1].query.merchant: a pass's parameters are plain values, not templates (a pass `over` a catalog may send `{{id}}`, its record's id)",
        ),
        (
            over.replace("        - name: merchant_users\n", "        - path: /x\n").replacen("          path: \"/merchants", "        - path: \"/merchants", 1),
            plain,
            "mappings/parts.yaml:15: resources.users.list.passes[2].over: needs the pass's `name`: its records tell their part by `$pass`, and its catalog is kept by it",
        ),
        (
            "        - name: merchant_users\n          path: \"/merchants/{{id}}/users\"\n          over: { resource: merchants.list, id: code }\n        - {}\n".to_owned(),
            plain,
            "mappings/parts.yaml:14: resources.users.list.passes[0].over: the first pass is the list itself: a pass over a catalog comes after it",
        ),
        (
            "        - {}\n        - name: merchant_users\n          over: { resource: merchants.list, id: code }\n".to_owned(),
            plain,
            "mappings/parts.yaml:14: resources.users.list.passes[1].over: sends no `{{id}}` (the catalog record's id) in the pass's path, a query parameter or a header: every record's walk would ask the same list",
        ),
        (
            over.replace("id: code", "id: \"code[\""),
            plain,
            "mappings/parts.yaml:15: resources.users.list.passes[1].over.id:",
        ),
        (
            over.replace("not_found: skip", "per: page"),
            plain,
            "unknown field `per`",
        ),
        (
            "        - {}\n        - name: x\n          path: \"/x/{{id}}\"\n".to_owned(),
            plain,
            "mappings/parts.yaml:14: resources.users.list.passes[1].path: a list's pass cannot read `{{id}}` (only a pass `over` a catalog, whose records give it)",
        ),
    ];
    for (passes, catalog, expected) in cases {
        let errors =
            Catalog::from_sources(&[model()], &[integration("parts", &with(&passes, catalog))])
                .unwrap_err()
                .to_string();
        assert!(
            errors.contains(expected),
            "missing `{expected}` in:\n{errors}"
        );
    }
}

/// `pagination.received` is read by the styles that count records, and compiled; a cursor
/// walk counts nothing and refuses it. A pass's `records` reads `$over` only over a catalog.
#[test]
fn received_belongs_to_the_styles_that_count_records() {
    let offset = GOOD.replacen(
        "pagination: { style: cursor, cursor_param: cursor, next_cursor: meta.next, page_size_param: limit }",
        "pagination: { style: offset, offset_param: offset, page_size_param: limit, received: \"$count(data)\" }",
        1,
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("counted", &offset)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let resource = &catalog.integrations["counted"].resources["users.list"];
    assert!(resource.pagination.received.is_some());
    assert!(!resource.counts_kept_records(None));
    let cursor = GOOD.replacen(
        "page_size_param: limit }",
        "page_size_param: limit, received: \"$count(data)\" }",
        1,
    );
    assert_eq!(
        load_errors(&[integration("counted", &cursor)]),
        [
            "mappings/counted.yaml:5: resources.users.list.pagination.received: is not used by pagination style `cursor`"
        ]
    );
    let filtered = offset
        .replacen(", received: \"$count(data)\"", "", 1)
        .replacen("records: data }", "records: \"data[active]\" }", 1);
    let catalog = Catalog::from_sources(&[model()], &[integration("counted", &filtered)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(catalog.integrations["counted"].resources["users.list"].counts_kept_records(None));
    // Reshaping keeps every record: nothing to say.
    let reshaped = filtered.replacen("\"data[active]\"", "\"$append([], data)\"", 1);
    let catalog = Catalog::from_sources(&[model()], &[integration("counted", &reshaped)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(!catalog.integrations["counted"].resources["users.list"].counts_kept_records(None));
    let over_without_catalog = GOOD.replacen(
        "    list: { path: /users, records: data }\n",
        "    list:\n      path: /users\n      records: data\n      passes:\n        - {}\n        - path: /guests\n          records: \"data[org = $over.id]\"\n",
        1,
    );
    assert_eq!(
        load_errors(&[integration("counted", &over_without_catalog)]),
        [
            "mappings/counted.yaml:14: resources.users.list.passes[1].records: reads `$over`, which only a pass over a catalog has: it would always be undefined"
        ]
    );
}

/// A pass may send another method than its resource; a GET pass writes no body, so it cannot
/// walk pages whose position the body carries.
#[test]
fn a_get_pass_beside_a_post_list_walks_its_own_pages() {
    let with = |pass: &str| {
        GOOD.replacen(
            "    list: { path: /users, records: data }\n",
            &format!(
                "    list:\n      method: POST\n      path: /users\n      records: data\n      body: '{{\"cursor\": cursor}}'\n      pagination: {{ style: cursor, cursor_param: cursor, next_cursor: meta.next, send_in: body }}\n      passes:\n        - {{}}\n        - path: /robots\n          method: GET\n{pass}"
            ),
            1,
        )
    };
    let catalog = Catalog::from_sources(
        &[model()],
        &[integration(
            "parts",
            &with("          pagination: { style: none }\n"),
        )],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let passes = &catalog.integrations["parts"].resources["users.list"].passes;
    assert_eq!(
        passes.iter().map(|pass| pass.method).collect::<Vec<_>>(),
        [None, Some(unigate_mapping::HttpMethod::Get)]
    );
    assert_eq!(
        load_errors(&[integration("parts", &with(""))]),
        [
            "mappings/parts.yaml:17: resources.users.list.passes[1].method: a GET pass sends no body, so its pages cannot be placed in one (`send_in: body`): give it a `pagination` of its own"
        ]
    );
}

/// A get's `pass_ids` name the list's named passes, each with a prefix of its own.
#[test]
fn pass_ids_name_the_lists_passes_with_distinct_prefixes() {
    let with = |pass_ids: &str, method: &str| {
        GOOD.replacen(
            "    list: { path: /users, records: data }\n",
            "    list:\n      path: /users\n      records: data\n      passes:\n        - name: members\n        - name: invitations\n          path: /invites\n        - name: robots\n          path: /robots\n    get: { path: \"/users/{{id}}\", records: data }\n",
            1,
        )
        .replacen(
            "          { \"id\": id }\n",
            &format!(
                "          {{ \"id\": id }}\n      get:\n        resource: users.get\n{}",
                match method {
                    "get" => format!("        pass_ids: {pass_ids}\n"),
                    _ => String::new(),
                }
            ),
            1,
        )
        .replacen(
            "        resource: users.list\n",
            &match method {
                "list" => format!("        resource: users.list\n        pass_ids: {pass_ids}\n"),
                _ => "        resource: users.list\n".to_owned(),
            },
            1,
        )
    };
    let good = with(r#"{ invitations: "invitation:", robots: "robot:" }"#, "get");
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &good)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let get = &catalog.integrations["parts"].unified
        [&unigate_mapping::MethodKey::new("user-directory", "users", unigate_mapping::Method::Get)];
    assert_eq!(
        get.pass_of_id("robot:7").map(|pass| pass.pass.as_str()),
        Some("robots")
    );
    assert_eq!(
        get.pass_of_id("invitation:7")
            .map(|pass| pass.pass.as_str()),
        Some("invitations")
    );
    assert_eq!(get.pass_of_id("7"), None);
    let cases = [
        (
            with(r#"{ guests: "guest:" }"#, "get"),
            "mappings/parts.yaml:27: unified.user-directory.users.get.pass_ids.guests: the list's resource has no pass named `guests` (its named passes: members, invitations, robots)",
        ),
        (
            with(r#"{ invitations: "" }"#, "get"),
            "mappings/parts.yaml:27: unified.user-directory.users.get.pass_ids.invitations: an id prefix must not be empty: every id would match",
        ),
        (
            with(r#"{ invitations: "in:", robots: "in:robot:" }"#, "get"),
            "mappings/parts.yaml:27: unified.user-directory.users.get.pass_ids.robots: `in:robot:` and pass `invitations`'s `in:` overlap: an id would belong to both",
        ),
        (
            with(r#"{ invitations: "invitation:" }"#, "list"),
            "mappings/parts.yaml:23: unified.user-directory.users.list.pass_ids.invitations: applies to `get` only: the list walks its passes itself",
        ),
        (
            with(r#"{ robots: "robot:" }"#, "get")
                + "        not_found_passes: [invitations, guests, robots, invitations]\n",
            "mappings/parts.yaml:28: unified.user-directory.users.get.not_found_passes[1]: the list's resource has no pass named `guests` (its named passes: members, invitations, robots)",
        ),
    ];
    for (text, expected) in cases {
        let errors = load_errors(&[integration("parts", &text)]);
        let expected: &[&str] = match text.contains("not_found_passes") {
            false => &[expected],
            true => &[
                expected,
                "mappings/parts.yaml:28: unified.user-directory.users.get.not_found_passes[2]: `robots` is in `pass_ids`: its ids are found by their prefix, never asked of the get's resource",
                "mappings/parts.yaml:28: unified.user-directory.users.get.not_found_passes[3]: `invitations` is named twice",
            ],
        };
        assert_eq!(errors, expected, "{text}");
    }
}

/// Which way each kind of Microsoft 365 account gets its token: the variant its context selects
/// (the files built on microsoft-365 inherit the same choice).
#[test]
fn a_microsoft_365_account_names_its_app_to_get_renewable_tokens() {
    use unigate_mapping::{Auth, Grant, TokenSource};
    let catalog = Catalog::load_dir(&repo_mappings()).unwrap_or_else(|errors| panic!("{errors}"));
    let grant = |integration: &str, context: serde_json::Value| match &catalog.integrations
        [integration]
        .for_context(&context)
        .auth
    {
        Auth::Token(token) => match &token.source {
            TokenSource::OAuth2(oauth) => Some(oauth.grant),
            TokenSource::Exchange(_) => None,
        },
        _ => None,
    };
    let app = serde_json::json!({"tenant_id": "contoso", "client_id": "app", "client_secret": "s"});
    let mut delegated = app.clone();
    delegated["refresh_token"] = "r".into();
    for integration in ["microsoft-365", "microsoft-teams"] {
        assert_eq!(
            grant(integration, app.clone()),
            Some(Grant::ClientCredentials)
        );
        assert_eq!(
            grant(integration, delegated.clone()),
            Some(Grant::RefreshToken)
        );
    }
    // A pasted token is sent as it is (and cannot be renewed).
    assert_eq!(
        grant("microsoft-365", serde_json::json!({"access_token": "t"})),
        None
    );
}

/// A Box server app (Client Credentials Grant) names its enterprise; a user's OAuth app keeps its
/// refresh token.
#[test]
fn a_box_account_with_an_enterprise_id_uses_the_client_credentials_grant() {
    use unigate_mapping::{Auth, Grant, TokenSource};
    let catalog = Catalog::load_dir(&repo_mappings()).unwrap_or_else(|errors| panic!("{errors}"));
    let grant = |context: serde_json::Value| match &catalog.integrations["box"]
        .for_context(&context)
        .auth
    {
        Auth::Token(token) => match &token.source {
            TokenSource::OAuth2(oauth) => Some((oauth.grant, oauth.token_params.len())),
            TokenSource::Exchange(_) => None,
        },
        _ => None,
    };
    let server_app =
        serde_json::json!({"client_id": "c", "client_secret": "s", "enterprise_id": "123"});
    assert_eq!(grant(server_app), Some((Grant::ClientCredentials, 2)));
    let user_app =
        serde_json::json!({"client_id": "c", "client_secret": "s", "refresh_token": "r"});
    assert_eq!(grant(user_app), Some((Grant::RefreshToken, 0)));
}

/// A follow-up may look records up in batches by POST: a resource whose body reads the `id` it is
/// given reads `{{id}}`; one whose body does not is refused at its line.
#[test]
fn a_post_body_that_reads_the_id_makes_a_batch_follow_up() {
    let with_body = |body: &str| {
        GOOD.replacen(
            "    list: { path: /users, records: data }\n",
            &format!(
                "    list: {{ path: /users, records: data }}\n  details:\n    get:\n      method: POST\n      path: /users/lookup\n      body: '{body}'\n      records: data\n"
            ),
            1,
        )
        .replacen(
            "        resource: users.list\n",
            "        resource: users.list\n        follow_up:\n          detail: { resource: details.get, per: page, id: \"$join(id, ',')\", key: id, matches: id }\n",
            1,
        )
        .replace(r#"{ "id": id }"#, r#"{ "id": id, "name": $detail.name }"#)
    };
    let good = with_body(r#"{"ids": $split(id, ",")}"#);
    let catalog = Catalog::from_sources(&[model()], &[integration("batch", &good)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(catalog.integrations["batch"].resources["details.get"].reads_id());
    let blind = with_body(r#"{"ids": []}"#);
    let errors = Catalog::from_sources(&[model()], &[integration("batch", &blind)])
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("`details.get` never reads `{{id}}`, so the follow-up could not say which record it is for"),
        "{errors}"
    );
}

#[test]
fn rejected_is_read_for_static_credentials_and_refused_without_one() {
    let named = GOOD.replace(
        r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
        "auth:\n  kind: header\n  header: X-Api-Key\n  value: \"{{context.key}}\"\n  rejected: \"status = 403 and body.code = 'invalid_key'\"",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("keyed", &named)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(catalog.integrations["keyed"].auth_rejected.is_some());

    let broken = GOOD.replace(
        r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
        "auth:\n  kind: none\n  rejected: \"status = 401\"",
    );
    let errors = Catalog::from_sources(&[model()], &[integration("open", &broken)])
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("mappings/open.yaml:6: auth.rejected: is not used by auth kind `none`"),
        "{errors}"
    );
}

/// `body`: the credentials the request body writes are named as secrets (kept out of errors),
/// not as keys every account must hold (Adaptive takes a token, or a login and password); a
/// list naming nothing, or a fixed text, is refused at its line.
#[test]
fn body_credentials_are_secrets_not_required_keys() {
    let with = |auth: &str| {
        GOOD.replace(r#"auth: { kind: bearer, token: "{{context.token}}" }"#, auth)
            .replace(
                "list: { path: /users, records: data }",
                "list: { method: POST, path: /users, records: data, body: '{\"t\": $context.api_token, \"p\": $context.password}' }",
            )
    };
    let good = with(
        "auth:\n  kind: body\n  credentials: [\"{{context.api_token}}\", \"{{context.password}}\"]\n  rejected: \"body.error = 'bad-key'\"",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("inbody", &good)])
        .unwrap_or_else(|e| panic!("{e}"));
    let inbody = &catalog.integrations["inbody"];
    assert_eq!(inbody.auth.kind_name(), "body");
    assert!(inbody.auth_rejected.is_some());
    assert_eq!(
        inbody
            .credential_context_paths()
            .into_iter()
            .map(|path| path.join("."))
            .collect::<Vec<_>>(),
        ["api_token", "password"]
    );
    assert_eq!(
        inbody.context_keys().into_iter().collect::<Vec<_>>(),
        ["subdomain"]
    );

    let errors_of = |auth: &str| {
        Catalog::from_sources(&[model()], &[integration("inbody", &with(auth))])
            .unwrap_err()
            .to_string()
    };
    let errors = errors_of("auth:\n  kind: body\n  credentials: []");
    assert!(
        errors.contains("mappings/inbody.yaml:6: auth.credentials: names no credential"),
        "{errors}"
    );
    let errors =
        errors_of("auth:\n  kind: body\n  credentials: [\"{{context.api_token}}\", fixed]");
    assert!(
        errors.contains(
            "mappings/inbody.yaml:6: auth.credentials[1]: must read the account's context"
        ),
        "{errors}"
    );
    let errors = errors_of("auth:\n  kind: body");
    assert!(
        errors.contains("auth kind `body` needs `credentials`"),
        "{errors}"
    );
    let errors = errors_of(
        "auth:\n  kind: bearer\n  token: \"{{context.token}}\"\n  credentials: [\"{{context.api_token}}\"]",
    );
    assert!(
        errors.contains(
            "mappings/inbody.yaml:7: auth.credentials: is not used by auth kind `bearer`"
        ),
        "{errors}"
    );
}

/// `next_url_keeps_query` belongs to `next_url` (a relative link without a query keeps the
/// current one); on another style it is a mistake named at the style's line.
#[test]
fn next_url_keeps_query_is_a_next_url_option() {
    let next_url = GOOD.replace(
        "pagination: { style: cursor, cursor_param: cursor, next_cursor: meta.next, page_size_param: limit }",
        "pagination: { style: next_url, next_url: meta.next, next_url_keeps_query: true }",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("relative", &next_url)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        catalog.integrations["relative"].resources["users.list"]
            .pagination
            .next_url_keeps_query
    );
    let cursor = GOOD.replace(
        "page_size_param: limit }",
        "page_size_param: limit, next_url_keeps_query: true }",
    );
    let errors = Catalog::from_sources(&[model()], &[integration("relative", &cursor)])
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("mappings/relative.yaml:5: resources.users.list.pagination.next_url_keeps_query: is not used by pagination style `cursor`"),
        "{errors}"
    );
}

/// `page_in_path` puts the `page` style's number in the path, in place of `page_param`: both
/// together, or the key on another style, are mistakes named at the style's line.
#[test]
fn a_page_number_may_be_the_paths_last_segment() {
    let cursor = "pagination: { style: cursor, cursor_param: cursor, next_cursor: meta.next, page_size_param: limit }";
    let with = |pagination: &str| GOOD.replace(cursor, pagination);
    let catalog = Catalog::from_sources(
        &[model()],
        &[integration(
            "paths",
            &with("pagination: { style: page, page_in_path: true, first_page: 0 }"),
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        catalog.integrations["paths"].resources["users.list"]
            .pagination
            .page_in_path
    );
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration(
                "both",
                &with("pagination: { style: page, page_in_path: true, page_param: page }"),
            ),
            integration(
                "offset",
                &with("pagination: { style: offset, offset_param: offset, page_in_path: true }"),
            ),
            integration("neither", &with("pagination: { style: page }")),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/both.yaml:5: resources.users.list.pagination.page_param: is not used with `page_in_path: true` (the page number is the path's last segment)",
            "mappings/neither.yaml:5: resources.users.list.pagination: pagination style `page` needs `page_param` or `page_in_path: true`",
            "mappings/offset.yaml:5: resources.users.list.pagination.page_in_path: is not used by pagination style `offset`",
        ],
        "{errors}"
    );
}

/// `min_page_size` raises a small `limit` to what the provider accepts; it needs a page-size
/// parameter and must fit under the maximum and the default, each named at the style's line.
#[test]
fn a_page_size_may_have_a_floor() {
    let cursor = "pagination: { style: cursor, cursor_param: cursor, next_cursor: meta.next, page_size_param: limit }";
    let with = |pagination: &str| GOOD.replace(cursor, pagination);
    let page = "style: page, page_param: page";
    let catalog = Catalog::from_sources(
        &[model()],
        &[integration(
            "floored",
            &with(&format!("pagination: {{ {page}, page_size_param: per_page, min_page_size: 5, max_page_size: 50 }}")),
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let strategy = &catalog.integrations["floored"].resources["users.list"]
        .pagination
        .strategy;
    assert_eq!(strategy.page_size(Some(2), 100), 5);
    assert_eq!(strategy.page_size(Some(20), 100), 20);
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration(
                "above",
                &with(&format!("pagination: {{ {page}, page_size_param: per_page, min_page_size: 60, max_page_size: 50 }}")),
            ),
            integration(
                "default",
                &with(&format!("pagination: {{ {page}, page_size_param: per_page, min_page_size: 5, default_page_size: 3 }}")),
            ),
            integration(
                "unsent",
                &with(&format!("pagination: {{ {page}, min_page_size: 5 }}")),
            ),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/above.yaml:5: resources.users.list.pagination.min_page_size: is larger than `max_page_size`",
            "mappings/default.yaml:5: resources.users.list.pagination.min_page_size: is larger than `default_page_size`",
            "mappings/unsent.yaml:5: resources.users.list.pagination.min_page_size: needs `page_size_param` (a provider that takes no page size has no minimum to meet)",
        ],
        "{errors}"
    );
}

/// `exchange.jwt`: the login call's signed bearer credential; its key is a secret (kept out of
/// errors), its issuer a key every account needs; beside `basic` it is refused at its line.
#[test]
fn a_login_call_may_carry_a_signed_jwt() {
    let with = |exchange: &str| {
        GOOD.replace(
            r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
            &format!("auth:\n  kind: token_exchange\n  exchange:\n    url: /app/installations/{{{{context.installation}}}}/access_tokens\n{exchange}  token: token\n  expires_at: expires_at"),
        )
    };
    let good = with(
        "    jwt: { issuer: \"{{context.app_id}}\", private_key: \"{{context.private_key}}\" }\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("app", &good)])
        .unwrap_or_else(|e| panic!("{e}"));
    let app = &catalog.integrations["app"];
    assert_eq!(
        app.context_keys().into_iter().collect::<Vec<_>>(),
        ["app_id", "installation", "private_key", "subdomain"]
    );
    assert_eq!(
        app.credential_context_paths()
            .into_iter()
            .map(|path| path.join("."))
            .collect::<Vec<_>>(),
        ["private_key"]
    );
    let errors = Catalog::from_sources(
        &[model()],
        &[integration(
            "app",
            &with("    basic: { username: u, password: \"{{context.secret}}\" }\n    jwt: { issuer: \"{{context.app_id}}\", private_key: \"{{context.private_key}}\" }\n"),
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains("mappings/app.yaml:9: auth.exchange.jwt: is sent as the Authorization header, which `basic` or `headers` already sets"),
        "{errors}"
    );
}

/// `auth.keep` is a token kind's: plain context keys other than the token's own, each a JSONata
/// expression; on a static credential it is a mistake named at its line.
#[test]
fn keep_writes_plain_context_keys_from_a_token_answer() {
    let with = |auth: &str| {
        GOOD.replace(
            r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
            auth,
        )
    };
    let oauth = "auth:\n  kind: oauth2_refresh_token\n  token_url: https://id.example.test/token\n  client_id: \"{{context.id}}\"\n  client_secret: \"{{context.secret}}\"\n  refresh_token: \"{{context.refresh}}\"\n";
    let good = with(&format!("{oauth}  keep: {{ geolocation: geolocation }}"));
    let catalog = Catalog::from_sources(&[model()], &[integration("kept", &good)])
        .unwrap_or_else(|e| panic!("{e}"));
    match &catalog.integrations["kept"].auth {
        unigate_mapping::Auth::Token(token) => assert_eq!(
            token
                .keep
                .iter()
                .map(|(key, _)| key.as_str())
                .collect::<Vec<_>>(),
            ["geolocation"]
        ),
        other => panic!("{other:?}"),
    }
    let errors_of = |text: &str| {
        Catalog::from_sources(&[model()], &[integration("kept", &with(text))])
            .unwrap_err()
            .to_string()
    };
    let errors = errors_of(&format!("{oauth}  keep: {{ access_token: token }}"));
    assert!(
        errors.contains("mappings/kept.yaml:10: auth.keep.access_token: must name a plain context key other than the token's own"),
        "{errors}"
    );
    let errors = errors_of(&format!(
        "{oauth}  keep: {{ geolocation: \"geolocation[\" }}"
    ));
    assert!(errors.contains("auth.keep.geolocation:"), "{errors}");
    let errors = errors_of(
        "auth:\n  kind: bearer\n  token: \"{{context.token}}\"\n  keep: { geolocation: geolocation }",
    );
    assert!(
        errors.contains("mappings/kept.yaml:7: auth.keep: is not used by auth kind `bearer`"),
        "{errors}"
    );
}

/// `auth.token_rejected` is a token kind's, compiled at load; on a static credential it is a
/// mistake named at its line, and an expression that does not parse is named too.
#[test]
fn token_rejected_is_a_token_kinds_and_parses_at_load() {
    let with = |auth: &str| {
        GOOD.replace(
            r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
            auth,
        )
    };
    let oauth = "auth:\n  kind: oauth2_client_credentials\n  token_url: https://id.example.test/token\n  client_id: \"{{context.id}}\"\n  client_secret: \"{{context.secret}}\"\n";
    let good = with(&format!("{oauth}  token_rejected: \"status = 500 ? true\""));
    let catalog = Catalog::from_sources(&[model()], &[integration("owned", &good)])
        .unwrap_or_else(|e| panic!("{e}"));
    match &catalog.integrations["owned"].auth {
        unigate_mapping::Auth::Token(token) => assert!(token.token_rejected.is_some()),
        other => panic!("{other:?}"),
    }
    let errors_of = |text: &str| {
        Catalog::from_sources(&[model()], &[integration("owned", &with(text))])
            .unwrap_err()
            .to_string()
    };
    let errors = errors_of(&format!("{oauth}  token_rejected: \"status = \""));
    assert!(
        errors.contains("mappings/owned.yaml:9: auth.token_rejected:"),
        "{errors}"
    );
    let errors = errors_of(
        "auth:\n  kind: bearer\n  token: \"{{context.token}}\"\n  token_rejected: \"status = 500\"",
    );
    assert!(
        errors.contains(
            "mappings/owned.yaml:7: auth.token_rejected: is not used by auth kind `bearer`"
        ),
        "{errors}"
    );
}

/// A DocuSign developer account (base URI https://demo.docusign.net) gets its tokens from the
/// developer environment's account server; a production one from account.docusign.com.
#[test]
fn a_docusign_demo_account_renews_its_token_in_the_developer_environment() {
    use unigate_mapping::{Auth, TokenSource};
    let catalog = Catalog::load_dir(&repo_mappings()).unwrap_or_else(|errors| panic!("{errors}"));
    let token_url = |base_uri: &str| {
        let context = serde_json::json!({"base_uri": base_uri, "account_id": "a",
            "client_id": "c", "client_secret": "s", "refresh_token": "r"});
        match &catalog.integrations["docusign"].for_context(&context).auth {
            Auth::Token(token) => match &token.source {
                TokenSource::OAuth2(oauth) => oauth.token_url.render(&context).ok(),
                TokenSource::Exchange(_) => None,
            },
            _ => None,
        }
    };
    assert_eq!(
        token_url("https://demo.docusign.net").as_deref(),
        Some("https://account-d.docusign.com/oauth/token")
    );
    assert_eq!(
        token_url("https://na3.docusign.net").as_deref(),
        Some("https://account.docusign.com/oauth/token")
    );
}

#[test]
fn a_retired_service_names_its_day_and_reason() {
    let retired = GOOD.replace(
        "docs: https://example.test/docs\n",
        "docs: https://example.test/docs\nretired: { since: \"2025-04-30\", reason: \" Example shut its API down. \" }\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &retired)]).unwrap();
    assert_eq!(
        catalog.integrations["ok"].retired,
        Some(unigate_mapping::Retired {
            since: "2025-04-30".to_owned(),
            reason: "Example shut its API down.".to_owned(),
        })
    );
    let bad_day = retired.replace("2025-04-30", "2025-13-01");
    let no_reason = retired.replace(" Example shut its API down. ", " ");
    let unknown_key = retired.replace("reason:", "colour: red, reason:");
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration("a", &bad_day),
            integration("b", &no_reason),
            integration("c", &unknown_key),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "mappings/a.yaml:3: retired.since: must be a date, YYYY-MM-DD",
            "mappings/b.yaml:3: retired.reason: must say, for callers, why the service is gone",
            "mappings/c.yaml:3: retired: unknown field `colour`, expected one of since, reason",
        ],
        "{errors}"
    );
}

/// The token credential a file (one integration, `ok`) renders for `context`.
fn rendered_token(file: &str, context: &serde_json::Value) -> unigate_mapping::RenderedToken {
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", file)]).unwrap();
    match unigate_mapping::render_credential(&catalog.integrations["ok"], context, None).unwrap() {
        unigate_mapping::Credential::Token(token) => *token,
        _ => panic!("a token credential"),
    }
}

fn oauth_of(token: &unigate_mapping::RenderedToken) -> &unigate_mapping::RenderedOAuth2 {
    match &token.source {
        unigate_mapping::RenderedSource::OAuth2(oauth) => oauth,
        _ => panic!("an OAuth source"),
    }
}

#[test]
fn a_private_key_jwt_client_has_a_key_where_others_have_a_secret() {
    let client = |auth: &str| {
        GOOD.replace(
            r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
            &format!("auth:\n{auth}"),
        )
    };
    let good = client(
        r#"  kind: oauth2_client_credentials
  token_url: "https://{{context.subdomain}}.example.test/oauth2/v1/token"
  client_id: "{{context.client_id}}"
  client_auth: private_key_jwt
  private_key: "{{context.private_key}}"
  key_id: "{{context.key_id?}}"
  dpop: true"#,
    );
    let context = serde_json::json!({"subdomain": "acme", "client_id": "c", "private_key": "k"});
    let token = rendered_token(&good, &context);
    let oauth = oauth_of(&token);
    assert!(oauth.dpop);
    assert_eq!(
        oauth.client_key.as_ref().map(|key| (
            key.private_key.expose(),
            key.key_id.clone(),
            key.algorithm,
            key.claims.clone()
        )),
        Some(("k", None, unigate_mapping::JwtAlgorithm::RS256, vec![])),
        "an account that names no kid sends none; RS256 unless the file says"
    );
    // NetSuite's client credentials: PS256, and a `scope` claim in the assertion itself.
    let netsuite = good.replace(
        "  dpop: true",
        "  jwt_algorithm: PS256\n  claims: { scope: \"rest_webservices\" }",
    );
    let netsuite_token = rendered_token(&netsuite, &context);
    let key = oauth_of(&netsuite_token).client_key.as_ref().unwrap();
    assert_eq!(
        (key.algorithm, key.claims.clone()),
        (
            unigate_mapping::JwtAlgorithm::PS256,
            vec![("scope".to_owned(), "rest_webservices".to_owned())]
        )
    );
    let t = unigate_unified::Secret::new("t");
    assert_eq!(
        (
            token.header_value_for(&t, true).expose(),
            token.header_value_for(&t, false).expose()
        ),
        ("DPoP t", "Bearer t"),
        "the scheme follows the token the server issued: DPoP-bound, or Bearer"
    );
    let with_secret = good.replace(
        "  client_auth: private_key_jwt\n",
        "  client_auth: private_key_jwt\n  client_secret: \"{{context.client_secret}}\"\n",
    );
    let no_key = good
        .replace("  private_key: \"{{context.private_key}}\"\n", "")
        .replace("  key_id: \"{{context.key_id?}}\"\n", "");
    let key_id_with_a_secret = good
        .replace(
            "  client_auth: private_key_jwt\n",
            "  client_secret: \"{{context.s}}\"\n",
        )
        .replace("  private_key: \"{{context.private_key}}\"\n", "");
    let jwt_bearer = client(
        r#"  kind: oauth2_jwt_bearer
  token_url: "https://{{context.subdomain}}.example.test/token"
  issuer: "{{context.client_email}}"
  private_key: "{{context.private_key}}"
  client_auth: private_key_jwt"#,
    );
    let dpop_refresh = client(
        r#"  kind: oauth2_refresh_token
  token_url: "https://{{context.subdomain}}.example.test/token"
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret}}"
  refresh_token: "{{context.refresh_token}}"
  dpop: true"#,
    );
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration("a", &with_secret),
            integration("b", &no_key),
            integration("c", &key_id_with_a_secret),
            integration("d", &jwt_bearer),
            integration("e", &dpop_refresh),
            integration(
                "f",
                &jwt_bearer.replace(
                    "  client_auth: private_key_jwt",
                    "  claims: { box_sub_type: enterprise, jti: fixed }",
                ),
            ),
            integration(
                "g",
                &good.replace("  dpop: true", "  claims: { aud: elsewhere }"),
            ),
            integration(
                "h",
                &dpop_refresh.replace("  dpop: true", "  jwt_algorithm: PS256"),
            ),
            integration("i", &good.replace("  dpop: true", "  jwt_algorithm: HS256")),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "mappings/a.yaml:9: auth.client_secret: is not used by auth kind `oauth2_client_credentials`",
            "mappings/b.yaml:5: auth: auth kind `oauth2_client_credentials` needs `private_key`",
            "mappings/c.yaml:9: auth.key_id: is not used by auth kind `oauth2_client_credentials`",
            "mappings/d.yaml:9: auth.client_auth: `private_key_jwt` is for oauth2_client_credentials and oauth2_refresh_token (the jwt-bearer grant's `private_key` signs its assertion)",
            "mappings/e.yaml:10: auth.dpop: is not used by auth kind `oauth2_refresh_token`",
            "mappings/f.yaml:9: auth.claims.jti: is a claim the gateway writes (iss, sub, aud, iat, exp, jti, scope)",
            "mappings/g.yaml:11: auth.claims.aud: is a claim the gateway writes (iss, sub, aud, iat, exp, jti)",
            "mappings/h.yaml:10: auth.jwt_algorithm: is not used by auth kind `oauth2_refresh_token`",
            "mappings/i.yaml:11: auth.jwt_algorithm: unknown variant `HS256`, expected one of RS256, PS256, ES256",
        ],
        "{errors}"
    );
}

/// An optional key in a scope, token parameter, claim or client secret leaves it out for an
/// account that lacks the key, instead of sending it empty (an empty `scope=` asks for no scope
/// at all; a public client has no secret to send).
#[test]
fn an_oauth_value_whose_optional_key_is_absent_is_not_sent() {
    let file = GOOD.replace(
        r#"auth: { kind: bearer, token: "{{context.token}}" }"#,
        r#"auth:
  kind: oauth2_refresh_token
  token_url: "https://{{context.subdomain}}.example.test/oauth2/token"
  client_id: "{{context.client_id}}"
  client_secret: "{{context.client_secret?}}"
  client_auth: basic
  refresh_token: "{{context.refresh_token}}"
  scope: "{{context.scope?}}"
  token_params: { audience: "{{context.audience?}}", resource: users }"#,
    );
    let rendered = |context: serde_json::Value| {
        let token = rendered_token(&file, &context);
        let oauth = oauth_of(&token);
        let params: Vec<(String, String)> = oauth
            .token_params
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned()))
            .collect();
        let secret = oauth
            .client_secret
            .as_ref()
            .map(|secret| secret.expose().to_owned());
        (oauth.scope.clone(), params, secret)
    };
    let base = serde_json::json!({"subdomain": "acme", "client_id": "c", "refresh_token": "r"});
    assert_eq!(
        rendered(base.clone()),
        (
            None,
            vec![("resource".to_owned(), "users".to_owned())],
            None
        )
    );
    let mut full = base;
    full["scope"] = "read:users".into();
    full["audience"] = "https://api.example.test".into();
    full["client_secret"] = "s".into();
    assert_eq!(
        rendered(full),
        (
            Some("read:users".to_owned()),
            vec![
                ("audience".to_owned(), "https://api.example.test".to_owned()),
                ("resource".to_owned(), "users".to_owned())
            ],
            Some("s".to_owned())
        )
    );
}

#[test]
fn short_page_ends_is_for_styles_that_end_on_a_short_page() {
    let offset = GOOD.replace(
        "pagination: { style: cursor, cursor_param: cursor, next_cursor: meta.next, page_size_param: limit }",
        "pagination: { style: offset, offset_param: offset, page_size_param: limit, short_page_ends: false }",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &offset)]).unwrap();
    assert!(
        !catalog.integrations["ok"].resources["users.list"]
            .pagination
            .strategy
            .short_page_ends
    );
    let cursor = GOOD.replace(
        "page_size_param: limit }",
        "page_size_param: limit, short_page_ends: false }",
    );
    // A provider that repeats its last page past the end: offset and page styles only.
    let repeats = offset.replace("short_page_ends: false }", "last_page_repeats: true }");
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &repeats)]).unwrap();
    assert!(
        catalog.integrations["ok"].resources["users.list"]
            .pagination
            .strategy
            .last_page_repeats
    );
    let cursor_repeats = GOOD.replace(
        "page_size_param: limit }",
        "page_size_param: limit, last_page_repeats: true }",
    );
    let errors = Catalog::from_sources(
        &[model()],
        &[integration("a", &cursor), integration("b", &cursor_repeats)],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "mappings/a.yaml:5: resources.users.list.pagination.short_page_ends: is not used by pagination style `cursor`",
            "mappings/b.yaml:5: resources.users.list.pagination.last_page_repeats: is not used by pagination style `cursor`",
        ]
    );
}

#[test]
fn account_checks_tell_which_contexts_the_file_serves() {
    let checked = GOOD.replace(
        "docs: https://example.test/docs\n",
        "docs: https://example.test/docs\naccount_checks:\n  - require: \"$not($exists(region)) or region in ['us', 'eu']\"\n    message: \" `region` must be us or eu \"\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &checked)]).unwrap();
    let example = &catalog.integrations["ok"];
    let problems = |context| example.account_problems(&context);
    assert!(problems(serde_json::json!({"token": "t"})).is_empty());
    assert!(problems(serde_json::json!({"region": "eu"})).is_empty());
    assert_eq!(
        problems(serde_json::json!({"region": "apac"})),
        ["`region` must be us or eu"]
    );
    // Anything but `true` fails: a number, or an expression with no answer.
    assert_eq!(problems(serde_json::json!({"region": 5})).len(), 1);

    let broken = checked.replace("region in ['us', 'eu']\"", "region in \"");
    let no_message = checked.replace(" `region` must be us or eu ", " ");
    let unknown_key = checked.replace("    message:", "    colour: red\n    message:");
    let in_variant = format!(
        "{GOOD}variants:\n  - name: eu\n    when: \"region = 'eu'\"\n    with:\n      account_checks: [{{ require: \"true\", message: m }}]\n"
    );
    let errors = Catalog::from_sources(
        &[model()],
        &[
            integration("a", &broken),
            integration("b", &no_message),
            integration("c", &unknown_key),
            integration("d", &in_variant),
        ],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 4, "{errors}");
    assert!(
        lines[0]
            .starts_with("mappings/a.yaml:4: account_checks[0].require: JSONata does not compile"),
        "{errors}"
    );
    assert_eq!(
        lines[1..],
        [
            "mappings/b.yaml:5: account_checks[0].message: must tell the admin what the account's context needs",
            "mappings/c.yaml:5: account_checks[0].colour: unknown field `colour`, expected one of require, message",
            "mappings/d.yaml:17: variants[0].with.account_checks: `account_checks` belong to the file, not to a variant",
        ],
        "{errors}"
    );
}

/// A family's check still holds for a product that has checks of its own: a child adds to its
/// base's rather than replacing them.
#[test]
fn a_child_file_keeps_its_base_files_account_checks() {
    let base = GOOD.replace(
        "docs: https://example.test/docs\n",
        "docs: https://example.test/docs\naccount_checks:\n  - require: \"region in ['us', 'eu']\"\n    message: \"`region` must be us or eu\"\n",
    );
    let child = "extends: family\nname: Product\naccount_checks:\n  - require: \"$not($exists(team)) or $type(team) = 'string'\"\n    message: \"`team` must be text\"\n";
    let catalog = Catalog::from_sources(
        &[model()],
        &[integration("family", &base), integration("product", child)],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let product = &catalog.integrations["product"];
    let problems = |context| product.account_problems(&context);
    assert!(problems(serde_json::json!({"region": "us"})).is_empty());
    assert_eq!(
        problems(serde_json::json!({"region": "apac", "team": 7})),
        ["`team` must be text", "`region` must be us or eu"]
    );
    assert_eq!(
        problems(serde_json::json!({"region": "apac"})),
        ["`region` must be us or eu"]
    );
}

#[test]
fn a_provider_counting_several_budgets_has_several_paces() {
    let paced = GOOD.replace(
        "pagination:",
        "rate_limit:\n  pace:\n    - { requests: 100, seconds: 10 }\n    - { requests: 300, seconds: 10, per: context.app.key }\n    - { requests: 1000, seconds: 60, per: integration }\npagination:",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &paced)]).unwrap();
    let example = &catalog.integrations["ok"];
    let scopes: Vec<_> = example
        .rate_limit
        .paces
        .iter()
        .map(|pace| (pace.requests, pace.window.as_secs(), pace.per.clone()))
        .collect();
    assert_eq!(
        scopes,
        [
            (100, 10, PaceScope::Account),
            (300, 10, PaceScope::Context("app.key".to_owned())),
            (1000, 60, PaceScope::Integration),
        ]
    );
    // The key a budget is counted by is required like a template's.
    assert!(example.context_keys().contains("app.key"));

    let bad_per = paced.replace("per: context.app.key", "per: api_key");
    let bad_second = paced.replace("requests: 300", "requests: 0");
    let errors = Catalog::from_sources(
        &[model()],
        &[integration("a", &bad_per), integration("b", &bad_second)],
    )
    .unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/a.yaml:8: rate_limit.pace[1].per: must be `account`, `integration` or `context.<key>`",
            "mappings/b.yaml:8: rate_limit.pace[1]: needs `requests` of at least 1 in `seconds` between 0 and 86400",
        ],
        "{errors}"
    );
}

/// A resource may carry budgets of its own (an endpoint the provider counts apart), checked as
/// the file's are, the field path naming the resource; a key one counts by is required.
#[test]
fn a_resource_budget_is_compiled_and_checked_as_the_files() {
    let paced = GOOD.replace(
        "    list: { path: /users, records: data }\n",
        "    list:\n      path: /users\n      records: data\n      pace: { requests: 20, seconds: 60, per: context.team }\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &paced)]).unwrap();
    let example = &catalog.integrations["ok"];
    let resource = &example.resources["users.list"];
    assert_eq!(
        resource
            .paces
            .iter()
            .map(|pace| (pace.requests, pace.window.as_secs(), pace.per.clone()))
            .collect::<Vec<_>>(),
        [(20, 60, PaceScope::Context("team".to_owned()))]
    );
    assert!(example.rate_limit.paces.is_empty());
    assert!(example.context_keys().contains("team"));

    let zero = paced.replace("requests: 20", "requests: 0");
    let errors = Catalog::from_sources(&[model()], &[integration("a", &zero)]).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/a.yaml:11: resources.users.list.pace: needs `requests` of at least 1 in `seconds` between 0 and 86400"
        ],
        "{errors}"
    );
}

/// `in_flight` limits calls at once (a window of nothing), in the file's or a resource's `pace`;
/// a budget is a rate or a limit on calls at once, never a mix or half of one.
#[test]
fn an_in_flight_budget_is_a_window_of_nothing() {
    let paced = GOOD.replace(
        "pagination:",
        "rate_limit:\n  pace:\n    - { in_flight: 10, per: integration }\n    - { requests: 100, seconds: 20 }\npagination:",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &paced)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let paces = &catalog.integrations["ok"].rate_limit.paces;
    assert_eq!(
        paces
            .iter()
            .map(|pace| (pace.requests, pace.window.as_secs(), pace.counts_calls()))
            .collect::<Vec<_>>(),
        [(10, 0, false), (100, 20, true)]
    );
    assert_eq!(paces[0].per, PaceScope::Integration);

    let bad = [
        paced.replace("in_flight: 10", "in_flight: 0"),
        paced.replace("in_flight: 10", "in_flight: 10, seconds: 1"),
        paced.replace("{ requests: 100, seconds: 20 }", "{ requests: 100 }"),
        paced.replace("{ requests: 100, seconds: 20 }", "{ per: account }"),
    ];
    let sources: Vec<_> = bad
        .iter()
        .enumerate()
        .map(|(index, text)| integration(&format!("bad{index}"), text))
        .collect();
    let errors = Catalog::from_sources(&[model()], &sources).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let mixed = "needs `requests` and `seconds` (a rate), or `in_flight` alone (calls at once)";
    assert_eq!(
        lines,
        [
            "mappings/bad0.yaml:7: rate_limit.pace[0].in_flight: must be at least 1".to_owned(),
            format!("mappings/bad1.yaml:7: rate_limit.pace[0]: {mixed}"),
            format!("mappings/bad2.yaml:8: rate_limit.pace[1]: {mixed}"),
            format!("mappings/bad3.yaml:8: rate_limit.pace[1]: {mixed}"),
        ],
        "{errors}"
    );
}

/// `batch` sends a page's ids in calls of at most `size`, as a repeated parameter (then the
/// resource need not read `{{id}}`); only per page, sized 1 to 10000. A per-page follow-up
/// without `key` and `matches` is the whole page's; one of them alone is refused.
#[test]
fn a_batched_or_page_wide_follow_up_is_checked_at_load() {
    let with = |follow_up: &str| {
        GOOD.replacen(
            "    list: { path: /users, records: data }\n",
            "    list: { path: /users, records: data }\n  lookup:\n    list: { path: /users/lookup, records: data }\n",
            1,
        )
        .replacen(
            "        resource: users.list\n",
            &format!("        resource: users.list\n        follow_up:\n          detail: {follow_up}\n"),
            1,
        )
        .replace(r#"{ "id": id }"#, r#"{ "id": id, "name": $detail.name }"#)
    };
    let good = [
        with(
            "{ resource: lookup.list, per: page, id: id, batch: { size: 100, param: 'id[]' }, key: id, matches: id }",
        ),
        with("{ resource: lookup.list, per: page, id: id, batch: { size: 100, param: 'id[]' } }"),
    ];
    for text in &good {
        let catalog = Catalog::from_sources(&[model()], &[integration("ok", text)])
            .unwrap_or_else(|errors| panic!("{errors}"));
        let follow_up = &catalog.integrations["ok"]
            .unified
            .values()
            .next()
            .unwrap()
            .follow_ups[0];
        assert_eq!(
            follow_up.batch,
            Some(unigate_mapping::FollowUpBatch {
                size: 100,
                param: Some("id[]".to_owned()),
                keep: false,
            })
        );
    }
    // A per-page call that needs no id (the account's groups, paired back by key): `id` only
    // says whether to call; a get makes it too with `on_get`.
    let no_id = with(
        "{ resource: lookup.list, per: page, id: \"$count($) > 0\", key: id, matches: user, on_get: true }",
    );
    Catalog::from_sources(&[model()], &[integration("ok", &no_id)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let bad = [
        (
            "a",
            with("{ resource: lookup.list, id: id, batch: { size: 100, param: 'id[]' } }"),
        ),
        (
            "b",
            with("{ resource: lookup.list, per: page, id: id, batch: { size: 0, param: 'id[]' } }"),
        ),
        (
            "c",
            with("{ resource: lookup.list, per: page, id: id, batch: { size: 10 } }"),
        ),
        (
            "d",
            with(
                "{ resource: lookup.list, per: page, id: id, batch: { size: 100, param: 'id[]' }, key: id }",
            ),
        ),
        (
            "e",
            with(
                "{ resource: lookup.list, per: page, id: id, batch: { size: 1, param: id, keep: true } }",
            ),
        ),
        (
            "f",
            with("{ resource: lookup.list, per: page, id: id, key: id, matches: id }")
                .replace("$detail", "$details"),
        ),
        ("g", with("{ resource: lookup.list, id: id, on_get: true }")),
    ];
    let sources: Vec<_> = bad
        .iter()
        .map(|(name, text)| integration(name, text))
        .collect();
    let errors = Catalog::from_sources(&[model()], &sources).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/a.yaml:17: unified.user-directory.users.list.follow_up.detail.resource: `lookup.list` never reads `{{id}}`, so the follow-up could not say which record it is for",
            "mappings/a.yaml:17: unified.user-directory.users.list.follow_up.detail.batch: only a `per: page` follow-up sends its page's ids in batches",
            "mappings/b.yaml:17: unified.user-directory.users.list.follow_up.detail.batch.size: must be from 1 to 10000",
            "mappings/c.yaml:17: unified.user-directory.users.list.follow_up.detail.resource: `lookup.list` never reads `{{id}}`, so the follow-up could not say which record it is for",
            "mappings/d.yaml:17: unified.user-directory.users.list.follow_up.detail: `per: page` pairs answer records with page records through `key` and `matches` (both, or neither: the whole answer is every record's); `per: record` takes neither",
            "mappings/e.yaml:17: unified.user-directory.users.list.follow_up.detail.batch.keep: a kept batch pairs its answers with `key` and `matches`: a page given the whole answer would get the records earlier pages asked for",
            "mappings/f.yaml:19: unified.user-directory.users.list.follow_up: the follow-up `detail` is made but nothing reads `$detail` (not the response mapping, nor a follow-up chained `over` it); a file whose own response mapping ignores an inherited follow-up sets `follow_up: {}`",
            "mappings/g.yaml:17: unified.user-directory.users.list.follow_up.detail.resource: `lookup.list` never reads `{{id}}`, so the follow-up could not say which record it is for",
            "mappings/g.yaml:17: unified.user-directory.users.list.follow_up.detail.on_get: a get makes every per-record follow-up already; `on_get` is for a `per: page` one that is not chained `over` another (a chained one would walk the whole catalog for one record)",
        ],
        "{errors}"
    );
}

/// A follow-up chained `over` another needs that one to be a catalog (per page, its whole
/// answer the page's), takes no `per` or `batch`, and pairs through both `key` and `matches`;
/// it runs after its catalog whatever their names.
#[test]
fn a_chained_follow_up_is_checked_at_load() {
    let with = |follow_ups: &str| {
        GOOD.replacen(
            "    list: { path: /users, records: data }\n",
            "    list: { path: /users, records: data }\n  groups:\n    list: { path: /groups, records: data }\n  members:\n    list: { path: \"/groups/{{id}}/members\", records: data }\n",
            1,
        )
        .replacen(
            "        resource: users.list\n",
            &format!("        resource: users.list\n        follow_up:\n{follow_ups}"),
            1,
        )
        .replace(r#"{ "id": id }"#, r#"{ "id": id, "groups": [$a_groups.{ "id": id }] }"#)
    };
    let good = with(
        "          a_groups: { resource: members.list, over: z_catalog, id: id, key: id, matches: user_id }\n          z_catalog: { resource: groups.list, per: page, id: \"'all'\" }\n",
    );
    let catalog = Catalog::from_sources(&[model()], &[integration("ok", &good)])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let order: Vec<(&str, Option<&str>)> = catalog.integrations["ok"]
        .unified
        .values()
        .next()
        .unwrap()
        .follow_ups
        .iter()
        .map(|follow_up| (follow_up.name.as_str(), follow_up.over.as_deref()))
        .collect();
    assert_eq!(
        order,
        [("z_catalog", None), ("a_groups", Some("z_catalog"))]
    );
    let bad = [
        (
            "a",
            with(
                "          detail: { resource: members.list, id: id }\n          groups: { resource: members.list, over: detail, per: page, id: id, key: id, matches: user_id }\n",
            ),
        ),
        (
            "b",
            with(
                "          catalog: { resource: groups.list, per: page, id: \"'all'\" }\n          groups: { resource: members.list, over: catalog, id: id, key: id, batch: { size: 10 } }\n",
            ),
        ),
        (
            "c",
            with(
                "          groups: { resource: members.list, over: groups, id: id, key: id, matches: user_id }\n",
            ),
        ),
        (
            "d",
            with(
                "          a_groups: { resource: groups.list, per: page, id: \"'all'\", gives: answers }\n",
            ),
        ),
        // Three levels; and a level without `gives: answers` that pairs nothing.
        (
            "e",
            with(
                "          z_catalog: { resource: groups.list, per: page, id: \"'all'\" }\n          y_level: { resource: members.list, over: z_catalog, id: id, gives: answers }\n          x_level: { resource: members.list, over: y_level, id: id, gives: answers }\n          a_groups: { resource: members.list, over: x_level, id: id, key: id, matches: user_id }\n",
            ),
        ),
        (
            "f",
            with(
                "          z_catalog: { resource: groups.list, per: page, id: \"'all'\" }\n          y_level: { resource: members.list, over: z_catalog, id: id }\n          a_groups: { resource: members.list, over: y_level, id: id, key: id, matches: user_id }\n",
            ),
        ),
    ];
    let sources: Vec<_> = bad
        .iter()
        .map(|(name, text)| integration(name, text))
        .collect();
    let errors = Catalog::from_sources(&[model()], &sources).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "mappings/a.yaml:20: unified.user-directory.users.list.follow_up.groups.over: names `detail`, which is not another follow-up of this list with `per: page`, no `batch` and no `over` (a catalog: one answer for the page, read whole), nor one chained over such a catalog that `gives: answers`",
            "mappings/a.yaml:20: unified.user-directory.users.list.follow_up.groups.per: a follow-up `over` another is called once per record of that one's answer: it takes no `per`",
            "mappings/b.yaml:20: unified.user-directory.users.list.follow_up.groups: a follow-up `over` another pairs its answers with page records through `key` (over a page record) and `matches` (over a record of an answer): both are needed (or neither, for one that `gives: answers` to a follow-up chained over it)",
            "mappings/b.yaml:20: unified.user-directory.users.list.follow_up.groups.batch: a follow-up `over` another makes one call per record of its answer: it takes no `batch`",
            "mappings/c.yaml:19: unified.user-directory.users.list.follow_up.groups.over: names `groups`, which is not another follow-up of this list with `per: page`, no `batch` and no `over` (a catalog: one answer for the page, read whole), nor one chained over such a catalog that `gives: answers`",
            "mappings/d.yaml:19: unified.user-directory.users.list.follow_up.a_groups.gives: only a follow-up chained `over` a catalog chooses what it gives (the catalog records or its answers' records)",
            "mappings/e.yaml:22: unified.user-directory.users.list.follow_up.a_groups.over: names `x_level`, which is not another follow-up of this list with `per: page`, no `batch` and no `over` (a catalog: one answer for the page, read whole), nor one chained over such a catalog that `gives: answers`",
            "mappings/f.yaml:20: unified.user-directory.users.list.follow_up.y_level: a follow-up `over` another pairs its answers with page records through `key` (over a page record) and `matches` (over a record of an answer): both are needed (or neither, for one that `gives: answers` to a follow-up chained over it)",
            "mappings/f.yaml:21: unified.user-directory.users.list.follow_up.a_groups.over: names `y_level`, which is not another follow-up of this list with `per: page`, no `batch` and no `over` (a catalog: one answer for the page, read whole), nor one chained over such a catalog that `gives: answers`",
        ],
        "{errors}"
    );
}

/// A file that extends another and drops its follow-ups (`follow_up: {}`) keeps the inherited
/// mapping, which still reads their names: those are names nothing binds, undefined on every
/// record, and the method says so (for the fast path). Functions, of the engine's library or
/// unigate's, and the engine's own bindings are not among them.
#[test]
fn names_an_inherited_mapping_reads_that_nothing_binds_are_known() {
    let base = r#"name: Base
docs: https://example.test/docs
base_url: https://example.test
auth: { kind: none }
resources:
  users:
    list: { path: /users, records: data }
  groups:
    list: { path: /groups, records: data }
unified:
  user-directory:
    users:
      list:
        resource: users.list
        follow_up:
          groups: { resource: groups.list, per: page, id: "'all'" }
        response_mapping: |
          {
            "id": $string(id),
            "name": $pick($, ["name"]).name,
            "title": $context.title ? $query.title,
            "groups": $groups[members = $$.id].{ "id": id }
          }
"#;
    let child = "name: Child\nextends: base\nunified:\n  user-directory:\n    users:\n      list:\n        follow_up: {}\n";
    let catalog = Catalog::from_sources(
        &[model()],
        &[integration("base", base), integration("child", child)],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let list = |id: &str| {
        catalog.integrations[id]
            .unified
            .values()
            .next()
            .unwrap()
            .possibly_unbound()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(list("base"), ["groups"]);
    let child = catalog.integrations["child"]
        .unified
        .values()
        .next()
        .unwrap();
    assert!(child.follow_ups.is_empty());
    assert_eq!(child.unbound_reads, ["groups"]);
    assert_eq!(list("child"), ["groups"]);
}

/// A resource that reads parts of its id (`{{id.0}}`) is for a follow-up whose `id` gives them
/// (a list, one call each); a batch sends each id whole, so the pair is refused at load.
#[test]
fn a_batch_cannot_give_the_parts_of_an_id() {
    let text = GOOD
        .replacen(
            "    list: { path: /users, records: data }\n",
            "    list: { path: /users, records: data }\n  members:\n    list: { path: \"/workspaces/{{id.0}}/groups/{{id.1}}\", records: data }\n",
            1,
        )
        .replacen(
            "        resource: users.list\n",
            "        resource: users.list\n        follow_up:\n          groups: { resource: members.list, per: page, id: \"[[team, id]]\", batch: { size: 10, param: ids } }\n",
            1,
        )
        .replace(r#"{ "id": id }"#, r#"{ "id": id, "groups": [$groups.{ "id": id }] }"#);
    assert_eq!(
        load_errors(&[integration("bad", &text)]),
        [
            "mappings/bad.yaml:17: unified.user-directory.users.list.follow_up.groups.resource: `members.list` reads parts of its id (`{{id.0}}`), which a batch cannot give: a batch sends each id whole"
        ]
    );
}

/// A get's resource says which record it wants with `{{id}}` (one id: not its parts, which only
/// a follow-up gives); a list's resource has no id to read.
#[test]
fn a_get_reads_one_id_and_a_list_none() {
    let with = |get_path: &str, list_path: &str| {
        GOOD.replace(
            "    list: { path: /users, records: data }\n",
            &format!("    list: {{ path: \"{list_path}\", records: data }}\n    get: {{ path: \"{get_path}\", records: \"$\" }}\n"),
        )
        .replace(
            "          { \"id\": id }\n",
            "          { \"id\": id }\n      get:\n        resource: users.get\n",
        )
    };
    Catalog::from_sources(
        &[model()],
        &[integration("ok", &with("/users/{{id}}", "/users"))],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    let sources = [
        integration("a", &with("/users", "/users")),
        integration("b", &with("/users/{{id.0}}/x/{{id.1}}", "/users")),
        integration("c", &with("/users/{{id}}", "/users/{{id}}")),
    ];
    assert_eq!(
        load_errors(&sources),
        [
            "mappings/a.yaml:18: unified.user-directory.users.get.resource: `users.get` never reads `{{id}}` (in its path, query or body), so a get could not say which record it wants",
            "mappings/b.yaml:18: unified.user-directory.users.get.resource: `users.get` reads parts of an id (`{{id.0}}`), which only a follow-up gives: a get's id is one",
            "mappings/c.yaml:14: unified.user-directory.users.list.resource: `users.list` reads `{{id}}`, which only a get has",
        ]
    );
}

/// A query mapping may read `$pass` only where the list has named passes, and
/// `native_filters_by_pass` names such a pass with some of the list's native filters.
#[test]
fn a_query_mapping_by_pass_and_native_filters_by_pass_name_the_lists_passes() {
    let with = |passes: bool, unified: &str| {
        let resource = match passes {
            true => {
                "    list:\n      path: /users\n      records: data\n      passes:\n        - name: members\n        - name: invitations\n          path: /invites\n    get: { path: \"/users/{{id}}\", records: data }\n"
            }
            false => {
                "    list: { path: /users, records: data }\n    get: { path: \"/users/{{id}}\", records: data }\n"
            }
        };
        GOOD.replacen("    list: { path: /users, records: data }\n", resource, 1)
            .replacen(
                "        resource: users.list\n",
                &format!("        resource: users.list\n{unified}"),
                1,
            )
            .replacen(
                "          { \"id\": id }\n",
                "          { \"id\": id }\n      get:\n        resource: users.get\n",
                1,
            )
    };
    let by_pass = "        native_filters: [email, status]\n        native_filters_by_pass: { invitations: [status] }\n        query_mapping: '$pass = \"members\" ? { \"email\": email }'\n";
    let catalog = Catalog::from_sources(&[model()], &[integration("parts", &with(true, by_pass))])
        .unwrap_or_else(|errors| panic!("{errors}"));
    let list = &catalog.integrations["parts"].unified[&unigate_mapping::MethodKey::new(
        "user-directory",
        "users",
        unigate_mapping::Method::List,
    )];
    assert!(list.query_reads_pass);
    assert_eq!(
        list.native_filters_by_pass,
        [("invitations".to_owned(), ["status".to_owned()].into())].into()
    );
    let cases = [
        (
            with(
                false,
                "        query_mapping: '$pass = \"members\" ? { \"email\": email }'\n",
            ),
            "mappings/parts.yaml:15: unified.user-directory.users.list.query_mapping: reads `$pass`, but `users.list` has no named passes: it would always be undefined",
        ),
        (
            with(
                true,
                "        native_filters: [email]\n        native_filters_by_pass: { guests: [] }\n        query_mapping: '{ \"email\": email }'\n",
            ),
            "mappings/parts.yaml:22: unified.user-directory.users.list.native_filters_by_pass.guests: the list's resource has no pass named `guests` (its named passes: members, invitations)",
        ),
        (
            with(
                true,
                "        native_filters: [email]\n        native_filters_by_pass: { invitations: [status] }\n        query_mapping: '{ \"email\": email }'\n",
            ),
            "mappings/parts.yaml:22: unified.user-directory.users.list.native_filters_by_pass.invitations[0]: `status` is not one of the list's `native_filters`: a pass applies some of those, and the gateway the rest",
        ),
    ];
    for (text, expected) in cases {
        let errors = load_errors(&[integration("parts", &text)]);
        assert_eq!(errors, [expected], "{text}");
    }
}
