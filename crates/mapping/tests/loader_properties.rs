//! Property tests for the mapping loader: whatever text an integration file holds, loading it
//! never panics, and every error it reports names that file and says something.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use unigate_mapping::{Catalog, Source};

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

const PATH: &str = "mappings/example.yaml";

fn model() -> Source {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/models/user-directory.yaml");
    Source {
        text: std::fs::read_to_string(&path).expect("the user-directory model is readable"),
        path,
    }
}

fn integration(text: String) -> Source {
    Source {
        path: PathBuf::from(PATH),
        text,
    }
}

/// Loads `text` as `mappings/example.yaml` and checks every error it reports.
fn check(models: &[Source], text: String) -> Result<(), TestCaseError> {
    let lines = text.lines().count() as u64;
    let result = Catalog::from_sources(models, &[integration(text)]);
    if let Err(errors) = result {
        prop_assert!(!errors.0.is_empty(), "Err with no error in it");
        for error in &errors.0 {
            prop_assert_eq!(&error.file, &PathBuf::from(PATH), "{}", error);
            prop_assert!(
                !error.message.trim().is_empty(),
                "empty message: {:?}",
                error
            );
            prop_assert!(error.to_string().contains(PATH), "{}", error);
            prop_assert!(
                error.line <= lines + 1,
                "line {} of {} lines: {}",
                error.line,
                lines,
                error
            );
        }
    }
    Ok(())
}

/// One edit of the valid file, by line or by character.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    ReplaceChar(Index, char),
    InsertChar(Index, char),
    DeleteChar(Index),
}

fn yaml_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop::sample::select(vec![
            ' ', ':', '-', '{', '}', '[', ']', '|', '>', '"', '\'', '#', '&', '*', '!', '%', '@',
            '`', ',', '?', '\n', '\t', '.', '$', '(', ')',
        ]),
        2 => prop::char::range('a', 'z'),
        1 => any::<char>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => any::<Index>().prop_map(Edit::DeleteLine),
        2 => any::<Index>().prop_map(Edit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        3 => (any::<Index>(), yaml_char()).prop_map(|(at, c)| Edit::ReplaceChar(at, c)),
        2 => (any::<Index>(), yaml_char()).prop_map(|(at, c)| Edit::InsertChar(at, c)),
        2 => any::<Index>().prop_map(Edit::DeleteChar),
    ]
}

fn apply(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut chars: Vec<char> = text.chars().collect();
    match edit {
        Edit::DeleteLine(at) if !lines.is_empty() => {
            lines.remove(at.index(lines.len()));
        }
        Edit::DuplicateLine(at) if !lines.is_empty() => {
            let at = at.index(lines.len());
            lines.insert(at, lines[at].clone());
        }
        Edit::SwapLines(a, b) if !lines.is_empty() => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        Edit::ReplaceChar(at, c) if !chars.is_empty() => {
            let at = at.index(chars.len());
            chars[at] = *c;
            return chars.into_iter().collect();
        }
        Edit::InsertChar(at, c) => {
            chars.insert(at.index(chars.len() + 1), *c);
            return chars.into_iter().collect();
        }
        Edit::DeleteChar(at) if !chars.is_empty() => {
            chars.remove(at.index(chars.len()));
            return chars.into_iter().collect();
        }
        _ => return text.to_owned(),
    }
    let mut joined = lines.join("\n");
    joined.push('\n');
    joined
}

fn near_valid() -> impl Strategy<Value = String> {
    prop::collection::vec(edit(), 1..6).prop_map(|edits| {
        edits
            .iter()
            .fold(VALID.to_owned(), |text, edit| apply(&text, edit))
    })
}

/// YAML-looking lines assembled from the valid file's own keys and values.
fn yaml_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "name",
        "docs",
        "base_url",
        "auth",
        "kind",
        "bearer",
        "token",
        "pagination",
        "style",
        "cursor",
        "resources",
        "users",
        "list",
        "path",
        "/users",
        "records",
        "data",
        "unified",
        "user-directory",
        "resource",
        "users.list",
        "response_mapping",
        "extends",
        "example",
        "{{context.token}}",
        "{{context.",
        "{ \"id\": id }",
        "$",
        "null",
        "~",
        "1",
        "-1",
        "true",
        "[]",
        "{}",
        "&a",
        "*a",
        "!!str",
        "<<",
        "|",
        ">",
    ]);
    let line = (
        0usize..5,
        prop::collection::vec(token, 1..4),
        prop::sample::select(vec![": ", ":", " ", "- ", ", "]),
    )
        .prop_map(|(indent, tokens, separator)| {
            format!("{}{}", "  ".repeat(indent), tokens.join(separator))
        });
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&[model()], text)?;
    }

    #[test]
    fn yaml_soup_never_panics(text in yaml_soup()) {
        check(&[model()], text)?;
    }

    #[test]
    fn near_valid_files_never_panic(text in near_valid()) {
        check(&[model()], text)?;
    }

    #[test]
    fn near_valid_files_without_models_never_panic(text in near_valid()) {
        check(&[], text)?;
    }
}

#[test]
fn the_unedited_example_loads() {
    let catalog = Catalog::from_sources(&[model()], &[integration(VALID.to_owned())])
        .unwrap_or_else(|errors| panic!("{errors}"));
    assert!(catalog.integrations.contains_key("example"));
}
