//! Loading a mappings directory: `models/*.yaml` first, then every `<integration>.yaml`, each
//! compiled once. All errors of all files are returned together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use unigate_unified::UnifiedModel;
use unigate_unified::model::ModelSpec;

use crate::diagnostics::{FileCompiler, LoadError, LoadErrors, path_at_line};
use crate::integration::{Integration, Variant, compile_integration};
use crate::spec::IntegrationSpec;

/// Every model and integration of a mappings directory, compiled.
#[derive(Debug, Default)]
pub struct Catalog {
    pub models: BTreeMap<String, UnifiedModel>,
    pub integrations: BTreeMap<String, Arc<Integration>>,
    /// SHA-256 (hex) over the sources' file names and texts: which mapping set is loaded.
    pub digest: String,
    /// Each integration's file with its `extends` chain applied, for accounts' overrides.
    specs: BTreeMap<String, IntegrationSpec>,
}

fn digest_of<'a>(sources: impl Iterator<Item = &'a Source>) -> String {
    use sha2::{Digest, Sha256};
    let mut named: Vec<(String, &str)> = sources
        .map(|source| {
            let name = source
                .path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, source.text.as_str())
        })
        .collect();
    named.sort();
    let mut hasher = Sha256::new();
    for (name, text) in named {
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// One source file: where it came from (for messages) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    /// The file stem: a model's or an integration's id.
    pub(crate) fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

pub(crate) fn parse_yaml<T: DeserializeOwned>(
    source: &Source,
    errors: &mut Vec<LoadError>,
) -> Option<T> {
    match serde_saphyr::from_str::<T>(&source.text) {
        Ok(value) => Some(value),
        Err(error) => {
            let line = error
                .location()
                .map(|location| location.line())
                .unwrap_or(0);
            let rendered = error.without_snippet().to_string();
            // Drop the "line L column C: " prefix; the line is reported in its own field.
            let message = rendered
                .split_once(": ")
                .filter(|(prefix, _)| prefix.starts_with("line ") || prefix.starts_with("error"))
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or(rendered);
            let message = message.trim_start_matches("line ").to_owned();
            let message = match message.split_once(": ") {
                Some((position, rest)) if position.contains("column") => rest.to_owned(),
                _ => message,
            };
            // serde's own messages may end with the position again.
            let message = match message.rfind(" at line ") {
                Some(index) if message[index..].contains("column") => message[..index].to_owned(),
                _ => message,
            };
            errors.push(LoadError {
                file: source.path.clone(),
                line,
                path: path_at_line(&source.text, line),
                message,
            });
            None
        }
    }
}

pub(crate) fn read_yaml_files(dir: &Path, errors: &mut Vec<LoadError>) -> Vec<Source> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(LoadError {
                file: dir.to_owned(),
                line: 0,
                path: String::new(),
                message: format!("cannot read directory: {error}"),
            });
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                )
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| match std::fs::read_to_string(&path) {
            Ok(text) => Some(Source { path, text }),
            Err(error) => {
                errors.push(LoadError {
                    file: path,
                    line: 0,
                    path: String::new(),
                    message: format!("cannot read file: {error}"),
                });
                None
            }
        })
        .collect()
}

impl Catalog {
    /// Loads `dir/models/*.yaml` and `dir/*.yaml`.
    pub fn load_dir(dir: &Path) -> Result<Catalog, LoadErrors> {
        Catalog::load_dir_with(dir, None)
    }

    /// As [`Catalog::load_dir`], with `file` in place of the file of the same name (or added):
    /// how `unigate try --mapping` tries an edit without touching the running gateway.
    pub fn load_dir_with(dir: &Path, file: Option<&Path>) -> Result<Catalog, LoadErrors> {
        let mut errors = Vec::new();
        let models = read_yaml_files(&dir.join("models"), &mut errors);
        let mut integrations = read_yaml_files(dir, &mut errors);
        if let Some(file) = file {
            integrations.retain(|source| source.path.file_name() != file.file_name());
            match std::fs::read_to_string(file) {
                Ok(text) => integrations.push(Source {
                    path: file.to_owned(),
                    text,
                }),
                Err(error) => errors.push(LoadError {
                    file: file.to_owned(),
                    line: 0,
                    path: String::new(),
                    message: format!("cannot read file: {error}"),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        Catalog::from_sources(&models, &integrations)
    }

    /// Compiles models and integrations given as text (used by `load_dir` and by the built-in
    /// sandbox, whose files are compiled into the binary).
    pub fn from_sources(models: &[Source], integrations: &[Source]) -> Result<Catalog, LoadErrors> {
        let mut errors = Vec::new();
        let mut catalog = Catalog {
            digest: digest_of(models.iter().chain(integrations)),
            ..Catalog::default()
        };
        for source in models {
            let Some(spec) = parse_yaml::<ModelSpec>(source, &mut errors) else {
                continue;
            };
            if spec.name != source.stem() {
                errors.push(LoadError {
                    file: source.path.clone(),
                    line: 1,
                    path: "name".into(),
                    message: format!("must equal the file name `{}`", source.stem()),
                });
                continue;
            }
            match UnifiedModel::compile(spec) {
                Ok(model) => {
                    catalog.models.insert(model.name.clone(), model);
                }
                Err(problems) => {
                    errors.extend(problems.into_iter().map(|(path, message)| LoadError {
                        file: source.path.clone(),
                        line: line_of_path(&source.text, &path),
                        path,
                        message,
                    }))
                }
            }
        }
        let mut parsed: BTreeMap<String, (&Source, IntegrationSpec)> = BTreeMap::new();
        let mut unparsed: BTreeSet<String> = BTreeSet::new();
        for source in integrations {
            let id = source.stem();
            if !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                errors.push(LoadError {
                    file: source.path.clone(),
                    line: 0,
                    path: String::new(),
                    message: "an integration file is named after its id: lowercase letters, digits and `-`".into(),
                });
                continue;
            }
            match parse_yaml::<IntegrationSpec>(source, &mut errors) {
                Some(spec) => {
                    parsed.insert(id, (source, spec));
                }
                None => {
                    unparsed.insert(id);
                }
            }
        }
        for (id, (source, own)) in &parsed {
            // A family base is checked through the files that extend it.
            if own.is_abstract {
                continue;
            }
            let spec = match resolve_extends(id, &parsed, &unparsed, &mut Vec::new()) {
                Ok(spec) => spec,
                Err((line, message)) => {
                    errors.push(LoadError {
                        file: source.path.clone(),
                        line,
                        path: "extends".into(),
                        message,
                    });
                    continue;
                }
            };
            let before = errors.len();
            let mut compiler = FileCompiler {
                file: &source.path,
                errors: &mut errors,
            };
            catalog.specs.insert(id.clone(), spec.clone());
            let compiled = compile_with_variants(id, spec, &catalog.models, &mut compiler);
            if let Some(integration) = compiled
                && errors.len() == before
            {
                catalog
                    .integrations
                    .insert(id.clone(), Arc::new(integration));
            }
        }
        // By file, then line: the order a reader fixes them in. The sort is stable. A mistake
        // in a part the file's variants share is found once per variant: said once.
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        let mut said = std::collections::HashSet::new();
        errors.retain(|error| said.insert(error.clone()));
        if errors.is_empty() {
            Ok(catalog)
        } else {
            Err(LoadErrors(errors))
        }
    }
}

/// An integration and its variants: each variant's `with` merged over the file (as a file over
/// its base) and compiled as an integration of its own.
fn compile_with_variants(
    id: &str,
    mut spec: IntegrationSpec,
    models: &BTreeMap<String, UnifiedModel>,
    compiler: &mut FileCompiler<'_>,
) -> Option<Integration> {
    let variants = std::mem::take(&mut spec.variants);
    let mut compiled = Vec::new();
    for (index, variant) in variants.iter().enumerate() {
        let path = format!("variants[{index}]");
        if variant.with.extends.is_some() || !variant.with.variants.is_empty() {
            compiler.error_at(
                &variant.name,
                &format!("{path}.with"),
                "a variant cannot have `extends` or `variants` of its own",
            );
            continue;
        }
        if !variant.with.account_checks.is_empty() {
            // Checks hold for every account of the file: they say which variants can exist.
            compiler.error_at(
                &variant.name,
                &format!("{path}.with.account_checks"),
                "`account_checks` belong to the file, not to a variant",
            );
            continue;
        }
        let when = compiler.expression(&variant.when, &format!("{path}.when"));
        let merged = (*variant.with).clone().extend(&spec);
        let integration = compile_integration(id, merged, models, compiler);
        if let (Some(when), Some(integration)) = (when, integration) {
            compiled.push(Variant {
                name: variant.name.value.clone(),
                when,
                integration: Arc::new(integration),
            });
        }
    }
    let mut integration = compile_integration(id, spec, models, compiler)?;
    integration.variants = compiled;
    Some(integration)
}

impl Catalog {
    /// `integration` with an account's mapping override merged over it, as `extends` merges a
    /// file over its base; errors as a file's, naming the account (`what`) in place of a file,
    /// with the override text's lines.
    pub fn with_override(
        &self,
        integration: &str,
        what: &str,
        text: &str,
    ) -> Result<Integration, LoadErrors> {
        let source = Source {
            path: PathBuf::from(what),
            text: text.to_owned(),
        };
        let mut errors = Vec::new();
        let refuse = |errors: &mut Vec<LoadError>, path: &str, message: String| {
            errors.push(LoadError {
                file: source.path.clone(),
                line: line_of_path(&source.text, path),
                path: path.to_owned(),
                message,
            });
        };
        let Some(spec) = parse_yaml::<IntegrationSpec>(&source, &mut errors) else {
            return Err(LoadErrors(errors));
        };
        if spec.extends.is_some() || spec.is_abstract || !spec.variants.is_empty() {
            refuse(
                &mut errors,
                "extends",
                "an account's mapping extends its integration; it cannot have `extends`, `abstract` or `variants`".to_owned(),
            );
            return Err(LoadErrors(errors));
        }
        let Some(base) = self.specs.get(integration) else {
            refuse(
                &mut errors,
                "",
                format!("integration `{integration}` is not loaded"),
            );
            return Err(LoadErrors(errors));
        };
        let merged = spec.extend(base);
        let mut compiler = FileCompiler {
            file: &source.path,
            errors: &mut errors,
        };
        let compiled = compile_with_variants(integration, merged, &self.models, &mut compiler);
        match compiled {
            Some(integration) if errors.is_empty() => Ok(integration),
            _ => Err(LoadErrors(errors)),
        }
    }
}

/// An integration spec with its `extends` chain applied, base first. Errors carry the line of the
/// `extends` key.
fn resolve_extends(
    id: &str,
    parsed: &BTreeMap<String, (&Source, IntegrationSpec)>,
    unparsed: &BTreeSet<String>,
    chain: &mut Vec<String>,
) -> Result<IntegrationSpec, (u64, String)> {
    let (_, spec) = &parsed[id];
    let Some(base) = &spec.extends else {
        return Ok(spec.clone());
    };
    let line = base.referenced.line();
    chain.push(id.to_owned());
    if chain.contains(&base.value) {
        return Err((
            line,
            format!("`extends` loops: {} -> {}", chain.join(" -> "), base.value),
        ));
    }
    if unparsed.contains(&base.value) {
        return Err((
            line,
            format!("extends `{}`, whose file has errors of its own", base.value),
        ));
    }
    if !parsed.contains_key(&base.value) {
        return Err((
            line,
            format!(
                "extends `{}`, which is not an integration file here",
                base.value
            ),
        ));
    }
    let resolved_base = resolve_extends(&base.value, parsed, unparsed, chain)?;
    Ok(spec.clone().extend(&resolved_base))
}

/// The line where a dotted path's key stands, for errors found after parsing; 0 if not found.
fn line_of_path(text: &str, path: &str) -> u64 {
    let wanted = path.split('[').next().unwrap_or(path);
    (1..=text.lines().count() as u64)
        .find(|line| path_at_line(text, *line) == wanted)
        .unwrap_or(0)
}
