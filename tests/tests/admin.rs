//! The admin API over the SQLite store: accounts created, listed, read, updated and deleted
//! through HTTP with the admin token; credentials go in and never come back out; everything
//! survives a restart of the gateway; the file holds no credential in clear.

use std::path::PathBuf;

use serde_json::{Value, json};
use unigate_gateway::Gateway;
use unigate_gateway::config::Config;
use unigate_tests::{RunningGateway, Scripted, Stub, get_json, repo_root, serve};

const ADMIN: &str = "admin-token-0123456789";
const API: &str = "api-token-0123";
const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn config_file(dir: &std::path::Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "api_tokens: [\"{API}\"]\nadmin_tokens: [\"${{TEST_ADMIN_TOKEN}}\"]\ncursor_secret: \"0123456789abcdef0123\"\nmappings_dir: {}\nstore:\n  kind: sqlite\n  path: accounts.db\n  key: \"${{TEST_STORE_KEY}}\"\nintegrated_accounts:\n  - id: seeded\n    integration: scim\n    context: {{ base_url: \"https://scim.example.test/v2\", token: seeded-SECRET }}\n",
            repo_root().join("mappings").display()
        ),
    )
    .unwrap();
    path
}

async fn start(path: &std::path::Path) -> RunningGateway {
    let env = |name: &str| match name {
        "TEST_ADMIN_TOKEN" => Some(ADMIN.to_owned()),
        "TEST_STORE_KEY" => Some(KEY.to_owned()),
        _ => None,
    };
    let config = Config::load(path, &env).unwrap();
    serve(
        Gateway::from_config(&config)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await
}

async fn admin(
    gateway: &RunningGateway,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", gateway.origin);
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "PATCH" => client.patch(url),
        "DELETE" => client.delete(url),
        _ => unreachable!(),
    }
    .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert!(
        !body.to_string().contains("SECRET"),
        "a credential came back: {body}"
    );
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_managed_over_http_and_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("unigate-admin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = config_file(&dir);
    let gateway = start(&path).await;

    // Only the admin token opens the admin API; the API token does not.
    assert_eq!(
        admin(&gateway, "GET", "/admin/integrated-accounts", API, None)
            .await
            .0,
        401
    );

    let (status, body) = admin(&gateway, "GET", "/admin/integrated-accounts", ADMIN, None).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"result": [{"id": "seeded", "integration": "scim", "base_url": null, "status": "active",
                                  "last_error": null, "mapping": null, "context_keys": ["base_url", "token"], "rate_limited": null}]})
        )
    );

    let created = json!({"id": "acme-okta", "integration": "okta", "context": {"subdomain": "acme", "api_token": "okta-SECRET"}});
    let (status, body) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(created.clone()),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            201,
            json!({"id": "acme-okta", "integration": "okta", "base_url": null, "status": "active",
                     "last_error": null, "mapping": null, "context_keys": ["subdomain", "api_token"], "rate_limited": null})
        )
    );
    assert_eq!(
        admin(
            &gateway,
            "POST",
            "/admin/integrated-accounts",
            ADMIN,
            Some(created)
        )
        .await
        .0,
        409
    );
    let (status, body) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(json!({"id": "bad", "integration": "okta", "context": {"subdomain": "acme"}})),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            400,
            json!("integrated account `bad`: the `okta` mapping needs `context.api_token`")
        )
    );
    assert_eq!(
        admin(
            &gateway,
            "POST",
            "/admin/integrated-accounts",
            ADMIN,
            Some(json!({"id": 5}))
        )
        .await
        .0,
        400
    );

    let (status, body) = admin(
        &gateway, "PATCH", "/admin/integrated-accounts/acme-okta", ADMIN,
        Some(json!({"context": {"api_token": "rotated-SECRET"}, "base_url": "https://okta.internal.example"})),
    )
    .await;
    assert_eq!(
        (status, body["base_url"].clone()),
        (200, json!("https://okta.internal.example"))
    );
    // `null` for a key that cannot be removed is a mistake to report, not "leave it".
    let (status, body) = admin(
        &gateway,
        "PATCH",
        "/admin/integrated-accounts/acme-okta",
        ADMIN,
        Some(json!({"integration": null})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body: invalid type: null, expected a string"),
        "{body}"
    );
    assert_eq!(
        admin(
            &gateway,
            "GET",
            "/admin/integrated-accounts/nobody",
            ADMIN,
            None
        )
        .await
        .0,
        404
    );
    drop(gateway);

    // A new gateway over the same file sees everything.
    let gateway = start(&path).await;
    let (status, body) = admin(
        &gateway,
        "GET",
        "/admin/integrated-accounts/acme-okta",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        (
            status,
            body["base_url"].clone(),
            body["context_keys"].clone()
        ),
        (
            200,
            json!("https://okta.internal.example"),
            json!(["subdomain", "api_token"])
        )
    );
    let file = std::fs::read(dir.join("accounts.db")).unwrap();
    let text = String::from_utf8_lossy(&file);
    assert!(!text.contains("rotated-SECRET") && !text.contains("seeded-SECRET"));

    assert_eq!(
        admin(
            &gateway,
            "DELETE",
            "/admin/integrated-accounts/acme-okta",
            ADMIN,
            None
        )
        .await,
        (200, json!({"id": "acme-okta"}))
    );
    assert_eq!(
        admin(
            &gateway,
            "DELETE",
            "/admin/integrated-accounts/acme-okta",
            ADMIN,
            None
        )
        .await
        .0,
        404
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A provider that refuses an account's API key (a 401) marks the account `needs_reauth`: later
/// calls answer 401 without reaching the provider, the admin API shows why, a write that changes
/// nothing the account sends leaves the mark, and new credentials bring it back (a reconnect, no
/// `status: active` needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_api_key_holds_the_account_until_it_is_reconnected() {
    let dir = std::env::temp_dir().join(format!("unigate-admin-refused-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gateway = start(&config_file(&dir)).await;
    let stub = Stub::start().await;
    let scripted = |status: u16, body: &str| Scripted {
        status,
        headers: vec![],
        body: body.as_bytes().to_vec(),
        for_request: None,
    };
    stub.script(vec![
        scripted(
            401,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"detail":"token revoked-SECRET was revoked","status":"401"}"#,
        ),
        scripted(
            200,
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":1,"startIndex":1,"itemsPerPage":1,"Resources":[{"id":"u1","userName":"ada@example.com","active":true}]}"#,
        ),
    ]);
    let (status, _) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(json!({"id": "acme-scim", "integration": "scim",
            "context": {"base_url": format!("{}/v2", stub.origin()), "token": "revoked-SECRET"}})),
    )
    .await;
    assert_eq!(status, 201);
    let list = || async {
        let (status, body) = get_json(
            &format!(
                "{}/unified/user-directory/users?integrated_account_id=acme-scim",
                gateway.origin
            ),
            Some(API),
        )
        .await;
        assert!(!body.to_string().contains("SECRET"), "{body}");
        (status, body)
    };

    let (status, body) = list().await;
    assert_eq!(
        (
            status,
            body["message"].clone(),
            body["truto_is_remote_error"].clone()
        ),
        (401, json!("token [redacted] was revoked"), json!(true)),
        "{body}"
    );
    let reason =
        "the provider refused the account's credentials (HTTP 401: token [redacted] was revoked)";
    let (status, body) = list().await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            401,
            json!(format!(
                "integrated account `acme-scim` needs to be reconnected: {reason}"
            ))
        ),
        "{body}"
    );
    assert_eq!(stub.received().len(), 1, "a refused key is not sent again");
    let (_, body) = admin(
        &gateway,
        "GET",
        "/admin/integrated-accounts/acme-scim",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(
        (body["status"].clone(), body["last_error"].clone()),
        (json!("needs_reauth"), json!(reason))
    );

    let (status, body) = admin(
        &gateway,
        "PATCH",
        "/admin/integrated-accounts/acme-scim",
        ADMIN,
        Some(json!({"context": {"token": "revoked-SECRET"}})),
    )
    .await;
    assert_eq!(
        (status, body["status"].clone(), body["last_error"].clone()),
        (200, json!("needs_reauth"), json!(reason)),
        "the same key again is no reconnect"
    );
    let (status, body) = admin(
        &gateway,
        "PATCH",
        "/admin/integrated-accounts/acme-scim",
        ADMIN,
        Some(json!({"context": {"token": "fresh-SECRET"}})),
    )
    .await;
    assert_eq!(
        (status, body["status"].clone(), body["last_error"].clone()),
        (200, json!("active"), Value::Null)
    );
    let (status, body) = list().await;
    assert_eq!(
        (status, body["result"][0]["id"].clone()),
        (200, json!("u1"))
    );
    let received = stub.received();
    assert_eq!(received.len(), 2);
    assert!(
        received[1]
            .headers
            .contains(&("authorization".to_owned(), "Bearer fresh-SECRET".to_owned())),
        "{:?}",
        received[1].headers
    );
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A context the mapping's `account_checks` refuse (a Microsoft `cloud` it does not know, which
/// would otherwise get the global hosts and a token request refused there) is a 400 naming what
/// is wanted, on create and on update; a known value is accepted.
#[tokio::test]
async fn an_account_the_mapping_does_not_serve_is_refused_with_what_it_needs() {
    let dir = std::env::temp_dir().join(format!("unigate-admin-checks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gateway = start(&config_file(&dir)).await;
    let wanted = "`cloud` names no Microsoft cloud: leave it out for the global service (or say global or gcc), or say usgov (GCC High), usgov-dod (DoD) or china (21Vianet)";
    let context = |cloud: &str| json!({"tenant_id": "t", "client_id": "c", "client_secret": "s", "cloud": cloud});
    let (status, body) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(json!({"id": "gov", "integration": "azure-active-directory", "context": context("germany")})),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (400, json!(format!("integrated account `gov`: {wanted}")))
    );
    let (status, body) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(json!({"id": "gov", "integration": "azure-active-directory", "context": context("USGov")})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin(
        &gateway,
        "PATCH",
        "/admin/integrated-accounts/gov",
        ADMIN,
        Some(json!({"context": {"cloud": "usgovt"}})),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (400, json!(format!("integrated account `gov`: {wanted}")))
    );
    // A key only the file's base URL reads (Make's `zone`) is not needed by an account with its
    // own base URL (a private Make instance); without one it is.
    let make = |id: &str, base_url: Option<&str>| {
        json!({"id": id, "integration": "make", "context": {"api_token": "t"},
               "base_url": base_url})
    };
    let (status, body) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(make(
            "private-make",
            Some("https://make.acme.example/api/v2"),
        )),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(make("cloud-make", None)),
    )
    .await;
    assert_eq!(
        (status, body["message"].clone()),
        (
            400,
            json!("integrated account `cloud-make`: the `make` mapping needs `context.zone`")
        )
    );
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A provider's wait shows on the account (`rate_limited`: the seconds left and the status), so
/// an operator sees why calls are answered 429 unsent; an admin change releases it.
#[tokio::test]
async fn a_providers_wait_shows_on_the_account_until_it_is_changed() {
    let dir = std::env::temp_dir().join(format!("unigate-admin-held-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let gateway = start(&config_file(&dir)).await;
    let stub = Stub::start().await;
    stub.script(vec![Scripted {
        status: 429,
        headers: vec![("retry-after".to_owned(), "120".to_owned())],
        body: br#"{"detail":"slow down","status":"429"}"#.to_vec(),
        for_request: None,
    }]);
    let (status, body) = admin(
        &gateway,
        "POST",
        "/admin/integrated-accounts",
        ADMIN,
        Some(json!({"id": "busy", "integration": "scim",
            "context": {"base_url": format!("{}/v2", stub.origin()), "token": "t"}})),
    )
    .await;
    assert_eq!((status, body["rate_limited"].clone()), (201, Value::Null));
    let (status, _) = get_json(
        &format!(
            "{}/unified/user-directory/users?integrated_account_id=busy",
            gateway.origin
        ),
        Some(API),
    )
    .await;
    assert_eq!(status, 429);
    let shown = || async {
        admin(
            &gateway,
            "GET",
            "/admin/integrated-accounts/busy",
            ADMIN,
            None,
        )
        .await
        .1["rate_limited"]
            .clone()
    };
    let held = shown().await;
    assert_eq!(held["provider_status"], json!(429), "{held}");
    let left = held["seconds_left"].as_u64().unwrap();
    assert!((110..=120).contains(&left), "{held}");
    let (_, listed) = admin(&gateway, "GET", "/admin/integrated-accounts", ADMIN, None).await;
    let listed = listed["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|account| account["id"] == "busy")
        .unwrap()["rate_limited"]
        .clone();
    assert_eq!(listed["provider_status"], json!(429));
    let (status, _) = admin(
        &gateway,
        "PATCH",
        "/admin/integrated-accounts/busy",
        ADMIN,
        Some(json!({"context": {"token": "t2"}})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(shown().await, Value::Null);
    drop(gateway);
    let _ = std::fs::remove_dir_all(&dir);
}
