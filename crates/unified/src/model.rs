//! Unified models as data: resources, their fields with types and enums, filters and sort keys.
//!
//! `*Spec` types are the file format of `mappings/models/<model>.yaml`; [`UnifiedModel`] is the
//! checked form the rest of unigate reads. Loading the file (and reporting file:line) is the
//! mapping crate's job.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

/// `mappings/models/<model>.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub resources: BTreeMap<String, ResourceSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    #[serde(default)]
    pub description: Option<String>,
    pub fields: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    pub filters: BTreeMap<String, FilterSpec>,
    #[serde(default)]
    pub sorts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, rename = "enum")]
    pub allowed: Vec<String>,
    /// For `array` fields: the type of each item.
    #[serde(default)]
    pub items: Option<Box<FieldSpec>>,
    /// For `object` fields (and `array` items of type object): the object's fields.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(rename = "type")]
    pub filter_type: FieldType,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default, rename = "enum")]
    pub allowed: Vec<String>,
    /// Comparison operators a caller may use as `filter[op]=…`; `eq` is the plain form.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Where the gateway looks in a unified record to apply the filter itself when the
    /// integration cannot push it down: dotted paths, arrays traversed (`emails.email`). A filter
    /// without paths is a provider hint that only a `query_mapping` can honour.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Text comparisons ignore case unless this is set (identifiers).
    #[serde(default)]
    pub case_sensitive: bool,
}

impl FilterSpec {
    /// Whether the gateway can apply this filter on mapped records.
    pub fn is_gateway_applicable(&self) -> bool {
        !self.fields.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Boolean,
    Number,
    Datetime,
    Object,
    Array,
}

/// A checked unified model.
#[derive(Debug, Clone)]
pub struct UnifiedModel {
    pub name: String,
    /// Shared: each list call holds its resource for as long as the call (a stream) lives,
    /// without copying its field and filter specs per request.
    pub resources: BTreeMap<String, Arc<UnifiedResource>>,
}

#[derive(Debug, Clone)]
pub struct UnifiedResource {
    pub fields: BTreeMap<String, FieldSpec>,
    pub filters: BTreeMap<String, FilterSpec>,
    pub sorts: Vec<String>,
}

const OPERATORS: &[&str] = &["eq", "ne", "gt", "gte", "lt", "lte", "in"];

impl UnifiedModel {
    /// Checks a spec; each problem is returned as `(field path, message)`.
    pub fn compile(spec: ModelSpec) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        for (resource_name, resource) in &spec.resources {
            if resource.fields.is_empty() {
                problems.push((
                    format!("resources.{resource_name}.fields"),
                    "a resource needs at least one field".to_owned(),
                ));
            }
            for (filter_name, filter) in &resource.filters {
                for (index, path) in filter.fields.iter().enumerate() {
                    let top = path.split('.').next().unwrap_or_default();
                    if !resource.fields.contains_key(top) {
                        problems.push((
                            format!(
                                "resources.{resource_name}.filters.{filter_name}.fields[{index}]"
                            ),
                            format!("`{path}` does not start with a field of the resource"),
                        ));
                    }
                }
                for operator in &filter.operators {
                    if !OPERATORS.contains(&operator.as_str()) {
                        problems.push((
                            format!("resources.{resource_name}.filters.{filter_name}.operators"),
                            format!(
                                "unknown operator `{operator}` (known: {})",
                                OPERATORS.join(", ")
                            ),
                        ));
                    }
                }
            }
            for (index, sort) in resource.sorts.iter().enumerate() {
                if !resource.fields.contains_key(sort) {
                    problems.push((
                        format!("resources.{resource_name}.sorts[{index}]"),
                        format!("sort key `{sort}` is not a field of the resource"),
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(UnifiedModel {
            name: spec.name,
            resources: spec
                .resources
                .into_iter()
                .map(|(name, resource)| {
                    (
                        name,
                        Arc::new(UnifiedResource {
                            fields: resource.fields,
                            filters: resource.filters,
                            sorts: resource.sorts,
                        }),
                    )
                })
                .collect(),
        })
    }
}
