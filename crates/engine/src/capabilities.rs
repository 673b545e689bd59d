//! What an integration can do for a unified resource, read from its mapping file: the fields its
//! mapping produces, which filters and sorts are native, which the gateway applies itself, which
//! it cannot honour, whether the list is partial, and which methods (list, get) it maps. Served as
//! `/unified/{model}/{resource}/meta/{method}` (by account) and
//! `/unified/{model}/{resource}/{integration}/meta/{method}` (by integration).

use serde_json::{Map, Value, json};
use unigate_mapping::{Integration, Method};
use unigate_unified::ApiError;

use crate::Engine;

impl Engine {
    /// Capabilities of the integration behind `integrated_account_id`.
    pub fn capabilities_for_account(
        &self,
        model: &str,
        resource: &str,
        method: &str,
        params: &Map<String, Value>,
    ) -> Result<Value, ApiError> {
        let account_id = match params.get("integrated_account_id") {
            Some(Value::String(id)) if !id.is_empty() => id,
            _ => return Err(ApiError::bad_request("`integrated_account_id` is required")),
        };
        if let Some(unknown) = params.keys().find(|key| *key != "integrated_account_id") {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{unknown}`"
            )));
        }
        let account = self.accounts.get(account_id).ok_or_else(|| {
            ApiError::not_found(format!("integrated account `{account_id}` not found"))
        })?;
        self.capabilities(model, resource, &account.integration, method)
    }

    /// Capabilities of one integration, without an account.
    pub fn capabilities(
        &self,
        model: &str,
        resource: &str,
        integration_id: &str,
        method: &str,
    ) -> Result<Value, ApiError> {
        let unified = self
            .catalog
            .models
            .get(model)
            .and_then(|found| found.resources.get(resource))
            .ok_or_else(|| {
                ApiError::not_found(format!("unknown unified resource `{model}/{resource}`"))
            })?;
        let integration = self
            .catalog
            .integrations
            .get(integration_id)
            .ok_or_else(|| {
                ApiError::not_found(format!("unknown integration `{integration_id}`"))
            })?;
        let mapped = Method::parse(method)
            .and_then(|method| integration.unified_method(model, resource, method))
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "integration `{integration_id}` does not map `{model}/{resource}` {method}"
                ))
            })?;
        let native_filters: Vec<&String> = mapped.native_filters.iter().collect();
        // Not native: applied in the gateway when the model says where to look, else a provider
        // hint this integration cannot honour.
        let mut gateway_filters = Vec::new();
        let mut unsupported_filters = Vec::new();
        for (name, spec) in &unified.filters {
            if mapped.native_filters.contains(name) {
                continue;
            }
            let provided = mapped.mapped_fields.as_ref().is_none_or(|fields| {
                spec.fields
                    .iter()
                    .any(|path| fields.contains(path.split('.').next().unwrap_or(path)))
            });
            if spec.is_gateway_applicable() && provided {
                gateway_filters.push(name);
            } else {
                unsupported_filters.push(name);
            }
        }
        let native_sorts: Vec<&String> = mapped.native_sorts.iter().collect();
        let gateway_sorts: Vec<&String> = unified
            .sorts
            .iter()
            .filter(|s| !mapped.native_sorts.contains(*s))
            .collect();
        let fields = mapped.response_mapping.object_keys();
        // The parts a list is walked in (`passes`), with the account flag each needs: what an
        // admin sets in an account's context to list invitations or machine accounts too; and,
        // for a pass walked once per record of a catalog, the catalog's list.
        let parts: Vec<Value> = integration
            .resources
            .get(&mapped.resource)
            .filter(|_| method == "list")
            .map(|resource| resource.passes.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|pass| {
                let mut part = json!({"name": pass.name, "only_with": pass.only_with});
                if let Some(over) = &pass.over {
                    part["over"] = json!(over.catalog.resource);
                }
                part
            })
            .collect();
        Ok(json!({
            "integration": integration.id,
            "name": integration.name,
            "docs": integration.docs,
            "model": model,
            "resource": resource,
            "method": method,
            "methods": integration.methods_of(model, resource).iter().map(|m| m.name()).collect::<Vec<_>>(),
            "partial": mapped.partial,
            "pagination": pagination_style(integration, &mapped.resource),
            "parts": parts,
            "fields": fields,
            // Fields built from follow-up answers (Okta's `groups` from `user_groups` and `groups`): absent for an
            // account that does not make those follow-ups (an opt-in flag unset).
            "fields_from_follow_ups": mapped.field_follow_ups,
            // Fields the list gives only with an account-context flag (field → flag).
            "opt_in_fields": mapped.opt_in_fields,
            "filters": {
                "native": native_filters,
                // Passes of the list that apply only some native filters (pass → those): the
                // gateway applies the others to that pass's records.
                "native_by_pass": mapped.native_filters_by_pass,
                "gateway": gateway_filters,
                "unsupported": unsupported_filters,
            },
            "sorts": {
                "native": native_sorts,
                "gateway_when_all_pages_fetched": gateway_sorts,
            },
            "response_formats": ["unified", "normalized", "raw", "stream"],
        }))
    }
}

fn pagination_style(integration: &Integration, resource: &str) -> &'static str {
    integration
        .resources
        .get(resource)
        .map_or("none", |r| r.pagination.strategy.style.name())
}
