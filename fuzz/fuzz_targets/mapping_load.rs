//! `Catalog::from_sources` with arbitrary text as an integration file (next to a valid one it may
//! `extends`): never panics, and every error names a file it was given and says something.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use unigate_mapping::{Catalog, Source};

const MODEL: &str = include_str!("../../mappings/models/user-directory.yaml");

const VALID: &str = r#"name: Example
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

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let models = [Source {
        path: PathBuf::from("mappings/models/user-directory.yaml"),
        text: MODEL.to_owned(),
    }];
    let integrations = [
        Source {
            path: PathBuf::from("mappings/example.yaml"),
            text: VALID.to_owned(),
        },
        Source {
            path: PathBuf::from("mappings/fuzzed.yaml"),
            text: text.to_owned(),
        },
    ];
    if let Err(errors) = Catalog::from_sources(&models, &integrations) {
        assert!(!errors.0.is_empty());
        for error in &errors.0 {
            assert_eq!(error.file, integrations[1].path, "{error}");
            assert!(!error.message.trim().is_empty(), "{error:?}");
        }
    }
});
