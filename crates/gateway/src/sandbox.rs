//! The built-in sandbox: a small provider served in-process on a loopback port, with
//! deterministic users, two pagination styles and groups that list their members, so `unigate
//! serve --sandbox` shows real unified output with no credentials. The gateway reaches it over
//! HTTP like any provider, through the `sandbox` and `sandbox-cursor` mappings
//! (`mappings/sandbox*.yaml`); the `sandbox-groups` account sets `read_groups`, so its users come
//! with their groups, read by the follow-ups a real provider's groups take (a catalog, then each
//! group's members).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use unigate_mapping::Source;
use unigate_store::IntegratedAccount;

pub const MODEL_SOURCE: &str = include_str!("../../../mappings/models/user-directory.yaml");
pub const SANDBOX_SOURCE: &str = include_str!("../../../mappings/sandbox.yaml");
pub const SANDBOX_CURSOR_SOURCE: &str = include_str!("../../../mappings/sandbox-cursor.yaml");

/// The key the sandbox provider expects, as a real provider expects an API key.
const SANDBOX_KEY: &str = "sandbox-provider-key";
/// The gateway token that `serve --sandbox` accepts.
pub const SANDBOX_TOKEN: &str = "sandbox";
/// Default number of sandbox users: enough for three pages of 100.
pub const DEFAULT_USERS: usize = 250;

pub fn model_sources() -> Vec<Source> {
    vec![Source {
        path: "mappings/models/user-directory.yaml".into(),
        text: MODEL_SOURCE.to_owned(),
    }]
}

pub fn integration_sources() -> Vec<Source> {
    vec![
        Source {
            path: "mappings/sandbox.yaml".into(),
            text: SANDBOX_SOURCE.to_owned(),
        },
        Source {
            path: "mappings/sandbox-cursor.yaml".into(),
            text: SANDBOX_CURSOR_SOURCE.to_owned(),
        },
    ]
}

/// The accounts `serve --sandbox` serves, pointed at a running sandbox provider.
pub fn accounts(provider: SocketAddr) -> Vec<IntegratedAccount> {
    let context = json!({"sandbox_url": format!("http://{provider}"), "api_key": SANDBOX_KEY});
    let mut with_groups = context.clone();
    with_groups["read_groups"] = json!(true);
    vec![
        IntegratedAccount {
            id: "sandbox".into(),
            integration: "sandbox".into(),
            context: context.clone(),
            base_url: None,
            status: Default::default(),
            last_error: None,
            mapping: None,
        },
        IntegratedAccount {
            id: "sandbox-cursor".into(),
            integration: "sandbox-cursor".into(),
            context,
            base_url: None,
            status: Default::default(),
            last_error: None,
            mapping: None,
        },
        IntegratedAccount {
            id: "sandbox-groups".into(),
            integration: "sandbox".into(),
            context: with_groups,
            base_url: None,
            status: Default::default(),
            last_error: None,
            mapping: None,
        },
    ]
}

/// The sandbox's groups, `(gid, name)`: one per job title (in [`TITLES`]' order), then the
/// admins.
const GROUPS: [(&str, &str); 7] = [
    ("grp_eng", "Engineering"),
    ("grp_design", "Design"),
    ("grp_product", "Product"),
    ("grp_analytics", "Analytics"),
    ("grp_support", "Support"),
    ("grp_recruiting", "Recruiting"),
    ("grp_admins", "Admins"),
];

/// Whether sandbox user `index` is a member of group `gid`: the group of its title, and the
/// admins' group for an admin.
fn is_member(index: usize, gid: &str) -> bool {
    match GROUPS.iter().position(|(id, _)| *id == gid) {
        Some(6) => user(index)["role"] == "admin",
        Some(title) => index % TITLES.len() == title,
        None => false,
    }
}

const FIRST_NAMES: [&str; 20] = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Ken",
    "Frances",
    "Dennis",
    "Radia",
    "Linus",
    "Katherine",
    "John",
    "Hedy",
    "Niklaus",
    "Annie",
    "Tim",
    "Sophie",
    "Guido",
];
const LAST_NAMES: [&str; 20] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Allen",
    "Ritchie",
    "Perlman",
    "Torvalds",
    "Johnson",
    "McCarthy",
    "Lamarr",
    "Wirth",
    "Easley",
    "Berners-Lee",
    "Wilson",
    "Rossum",
];
const TITLES: [&str; 6] = [
    "Engineer",
    "Designer",
    "Product Manager",
    "Analyst",
    "Support Lead",
    "Recruiter",
];

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (civil-from-days, proleptic Gregorian).
fn iso8601(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// The sandbox user number `index` (0-based), the same on every run.
pub fn user(index: usize) -> Value {
    let first = FIRST_NAMES[index % FIRST_NAMES.len()];
    let last = LAST_NAMES[(index / FIRST_NAMES.len() + index) % LAST_NAMES.len()];
    let login = format!(
        "{}.{}{}",
        first.to_lowercase(),
        last.to_lowercase(),
        index + 1
    );
    let state = match index % 10 {
        7 => "SUSPENDED",
        8 => "INVITED",
        9 => "REMOVED",
        _ => "ACTIVE",
    };
    let role = if index.is_multiple_of(25) {
        "admin"
    } else if index % 50 == 17 {
        "bot"
    } else if index % 13 == 5 {
        "guest"
    } else {
        "member"
    };
    // 2024-01-01T00:00:00Z plus one hour per user.
    let created = 1_704_067_200 + index as i64 * 3_600;
    let mut record = json!({
        "uid": format!("usr_{:05}", index + 1),
        "given_name": first,
        "family_name": last,
        "display": format!("{first} {last}"),
        "login": login,
        "mail": format!("{login}@sandbox.unigate.test"),
        "state": state,
        "role": role,
        "job_title": TITLES[index % TITLES.len()],
        "created": iso8601(created),
        "modified": iso8601(created + (index % 30) as i64 * 86_400),
    });
    if !index.is_multiple_of(3) {
        record["phone"] = json!(format!("+1-555-{:04}", index % 10_000));
    }
    if state == "ACTIVE" && !index.is_multiple_of(4) {
        record["last_login"] = json!(iso8601(created + 40 * 86_400));
    }
    record
}

#[derive(Debug)]
struct Provider {
    users: usize,
}

#[derive(Debug, Deserialize)]
struct ListParams {
    offset: Option<usize>,
    limit: Option<usize>,
    cursor: Option<String>,
    page_size: Option<usize>,
    state: Option<String>,
    mail: Option<String>,
}

impl Provider {
    /// Indexes of the users matching the provider-side filters, from `start`, at most `count`.
    fn page(&self, params: &ListParams, start: usize, count: usize) -> (Vec<Value>, usize) {
        let states: Option<Vec<&str>> = params.state.as_deref().map(|s| s.split(',').collect());
        let matches = |record: &Value| {
            states
                .as_ref()
                .is_none_or(|states| states.contains(&record["state"].as_str().unwrap_or_default()))
                && params.mail.as_deref().is_none_or(|mail| {
                    record["mail"]
                        .as_str()
                        .is_some_and(|m| m.eq_ignore_ascii_case(mail))
                })
        };
        if states.is_none() && params.mail.is_none() {
            let end = (start + count).min(self.users);
            return ((start.min(end)..end).map(user).collect(), self.users);
        }
        let all: Vec<Value> = (0..self.users).map(user).filter(matches).collect();
        let total = all.len();
        (all.into_iter().skip(start).take(count).collect(), total)
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message}})),
    )
        .into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("x-sandbox-key").and_then(|v| v.to_str().ok()) == Some(SANDBOX_KEY)
}

async fn list_offset(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Sandbox-Key");
    }
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return refuse(StatusCode::BAD_REQUEST, "limit must be 1..500");
    }
    let (data, total) = provider.page(&params, params.offset.unwrap_or(0), limit);
    Json(json!({"data": data, "total": total})).into_response()
}

async fn list_cursor(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> Response {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Sandbox-Key");
    }
    let size = params.page_size.unwrap_or(50);
    if !(1..=500).contains(&size) {
        return refuse(StatusCode::BAD_REQUEST, "page_size must be 1..500");
    }
    let start = match params.cursor.as_deref() {
        None => 0,
        Some(cursor) => match cursor.strip_prefix("after-").and_then(|n| n.parse().ok()) {
            Some(start) => start,
            None => return refuse(StatusCode::BAD_REQUEST, "unknown cursor"),
        },
    };
    let (users, total) = provider.page(&params, start, size);
    let end = start + users.len();
    let next = (end < total).then(|| format!("after-{end}"));
    Json(json!({"users": users, "next": next})).into_response()
}

/// One user by `uid` (`usr_00001`), or a 404 in the provider's error shape.
async fn get_user(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    axum::extract::Path(uid): axum::extract::Path<String>,
) -> Response {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Sandbox-Key");
    }
    let index = uid
        .strip_prefix("usr_")
        .filter(|digits| digits.len() == 5)
        .and_then(|digits| digits.parse::<usize>().ok())
        .filter(|number| (1..=provider.users).contains(number));
    match index {
        Some(number) => Json(json!({"data": user(number - 1)})).into_response(),
        None => refuse(StatusCode::NOT_FOUND, "no such user"),
    }
}

/// The groups, offset-paged (`offset`, `limit`) with a total.
async fn list_groups(headers: HeaderMap, Query(params): Query<ListParams>) -> Response {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Sandbox-Key");
    }
    let groups = GROUPS
        .iter()
        .map(|(gid, name)| json!({"gid": gid, "name": name}));
    offset_page(&params, groups, GROUPS.len())
}

/// `items` paged by the request's `offset` and `limit` (default 50, at most 500), with their
/// total.
fn offset_page(params: &ListParams, items: impl Iterator<Item = Value>, total: usize) -> Response {
    let offset = params.offset.unwrap_or(0);
    let limit = params.limit.unwrap_or(50).clamp(1, 500);
    let data: Vec<Value> = items.skip(offset).take(limit).collect();
    Json(json!({"data": data, "total": total})).into_response()
}

/// One group's members (`{uid}` each), offset-paged with a total; a 404 for an unknown group.
async fn list_group_members(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    axum::extract::Path(gid): axum::extract::Path<String>,
    Query(params): Query<ListParams>,
) -> Response {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or wrong X-Sandbox-Key");
    }
    if !GROUPS.iter().any(|(id, _)| *id == gid) {
        return refuse(StatusCode::NOT_FOUND, "no such group");
    }
    let members: Vec<usize> = (0..provider.users)
        .filter(|index| is_member(*index, &gid))
        .collect();
    let uids = members
        .iter()
        .map(|index| json!({"uid": format!("usr_{:05}", index + 1)}));
    offset_page(&params, uids, members.len())
}

/// Starts the sandbox provider on an ephemeral loopback port; it lives as long as the runtime.
pub async fn start_provider(users: usize) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/users", get(list_offset))
        .route("/users/{uid}", get(get_user))
        .route("/v2/users", get(list_cursor))
        .route("/groups", get(list_groups))
        .route("/groups/{gid}/members", get(list_group_members))
        .with_state(Arc::new(Provider { users }));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "sandbox provider stopped");
        }
    });
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso8601() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn users_are_deterministic_and_unique() {
        assert_eq!(user(0), user(0));
        assert_eq!(user(0)["uid"], "usr_00001");
        assert_eq!(user(0)["created"], "2024-01-01T00:00:00Z");
        let logins: std::collections::BTreeSet<String> = (0..1000)
            .map(|i| user(i)["login"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(logins.len(), 1000);
        let states: std::collections::BTreeSet<String> = (0..10)
            .map(|i| user(i)["state"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(states.len(), 4);
    }
}
