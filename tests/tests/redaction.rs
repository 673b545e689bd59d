//! No credential appears in any `Debug` output of the values a call carries: the account, the
//! expression scope (`$context`), the rendered credential, and the rendered request with its
//! context-filled headers and query values (Datadog's application key, Trello's key).

use serde_json::{Value, json};
use unigate_mapping::{Scope, Vars, render_credential, render_request};
use unigate_store::IntegratedAccount;
use unigate_tests::repo_catalog;

fn assert_redacted(what: &str, debug: String) {
    assert!(
        !debug.contains("SECRET"),
        "{what} shows a credential: {debug}"
    );
}

#[test]
fn no_debug_output_holds_a_credential() {
    let catalog = repo_catalog();
    let cases: [(&str, Value); 3] = [
        (
            "datadog",
            json!({"site": "datadoghq.eu", "api_key": "api-SECRET", "application_key": "app-SECRET"}),
        ),
        (
            "trello",
            json!({"api_key": "key-SECRET", "api_token": "token-SECRET", "organization_id": "org1"}),
        ),
        (
            "okta",
            json!({"subdomain": "acme", "api_token": "ssws-SECRET"}),
        ),
    ];
    for (id, context) in cases {
        let integration = &catalog.integrations[id];
        let account = IntegratedAccount {
            id: "acc".into(),
            integration: id.into(),
            context: context.clone(),
            base_url: None,
            status: Default::default(),
            last_error: None,
            mapping: None,
        };
        assert_redacted("IntegratedAccount", format!("{account:?}"));
        let scope = Scope::new([("context", context.clone())]);
        assert_redacted("Scope", format!("{scope:?}"));
        let credential = render_credential(integration, &context, None).unwrap();
        assert_redacted("Credential", format!("{credential:?}"));
        let resource =
            &integration.resources[&integration.unified.values().next().unwrap().resource];
        let request = render_request(integration, resource, Vars::context(&context), None).unwrap();
        assert_redacted("RenderedRequest", format!("{request:?}"));
        // The request does carry them, where the provider reads them.
        let carried = request
            .secret_headers
            .iter()
            .chain(&request.secret_query)
            .map(|(_, value)| value.expose().to_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if id != "okta" {
            assert!(carried.contains("SECRET"), "{id}: {carried}");
        }
    }
}
