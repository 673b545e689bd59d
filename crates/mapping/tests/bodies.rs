//! Request bodies and answers in the format a file declares: a `body` string goes out as text, an
//! object as JSON or (under `body_format: xml`) as an XML document, and XML answers are read into
//! the JSON the expressions see.

use std::path::{Path, PathBuf};

use serde_json::json;
use unigate_mapping::{BodyFormat, Catalog, RequestBody, Scope, Source, read_body, render_body};
use unigate_pagination::Position;

fn model() -> Source {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/models/user-directory.yaml");
    Source {
        text: std::fs::read_to_string(&path).unwrap(),
        path,
    }
}

fn compile(name: &str, format: &str, body: &str) -> Catalog {
    let text = format!(
        r#"name: Example
docs: https://example.test/docs
base_url: "https://example.test/api"
{format}
auth: {{ kind: none }}
pagination: {{ style: cursor, next_cursor: next, continue_path: /more }}
resources:
  users:
    list:
      method: POST
      path: /users
      records: users
      body: |
        {body}
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          {{ "id": id }}
"#
    );
    let source = Source {
        path: PathBuf::from(format!("mappings/{name}.yaml")),
        text,
    };
    Catalog::from_sources(&[model()], &[source]).unwrap_or_else(|errors| panic!("{errors}"))
}

fn render(catalog: &Catalog, name: &str, position: &Position) -> RequestBody {
    let resource = &catalog.integrations[name].resources["users.list"];
    let scope = Scope::new([("context", json!({"login": "a&b", "code": null}))]);
    render_body(resource, None, position, 50, &json!({}), None, &scope)
        .unwrap()
        .unwrap()
}

/// The body of a walk's first page (of pass `pass`), 50 a page, with no context.
fn first_page_body(
    resource: &unigate_mapping::Resource,
    pass: Option<usize>,
) -> Result<Option<RequestBody>, unigate_mapping::MapError> {
    render_body(
        resource,
        pass,
        &Position::First,
        50,
        &json!({}),
        None,
        &Scope::new([]),
    )
}

#[test]
fn a_string_body_goes_out_as_text_and_an_object_as_json() {
    let catalog = compile(
        "json",
        "",
        r#"cursor ? cursor : {"filter": {"login": $context.login}}"#,
    );
    let first = render(&catalog, "json", &Position::First);
    assert_eq!(
        (String::from_utf8(first.bytes).unwrap(), first.content_type),
        (
            r#"{"filter":{"login":"a&b"}}"#.to_owned(),
            "application/json"
        )
    );
    let more = render(&catalog, "json", &Position::Token("TOKEN-2".to_owned()));
    assert_eq!(
        (String::from_utf8(more.bytes).unwrap(), more.content_type),
        ("TOKEN-2".to_owned(), "text/plain; charset=utf-8")
    );
}

#[test]
fn an_xml_file_writes_its_body_as_an_escaped_document() {
    let catalog = compile(
        "xmlapi",
        "body_format: xml",
        r#"{"call": {"@method": "exportUsers", "credentials": {"@login": $context.login, "@instanceCode": $context.code}, "page": cursor}}"#,
    );
    assert_eq!(catalog.integrations["xmlapi"].body_format, BodyFormat::Xml);
    let body = render(&catalog, "xmlapi", &Position::First);
    assert_eq!(
        (String::from_utf8(body.bytes).unwrap(), body.content_type),
        (
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<call method="exportUsers"><credentials login="a&amp;b"/><page/></call>"#
            )
            .to_owned(),
            "text/xml; charset=utf-8"
        )
    );
}

#[test]
fn a_body_without_an_xml_form_is_a_mapping_error() {
    let catalog = compile("broken", "body_format: xml", r#"{"a": 1, "b": 2}"#);
    let resource = &catalog.integrations["broken"].resources["users.list"];
    let error = first_page_body(resource, None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "`body` has no XML form: an XML body must be an object with one key, the root element"
    );
}

#[test]
fn answers_are_read_in_the_declared_format() {
    let xml =
        br#"<response success="true"><output><users><user id="1"/></users></output></response>"#;
    assert_eq!(
        read_body(BodyFormat::Xml, xml).unwrap(),
        json!({"response": {"@success": "true", "output": {"users": {"user": {"@id": "1"}}}}})
    );
    assert!(read_body(BodyFormat::Json, xml).is_err());
    assert_eq!(read_body(BodyFormat::Json, b"[1]").unwrap(), json!([1]));
    assert!(read_body(BodyFormat::Xml, b"[1]").is_err());
}

#[test]
fn an_unknown_body_format_is_refused_with_its_place() {
    let model = model();
    let source = Source {
        path: PathBuf::from("mappings/bad.yaml"),
        text: "name: Bad\nbody_format: yaml\n".to_owned(),
    };
    let errors = Catalog::from_sources(&[model], &[source])
        .unwrap_err()
        .to_string();
    assert!(errors.contains("mappings/bad.yaml:2"), "{errors}");
    assert!(errors.contains("body_format"), "{errors}");
}

#[test]
fn omitted_fields_are_marked_where_the_records_are_or_anywhere() {
    let mapping = |records: &str| {
        format!(
            r#"name: Example
docs: https://example.test/docs
base_url: "https://example.test/api"
auth: {{ kind: none }}
resources:
  users:
    list: {{ path: /users, records: "{records}", omit: [api_key, secret.value] }}
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: '{{ "id": id }}'
"#
        )
    };
    let page = json!({"data": {"users": [
        {"id": 1, "api_key": "k1", "secret": {"value": "s1", "kind": "x"}},
        {"id": 2}
    ]}, "api_key": "page-level"});
    for (records, page_level) in [
        ("data.users", "page-level"),
        ("data.users[id > 0]", "[omitted]"),
    ] {
        let source = Source {
            path: PathBuf::from("mappings/example.yaml"),
            text: mapping(records),
        };
        let catalog = Catalog::from_sources(&[model()], &[source]).unwrap();
        let resource = &catalog.integrations["example"].resources["users.list"];
        let mut marked = page.clone();
        unigate_mapping::mark_omitted(resource, &mut marked);
        assert_eq!(
            marked,
            json!({"data": {"users": [
                {"id": 1, "api_key": "[omitted]", "secret": {"value": "[omitted]", "kind": "x"}},
                {"id": 2}
            ]}, "api_key": page_level}),
            "{records}"
        );
    }
}

/// A list walked in parts asks each part with its own body: the body reads `pass`, the name of
/// the pass walked (Google Ads: its users, then its pending invitations, two search queries).
#[test]
fn a_body_reads_the_pass_it_asks_for() {
    let text = r#"name: Example
docs: https://example.test/docs
base_url: "https://example.test/api"
auth: { kind: none }
pagination: { style: cursor, next_cursor: next, cursor_param: page_token }
resources:
  users:
    list:
      method: POST
      path: /search
      records: results
      passes:
        - { name: users }
        - { name: invitations }
      body: |
        {"query": pass = "invitations" ? "SELECT invitation" : "SELECT user"}
unified:
  user-directory:
    users:
      list:
        resource: users.list
        response_mapping: |
          { "id": id, "status": $pass = "invitations" ? "invited" : "active" }
"#;
    let source = Source {
        path: PathBuf::from("mappings/parts.yaml"),
        text: text.to_owned(),
    };
    let catalog =
        Catalog::from_sources(&[model()], &[source]).unwrap_or_else(|errors| panic!("{errors}"));
    let resource = &catalog.integrations["parts"].resources["users.list"];
    let body = |pass| {
        let rendered = first_page_body(resource, pass).unwrap().unwrap();
        String::from_utf8(rendered.bytes).unwrap()
    };
    assert_eq!(body(Some(0)), r#"{"query":"SELECT user"}"#);
    assert_eq!(body(Some(1)), r#"{"query":"SELECT invitation"}"#);
    assert_eq!(
        body(None),
        r#"{"query":"SELECT user"}"#,
        "no pass: `pass` is null"
    );
}
