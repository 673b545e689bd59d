//! Credentials out of what the gateway shows: an error answer, and `unigate try`'s trace.
//!
//! A provider may echo what it was sent (an "invalid key …" message with the key in it, a debug
//! body repeating the request's headers, a token endpoint quoting the refresh token it refused),
//! and the gateway hands a provider's error body to the caller as `raw_response`, its message
//! as `message`, and that message to its log. So every error a call for an account ends with
//! leaves the engine through [`Engine::redact`], which replaces each of the account's credential
//! values wherever it stands: the values of the context paths its integration renders into
//! credentials ([`Integration::credential_context_paths`]), the credentials it sends as a whole
//! (`SSWS …`, `Basic …`, a resource's own as well as the file's), and the access tokens it last
//! held ([`TokenManager::recent`]). A value shorter than [`SECRET_LENGTH`], or a URL, is left
//! readable: a region or a host is not a credential, and replacing it would garble every message
//! that names it. This room owns the secret forms and the replacing; what is an error, and which
//! context a trace shows, are the callers'.
//!
//! [`Integration::credential_context_paths`]: unigate_mapping::Integration::credential_context_paths
//! [`TokenManager::recent`]: unigate_upstream::tokens::TokenManager::recent

use serde_json::Value;
use unigate_mapping::{Credential, render_resource_credential};
use unigate_unified::ApiError;

use crate::Engine;
use crate::call::Target;

/// What stands where a credential was.
pub(crate) const REDACTED: &str = "[redacted]";

/// Values this long or longer are treated as credentials; shorter ones (a region, a subdomain)
/// stay readable.
pub(crate) const SECRET_LENGTH: usize = 8;

/// Credential texts to replace, each also as a JSON string and an XML text carry it, the
/// longest first (so a secret that contains another is replaced whole).
#[derive(Debug, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    /// Every string in `value` that may be a credential.
    pub(crate) fn add_value(&mut self, value: &Value) {
        match value {
            Value::String(text) => self.add(text),
            Value::Object(object) => object.values().for_each(|value| self.add_value(value)),
            Value::Array(items) => items.iter().for_each(|value| self.add_value(value)),
            _ => {}
        }
    }

    /// `text`, when it may be a credential: long enough, and not a URL (a base URL, an instance
    /// URL is where calls go, not a credential).
    pub(crate) fn add(&mut self, text: &str) {
        if text.len() < SECRET_LENGTH || text.starts_with("https://") || text.starts_with("http://")
        {
            return;
        }
        let json = Value::String(text.to_owned()).to_string();
        let json = &json[1..json.len() - 1];
        let xml = unigate_mapping::xml::escape(text);
        for form in [text, json, xml.as_str()] {
            if !self.0.iter().any(|known| known == form) {
                self.0.push(form.to_owned());
            }
        }
        self.0.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub(crate) fn text(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// `value` with every secret replaced in its strings and keys.
    fn value(&self, value: &mut Value) {
        match value {
            Value::String(text) if self.0.iter().any(|secret| text.contains(secret.as_str())) => {
                *text = self.text(text);
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.value(item)),
            Value::Object(object) => {
                if object
                    .keys()
                    .any(|key| self.0.iter().any(|secret| key.contains(secret.as_str())))
                {
                    *object = std::mem::take(object)
                        .into_iter()
                        .map(|(key, value)| (self.text(&key), value))
                        .collect();
                }
                object.values_mut().for_each(|value| self.value(value));
            }
            _ => {}
        }
    }

    /// `error` with every secret replaced in its message and the provider's body.
    pub(crate) fn error(&self, mut error: ApiError) -> ApiError {
        if self.is_empty() {
            return error;
        }
        error.message = self.text(&error.message);
        if let Some(raw) = &mut error.raw_response {
            self.value(raw);
        }
        error
    }
}

impl Engine {
    /// The credentials a call for `target`'s account may have sent (see the module note).
    pub(crate) fn secrets_of(&self, target: &Target) -> Secrets {
        let mut secrets = Secrets::default();
        for path in target.integration.credential_context_paths() {
            let value = path
                .iter()
                .try_fold(&target.account.context, |value, key| value.get(key));
            if let Some(value) = value {
                secrets.add_value(value);
            }
        }
        // The account's credential, and each resource's own (a Basic value is in no context).
        let own = target
            .integration
            .resources
            .values()
            .filter_map(|resource| {
                render_resource_credential(resource, &target.account.context)
                    .ok()
                    .flatten()
            });
        for credential in std::iter::once(target.credential.clone()).chain(own) {
            if let Credential::Header { value, .. } | Credential::Query { value, .. } = &credential
            {
                secrets.add(value.expose());
            }
        }
        for token in self.tokens.recent(&target.account.id) {
            secrets.add(token.expose());
        }
        secrets
    }

    /// `error`, which a call for `target`'s account ended with, cleaned of its credentials.
    pub(crate) fn redact(&self, target: &Target, error: ApiError) -> ApiError {
        self.secrets_of(target).error(error)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use unigate_unified::ErrorKind;

    use super::*;

    #[test]
    fn an_error_loses_every_form_of_a_credential_and_keeps_the_rest() {
        let mut secrets = Secrets::default();
        secrets.add_value(&json!({
            "key": "k3y\"with<quote",
            "region": "eu-west",
            "url": "https://acme.example.test",
            "nested": ["Basic dXNlcjpwYXNz", "k3y"]
        }));
        secrets.add("Basic dXNlcjpwYXNz and more");
        let error = ApiError::new(
            ErrorKind::BadGateway,
            "refused Basic dXNlcjpwYXNz and more in eu-west",
        )
        .with_raw_response(json!({
            "echo": "key=k3y\"with<quote at https://acme.example.test",
            "k3y\"with<quote": ["<key>k3y&quot;with&lt;quote</key>", "Basic dXNlcjpwYXNz"],
            "count": 3
        }));
        let cleaned = secrets.error(error);
        assert_eq!(cleaned.message, "refused [redacted] in eu-west");
        assert_eq!(
            cleaned.raw_response,
            Some(json!({
                "echo": "key=[redacted] at https://acme.example.test",
                "[redacted]": ["<key>[redacted]</key>", "[redacted]"],
                "count": 3
            }))
        );
    }
}
