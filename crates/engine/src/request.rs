//! The provider request: a native resource rendered for one account ([`Endpoint`]), and from it
//! the exact request of a page — the query (static, then mapped, then the caller's
//! `remote_query`, which wins), the pagination parameters, the body — and the checks on a next
//! URL the provider hands back (same origin, no credential or context value carried into a
//! cursor). The credential itself is attached when the request is sent (`auth`).

use std::sync::Arc;

use unigate_mapping::{
    Credential, HttpMethod, Integration, PassOver, RequestBody, Resource, Vars, merge_query,
    render_pass_url, render_request, render_resource_credential,
};
use unigate_pagination::{PageRequest, Position};
use unigate_store::IntegratedAccount;
use unigate_unified::{ApiError, ErrorKind, Secret};
use unigate_upstream::{Method, ProviderRequest, Url, same_origin};

use crate::call::{Target, flag_set};

/// A native resource of an account's integration, rendered: everything its requests share.
pub(crate) struct Endpoint {
    integration: Arc<Integration>,
    /// Whose requests these are: a pass over a catalog renders its URL per catalog record.
    account: Arc<IntegratedAccount>,
    resource: String,
    method: Method,
    url: Url,
    /// Where pages after the first go, for providers with a "continue" endpoint.
    continue_url: Option<Url>,
    headers: Vec<(String, String)>,
    /// Headers rendered from the account context (Datadog's application key): secrets.
    secret_headers: Vec<(String, Secret)>,
    /// Parameters of every param-driven page: the static query, then the mapped query.
    params: Vec<(String, String)>,
    /// The static query alone, under a pass's own mapped query.
    static_params: Vec<(String, String)>,
    /// Query values rendered from the account context (Trello's `key`): secrets, sent with
    /// every request, never inside a URL a cursor carries.
    secret_query: Vec<(String, Secret)>,
    /// `remote_query`, applied last on every param-driven page: it wins every conflict.
    remote_params: Vec<(String, String)>,
    /// Query parameters the account fills (a credential, a context value): never taken from the
    /// caller.
    account_params: Vec<String>,
    /// A credential sent as a query parameter.
    credential_param: Option<String>,
    /// The resource's own credential (`auth` on the resource), sent in place of the account's.
    own_credential: Option<Credential>,
    /// The passes of a list served in parts; empty when the list is walked once (no `passes`,
    /// or the call chose its part itself).
    passes: Vec<EndpointPass>,
}

/// One pass of a list served in parts, rendered for the account.
struct EndpointPass {
    /// Whether the account makes it (its `only_with` flag set, or none).
    made: bool,
    name: Option<String>,
    /// Its own method, in place of the resource's.
    method: Option<Method>,
    /// Its own path's URL, in place of the resource's (a pass over a catalog has one per
    /// catalog record, rendered for each page).
    url: Option<Url>,
    /// Walked once per record of a catalog (`over`).
    over: bool,
    /// Added over `params` on every page of the pass.
    params: Vec<(String, String)>,
    /// What a query mapping that reads `$pass` sends this pass, in place of the endpoint's.
    own_query: Option<PassQuery>,
    /// Parameters of the resource's query the pass does not send.
    drop_query: Vec<String>,
    /// Headers replacing the resource's of that name (`None`: none of that name).
    headers: Vec<(String, Option<String>)>,
}

/// What a page of a pass over a catalog sends for its catalog record: its URL, and the
/// record's id as the parameters and headers the pass sends it in.
struct ItemRequest {
    url: Url,
    params: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

/// A pass's own query, from a query mapping that reads `$pass`.
struct PassQuery {
    /// The static query with the pass's mapped query, in place of the endpoint's `params`.
    params: Vec<(String, String)>,
    /// The account's query values it leaves (those it sets are its own), in place of the
    /// endpoint's `secret_query`.
    secret_query: Vec<(String, Secret)>,
}

impl Endpoint {
    /// Renders `resource` (a `resource.method` key) for the target's account; `id` fills
    /// `{{id}}` when the resource fetches one record.
    pub(crate) fn render(
        target: &Target,
        resource: &str,
        id: Option<&str>,
    ) -> Result<Endpoint, ApiError> {
        let account = &target.account;
        let integration = &target.integration;
        let found = integration.resources.get(resource).ok_or_else(|| {
            ApiError::internal(format!("`{}` names a missing resource", resource))
        })?;
        let request_id = crate::current_request_id();
        let vars = Vars {
            context: &account.context,
            id,
            token: None,
            request_id: request_id.as_deref(),
        };
        let rendered = render_request(integration, found, vars, account.base_url.as_deref())
            .map_err(|error| {
                ApiError::internal(format!(
                    "integrated account `{}` cannot call `{}`: {error}",
                    account.id, integration.id
                ))
            })?;
        let own_credential =
            render_resource_credential(found, &account.context).map_err(|error| {
                ApiError::internal(format!(
                    "integrated account `{}` cannot call `{}`: {error}",
                    account.id, integration.id
                ))
            })?;
        let credential = own_credential.as_ref().unwrap_or(&target.credential);
        let credential_param = match credential {
            Credential::Query { param, .. } => Some(param.clone()),
            _ => None,
        };
        let absolute = |url: &str| {
            Url::parse(url).map_err(|_| {
                ApiError::internal(format!(
                    "integrated account `{}`: the `{}` base URL does not render to an absolute URL",
                    account.id, integration.id
                ))
            })
        };
        let passes = found
            .passes
            .iter()
            .zip(&rendered.pass_urls)
            .map(|(pass, url)| {
                let made = pass
                    .only_with
                    .as_ref()
                    .is_none_or(|flag| flag_set(&account.context, flag));
                let url = match url {
                    Ok(url) => url.as_deref().map(absolute).transpose()?,
                    // A pass this account does not make needs nothing of its context.
                    Err(_) if !made => None,
                    Err(error) => {
                        return Err(ApiError::internal(format!(
                            "integrated account `{}` cannot call `{}`: {error}",
                            account.id, integration.id
                        )));
                    }
                };
                Ok(EndpointPass {
                    made,
                    name: pass.name.clone(),
                    method: pass.method.map(method_of),
                    url,
                    over: pass.over.is_some(),
                    params: pass.query.clone(),
                    own_query: None,
                    drop_query: pass.drop_query.clone(),
                    headers: pass.headers.clone(),
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Endpoint {
            integration: integration.clone(),
            account: account.clone(),
            resource: resource.to_owned(),
            method: method_of(rendered.method),
            url: absolute(&rendered.url)?,
            continue_url: rendered.continue_url.as_deref().map(absolute).transpose()?,
            headers: rendered.headers,
            secret_headers: rendered.secret_headers,
            static_params: rendered.query.clone(),
            params: rendered.query,
            account_params: rendered
                .secret_query
                .iter()
                .map(|(name, _)| name.clone())
                .chain(credential_param.clone())
                .collect(),
            credential_param,
            own_credential,
            secret_query: rendered.secret_query,
            remote_params: Vec::new(),
            passes,
        })
    }

    /// Refuses a `remote_query` that would set a parameter the account fills (Trello's `key`,
    /// Asana's `workspace`): a caller may not act as another tenant or swap a credential.
    pub(crate) fn check_remote_params(&self, remote: &[(String, String)]) -> Result<(), ApiError> {
        match remote
            .iter()
            .find(|(name, _)| self.account_params.contains(name))
        {
            Some((name, _)) => Err(ApiError::bad_request(format!(
                "`remote_query[{name}]` is filled from the integrated account and cannot be set by the caller"
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn resource(&self) -> &Resource {
        &self.integration.resources[&self.resource]
    }

    /// The mapped query (over the static one, a context value included: Asana's `workspace_id`
    /// filter replaces the account's workspace) and the caller's `remote_query` (over both; it
    /// may not set what the account fills, see [`Endpoint::account_params`]). `by_pass`: for
    /// a query mapping that reads `$pass`, each pass's own (`None` where it is the same),
    /// used when the call walks the passes.
    pub(crate) fn add_params(
        &mut self,
        mapped: Vec<(String, String)>,
        by_pass: Vec<Option<Vec<(String, String)>>>,
        remote: Vec<(String, String)>,
    ) -> Result<(), String> {
        let sets_pass_param = |passes: &[EndpointPass], mapped: &[(String, String)]| {
            passes
                .iter()
                .flat_map(|pass| &pass.params)
                .find(|(name, _)| mapped.iter().any(|(set, _)| set == name))
                .map(|(name, _)| name.clone())
        };
        // A filter pushed down (Zoom's `status=inactive`) or a `remote_query` that sets a
        // parameter the passes set has chosen the part of the list: it is walked once, as asked.
        let chosen = sets_pass_param(&self.passes, &mapped).is_some()
            || sets_pass_param(&self.passes, &remote).is_some();
        if chosen {
            self.passes.clear();
        }
        // Another pass's parameter is that pass's business; its own would be sent twice.
        for (pass, own) in self.passes.iter().zip(&by_pass) {
            if let Some(name) = own
                .as_deref()
                .and_then(|own| sets_pass_param(std::slice::from_ref(pass), own))
            {
                return Err(format!(
                    "its query_mapping sets `{name}` for pass `{}`, a parameter that pass sets itself",
                    pass.name.as_deref().unwrap_or_default()
                ));
            }
        }
        for (pass, own) in self.passes.iter_mut().zip(by_pass) {
            let Some(own) = own else { continue };
            let mut secret_query = self.secret_query.clone();
            secret_query.retain(|(name, _)| !own.iter().any(|(set, _)| set == name));
            let mut params = self.static_params.clone();
            merge_query(&mut params, own);
            pass.own_query = Some(PassQuery {
                params,
                secret_query,
            });
        }
        self.secret_query
            .retain(|(name, _)| !mapped.iter().any(|(set, _)| set == name));
        merge_query(&mut self.params, mapped);
        self.remote_params = remote;
        Ok(())
    }

    /// The names of the resource's passes the walk makes, in order (`None` for a pass without
    /// one or one the account does not make); empty when the list is walked once.
    pub(crate) fn made_pass_names(&self) -> Vec<Option<&str>> {
        self.passes
            .iter()
            .map(|pass| pass.name.as_deref().filter(|_| pass.made))
            .collect()
    }

    /// How many of the resource's passes the walk makes (1 when it is walked once).
    pub(crate) fn made_pass_count(&self) -> usize {
        match self.passes.is_empty() {
            true => 1,
            false => self.passes.iter().filter(|pass| pass.made).count(),
        }
    }

    /// How many walks of the list a call makes, one after another (1 without passes).
    pub(crate) fn pass_count(&self) -> u32 {
        self.passes.len().max(1) as u32
    }

    /// The credential this resource's calls carry: its own (`auth` on the resource), else the
    /// account's.
    pub(crate) fn credential<'a>(&'a self, target: &'a Target) -> &'a Credential {
        self.own_credential.as_ref().unwrap_or(&target.credential)
    }

    /// The `resource.method` key this endpoint calls (a budget of the resource's own is keyed by
    /// it).
    pub(crate) fn resource_key(&self) -> &str {
        &self.resource
    }

    /// Whether this resource's calls carry a credential of their own (`auth` on the resource).
    pub(crate) fn has_own_credential(&self) -> bool {
        self.own_credential.is_some()
    }

    /// Whether the account makes pass `pass` (a walk without passes makes its one).
    pub(crate) fn makes_pass(&self, pass: u32) -> bool {
        self.passes.get(pass as usize).is_none_or(|made| made.made) && pass < self.pass_count()
    }

    /// The pass that follows pass `pass` for this account (its passes' `only_with` flags): none
    /// after the last.
    pub(crate) fn next_pass(&self, pass: u32) -> Option<u32> {
        self.passes
            .iter()
            .enumerate()
            .skip(pass as usize + 1)
            .find(|(_, next)| next.made)
            .map(|(at, _)| at as u32)
    }

    /// Which of the resource's passes pass `pass` of the walk is (`None`: the list is walked
    /// once, its records where the resource says).
    pub(crate) fn pass_index(&self, pass: u32) -> Option<usize> {
        (!self.passes.is_empty()).then_some(pass as usize)
    }

    /// The catalog pass `pass` is walked over (`over`), if it is.
    pub(crate) fn pass_over(&self, pass: u32) -> Option<&PassOver> {
        self.passes.get(pass as usize).filter(|own| own.over)?;
        self.resource().passes.get(pass as usize)?.over.as_ref()
    }

    /// Whether the walk makes a pass over a catalog.
    pub(crate) fn walks_a_catalog(&self) -> bool {
        self.passes.iter().any(|pass| pass.made && pass.over)
    }

    /// The name of pass `pass` (`$pass` for its records), if it has one.
    pub(crate) fn pass_name(&self, pass: u32) -> Option<&str> {
        self.passes.get(pass as usize)?.name.as_deref()
    }

    /// Whether a next URL's query parameter of pass `pass` is one the account adds at send
    /// time.
    fn added_at_send(&self, name: &str, pass: u32) -> bool {
        self.credential_param.as_deref() == Some(name)
            || self
                .secret_query_of(self.passes.get(pass as usize))
                .iter()
                .any(|(secret, _)| secret == name)
    }

    /// The account's query values a page of `pass` is sent with.
    fn secret_query_of<'a>(&'a self, pass: Option<&'a EndpointPass>) -> &'a [(String, Secret)] {
        match pass.and_then(|pass| pass.own_query.as_ref()) {
            Some(own) => &own.secret_query,
            None => &self.secret_query,
        }
    }

    /// The one request of a call that fetches a single answer (a get): no pagination.
    pub(crate) fn request(&self, body: Option<RequestBody>) -> Result<ProviderRequest, ApiError> {
        self.build(&Position::First, None, None, PageRequest::default(), body)
    }

    /// The request for the page at `position` of pass `pass` (0 without passes); `item`: the
    /// id of the catalog record a pass over a catalog is walked for.
    pub(crate) fn page_request(
        &self,
        position: &Position,
        pass: u32,
        item: Option<&str>,
        page_size: u32,
        body: Option<RequestBody>,
    ) -> Result<ProviderRequest, ApiError> {
        let pagination = self.resource().pagination_of(self.pass_index(pass));
        let mut page = pagination.strategy.request_for(position, page_size);
        if pagination.send_in_body {
            // The body built from the position carries it.
            page.params.clear();
        }
        // `page_in_path`: the page number (the parameter the strategy names with no name) is
        // the path's last segment.
        let segment = match pagination.page_in_path {
            true => page
                .params
                .iter()
                .position(|(name, _)| name.is_empty())
                .map(|index| page.params.remove(index).1),
            false => None,
        };
        let walked = self.passes.get(pass as usize);
        let item = match (self.pass_over(pass), item) {
            (None, _) => None,
            (Some(over), Some(item)) => Some(ItemRequest {
                url: self.item_url(pass as usize, item)?,
                params: over
                    .id_params
                    .iter()
                    .map(|name| (name.clone(), item.to_owned()))
                    .collect(),
                headers: over
                    .id_headers
                    .iter()
                    .map(|name| (name.clone(), item.to_owned()))
                    .collect(),
            }),
            (Some(_), None) => {
                return Err(ApiError::internal(
                    "a pass over a catalog was asked without a catalog record",
                ));
            }
        };
        let mut request = self.build(position, walked, item, page, body)?;
        if let Some(segment) = segment
            && let Ok(mut path) = request.url.path_segments_mut()
        {
            path.pop_if_empty().push(&segment);
        }
        Ok(request)
    }

    /// The URL of pass `pass` for the catalog record `item`.
    fn item_url(&self, pass: usize, item: &str) -> Result<Url, ApiError> {
        let request_id = crate::current_request_id();
        let vars = Vars {
            context: &self.account.context,
            id: Some(item),
            token: None,
            request_id: request_id.as_deref(),
        };
        let cannot = |why: String| {
            ApiError::internal(format!(
                "integrated account `{}` cannot call `{}`: {why}",
                self.account.id, self.integration.id
            ))
        };
        let url = render_pass_url(
            &self.integration,
            self.resource(),
            pass,
            vars,
            self.account.base_url.as_deref(),
        )
        .map_err(|error| cannot(error.to_string()))?;
        Url::parse(&url).map_err(|_| cannot("its pass's URL is not absolute".to_owned()))
    }

    fn build(
        &self,
        position: &Position,
        pass: Option<&EndpointPass>,
        item: Option<ItemRequest>,
        page: PageRequest,
        body: Option<RequestBody>,
    ) -> Result<ProviderRequest, ApiError> {
        let url = match page.url {
            Some(next) => {
                let url = Url::parse(&next)
                    .map_err(|_| ApiError::bad_request("`next_cursor` holds an unusable URL"))?;
                if !same_origin(&url, &self.url) {
                    return Err(foreign_origin());
                }
                url
            }
            None => {
                let mut params = match pass.and_then(|pass| pass.own_query.as_ref()) {
                    Some(own) => own.params.clone(),
                    None => self.params.clone(),
                };
                // A pass's names are set by nothing else (the loader refuses them in `query`,
                // and a call that sets one is walked once).
                if let Some(pass) = pass {
                    params.retain(|(name, _)| !pass.drop_query.contains(name));
                    params.extend_from_slice(&pass.params);
                }
                if let Some(item) = &item {
                    params.extend_from_slice(&item.params);
                }
                merge_query(&mut params, page.params);
                // remote_query goes last and wins: the caller asked for exactly these
                // parameters. It only ever adds query parameters: host, path and headers do not
                // come from the query, and a credential parameter is dropped here and added
                // from the account at send time.
                merge_query(&mut params, self.remote_params.clone());
                // The loader refuses a continue path beside passes with their own paths.
                let mut url = match (position, &self.continue_url, &item) {
                    (_, _, Some(item)) => item.url.clone(),
                    (Position::Token(_), Some(continue_url), None) => continue_url.clone(),
                    _ => pass
                        .and_then(|pass| pass.url.clone())
                        .unwrap_or_else(|| self.url.clone()),
                };
                if !params.is_empty() {
                    url.query_pairs_mut().extend_pairs(params);
                }
                url
            }
        };
        let mut headers = self.headers.clone();
        let mut secret_headers = self.secret_headers.clone();
        let mut secret_query = self.secret_query_of(pass).to_vec();
        if let Some(pass) = pass {
            secret_query.retain(|(name, _)| !pass.drop_query.contains(name));
            for (name, value) in &pass.headers {
                headers.retain(|(have, _)| !have.eq_ignore_ascii_case(name));
                secret_headers.retain(|(have, _)| !have.eq_ignore_ascii_case(name));
                if let Some(value) = value {
                    headers.push((name.clone(), value.clone()));
                }
            }
        }
        // A page's own headers (a cursor sent in a header) replace the resource's of that name,
        // as the catalog record's id does where the pass sends it in one.
        let item_headers = item.map(|item| item.headers).unwrap_or_default();
        for (name, value) in page.headers.into_iter().chain(item_headers) {
            headers.retain(|(have, _)| !have.eq_ignore_ascii_case(&name));
            headers.push((name, value));
        }
        if let Some(body) = &body
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".to_owned(), body.content_type.to_owned()));
        }
        Ok(ProviderRequest {
            method: pass.and_then(|pass| pass.method).unwrap_or(self.method),
            url,
            headers,
            secret_headers,
            secret_query,
            body: body.map(|body| body.bytes),
            proof: None,
        })
    }

    /// Resolves a next link against the URL it came with, refuses other origins, and drops a
    /// credential query parameter so it never travels inside a cursor. With `keeps_query`
    /// (`next_url_keeps_query`), a relative link that names no query keeps the current one:
    /// resolved as RFC 3986 says, Adobe's next page (the bare path index `1`) would lose the
    /// caller's `remote_query` and list the whole organization from page 1 on, where page 0
    /// listed one domain. Not the default: Salesforce's relative `nextRecordsUrl` is a query
    /// locator that must go without the SOQL `q` of the first page.
    pub(crate) fn checked_next_url(
        &self,
        current: &Url,
        link: &str,
        keeps_query: bool,
        pass: u32,
    ) -> Result<String, ApiError> {
        let mut url = current.join(link).map_err(|_| {
            ApiError::new(
                ErrorKind::BadGateway,
                "the provider's next-page link is not a URL",
            )
        })?;
        let relative = matches!(
            Url::parse(link),
            Err(unigate_upstream::UrlParseError::RelativeUrlWithoutBase)
        );
        if keeps_query && relative && !link.contains('?') && url.query().is_none() {
            url.set_query(current.query());
        }
        if !same_origin(&url, &self.url) {
            return Err(foreign_origin());
        }
        if url
            .query_pairs()
            .any(|(name, _)| self.added_at_send(&name, pass))
        {
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter(|(name, _)| !self.added_at_send(name, pass))
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect();
            url.set_query(None);
            if !kept.is_empty() {
                url.query_pairs_mut().extend_pairs(kept);
            }
        }
        Ok(url.to_string())
    }
}

fn foreign_origin() -> ApiError {
    ApiError::new(
        ErrorKind::BadGateway,
        "the provider's next-page URL points outside the integration's origin; refusing to follow it",
    )
}

fn method_of(method: HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::Get,
        HttpMethod::Post => Method::Post,
    }
}
