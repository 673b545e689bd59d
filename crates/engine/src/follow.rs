//! Follow-up requests: a second native call a list declares for the records of each page
//! (`follow_up:` in the mapping), whose answers the response mapping reads as `$<name>` — a
//! user's details, or the roles another endpoint serves. Per record (one call each, its `{{id}}`
//! read off the record) or per page (one call, its `{{id}}` read off the page's records, the
//! answer's records paired back by `key`/`matches`). Every call takes the one provider-call path
//! (auth, pacing, retries); calls in flight for one account are bounded by the follow-up's
//! `concurrency`. A call that fails fails the list call as a remote error naming the integration
//! and the follow-up, never a record silently missing its fields; a 404 may be declared as "no
//! detail" (`not_found: skip`). A follow-up may be chained `over` a per-page one whose answer is
//! a catalog (the account's groups): one call per catalog record (its members), made once a
//! walk, each page record then given the catalog records whose answers hold it.

use std::sync::Arc;

use futures_util::future::try_join_all;
use serde_json::Value;
use unigate_mapping::{
    Answer, Expression, FollowUp, FollowUpBatch, ID_PART_SEPARATOR, MethodKey, Scope,
    extract_records, read_page, render_body,
};
use unigate_pagination::{PageFacts, PaginationError, Position, Style};
use unigate_unified::{ApiError, ErrorKind};

use crate::Engine;
use crate::call::ListCall;
use crate::page::{body_text, check_answer, mapping_error};
use crate::request::Endpoint;

/// What the follow-ups give the page's response mappings: variables every record reads alike
/// (a per-page follow-up without `key`/`matches`: its whole answer, bound once for the page),
/// and each record's own, in page order.
#[derive(Debug, Default)]
pub(crate) struct FollowedUp {
    pub(crate) page: Vec<(String, Value)>,
    pub(crate) records: Vec<Vec<(String, Value)>>,
    /// The follow-ups asked for this page (called, or answered from the walk's kept answers),
    /// whether or not their answers paired with any record.
    pub(crate) asked: Vec<String>,
}

impl FollowedUp {
    /// Whether the follow-up `name` was asked for this page: a page whose users are in no group
    /// was still asked for groups, where a follow-up the account does not make (its opt-in flag
    /// unset) was not.
    pub(crate) fn asked(&self, name: &str) -> bool {
        self.asked.iter().any(|asked| asked == name)
    }
}

/// The last answer of each per-page follow-up in one walk (`ListCall`), by follow-up name: the
/// `{{id}}` it was asked with and what it answered. One a follow-up, so a long stream whose
/// pages ask different ids holds no more than one answer each.
pub(crate) type FollowUpAnswers =
    std::sync::Mutex<std::collections::HashMap<String, (String, Option<Arc<Vec<Value>>>)>>;

/// The follow-up answers one walk reuses: per-page answers by follow-up, and what chained ones
/// found. Kept past the call when it answers a `next_cursor` ([`Engine::keep_walk_answers`]), so
/// a walk paged by its cursor reuses them as a stream does.
#[derive(Debug, Default)]
pub(crate) struct WalkAnswers {
    pub(crate) per_page: FollowUpAnswers,
    pub(crate) chained: ChainedAnswers,
    pub(crate) batched: BatchedAnswers,
    /// The catalogs the walk's passes are walked over, by pass (`over`).
    pub(crate) pass_catalogs: crate::catalog::PassCatalogs,
    /// In a walk of several parts, each unified id listed, with the walk's page it was first
    /// listed on (`CursorState::pages`): a later page's record of that id is not listed again.
    pub(crate) listed: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

/// The calls of each kept batch (`batch.keep`) in one walk, by follow-up name, each id asked
/// by the walk mapped to the call that asks it.
pub(crate) type BatchedAnswers = std::sync::Mutex<
    std::collections::HashMap<String, std::collections::HashMap<String, Arc<KeptCall>>>,
>;

/// One call of a kept batch: the ids it asks and, once asked, its answer. Pages of one walk may
/// run their follow-ups at once (offset pages fetched ahead): the first to need an id makes the
/// call, the others wait for its answer; a failed call leaves it to be made by the next page
/// that needs it.
#[derive(Debug)]
pub(crate) struct KeptCall {
    ids: Vec<String>,
    answer: tokio::sync::OnceCell<Arc<Vec<Value>>>,
}

impl WalkAnswers {
    /// About how many KiB it holds in memory: the weight of its place among kept walks. Made
    /// each time the walk's call answers a cursor, a pass over what the walk already read.
    fn weight(&self) -> u32 {
        let per_page: usize = lock(&self.per_page)
            .values()
            .filter_map(|(_, answer)| answer.as_ref())
            .flat_map(|records| records.iter())
            .map(held_bytes)
            .sum();
        let batched: usize = lock(&self.batched)
            .values()
            .flat_map(|calls| calls.iter())
            .map(|(id, call)| {
                // A call is counted once, with the first of its ids.
                let answer = (call.ids.first() == Some(id))
                    .then(|| call.answer.get())
                    .flatten()
                    .map_or(0, |records| records.iter().map(held_bytes).sum());
                48 + id.len() + answer
            })
            .sum();
        // A chained index holds its catalog (counted where the catalog is a per-page answer)
        // and, per key, the key and a position or two.
        let chained: usize = lock(&self.chained)
            .values()
            .map(|(_, index)| {
                let keys: usize = index
                    .by_key
                    .iter()
                    .map(|(key, positions)| 48 + key.len() + 8 * positions.len())
                    .sum();
                let answers: usize = index
                    .answers
                    .iter()
                    .flat_map(|answers| answers.iter())
                    .map(held_bytes)
                    .sum();
                keys + answers
            })
            .sum();
        let catalogs: usize = lock(&self.pass_catalogs)
            .values()
            .flat_map(|catalog| catalog.iter())
            .map(|(id, record)| 48 + id.len() + held_bytes(record))
            .sum();
        let listed: usize = lock(&self.listed).keys().map(|id| 40 + id.len()).sum();
        u32::try_from(1 + (per_page + chained + batched + catalogs + listed) / 1024)
            .unwrap_or(u32::MAX)
    }
}

/// About the bytes a parsed JSON value holds: its text and a node's overhead for each value.
fn held_bytes(value: &Value) -> usize {
    const NODE: usize = 32;
    match value {
        Value::String(text) => NODE + text.len(),
        Value::Array(items) => NODE + items.iter().map(held_bytes).sum::<usize>(),
        Value::Object(fields) => {
            NODE + fields
                .iter()
                .map(|(key, value)| NODE + key.len() + held_bytes(value))
                .sum::<usize>()
        }
        _ => NODE,
    }
}

/// Drops what the engine keeps for `account`'s walks: the answers of walks paged by their
/// cursor and what unfinished follow-ups got. A free function so that a store's change
/// subscriber (which cannot hold the engine) can call it with the caches.
pub(crate) fn forget_walk_answers(
    account: &str,
    kept: &moka::sync::Cache<String, Arc<WalkAnswers>>,
    members: &moka::sync::Cache<String, UnfinishedMembers>,
    walks: &moka::sync::Cache<String, Arc<WalkProgress>>,
    details: &moka::sync::Cache<String, UnfinishedDetails>,
) {
    let prefix = format!("{account}\u{0}");
    // Fails only when a cache was built without invalidation closures, which they are not.
    let _ = kept.invalidate_entries_if({
        let prefix = prefix.clone();
        move |key, _| key.starts_with(&prefix)
    });
    let _ = members.invalidate_entries_if({
        let prefix = prefix.clone();
        move |key, _| key.starts_with(&prefix)
    });
    let _ = walks.invalidate_entries_if({
        let prefix = prefix.clone();
        move |key, _| key.starts_with(&prefix)
    });
    let _ = details.invalidate_entries_if(move |key, _| key.starts_with(&prefix));
}

/// How long a walk paged by its cursor reuses its follow-up answers: a catalog (roles, groups,
/// members) at most this old, and a walk longer than this asks it again once.
const KEPT_WALK_ANSWERS_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// KiB all kept walks may hold together (256 MiB); the least used go first past it.
const KEPT_WALK_ANSWERS_KIB: u64 = 256 * 1024;

pub(crate) fn kept_walk_answers() -> moka::sync::Cache<String, Arc<WalkAnswers>> {
    moka::sync::Cache::builder()
        .max_capacity(KEPT_WALK_ANSWERS_KIB)
        .weigher(|_, answers: &Arc<WalkAnswers>| answers.weight())
        .time_to_live(KEPT_WALK_ANSWERS_FOR)
        .support_invalidation_closures()
        .build()
}

/// What a follow-up's finished calls gave, by the `{{id}}` each was asked, left by a call that
/// failed part-way (a rate limit, a timeout) for the account's next call.
type Done<T> = std::collections::HashMap<String, T>;

/// A chained follow-up's: the ids each call's answer matched.
pub(crate) type UnfinishedMembers = Arc<Done<Arc<Vec<String>>>>;

/// A per-record follow-up's: each call's records (`None`: a 404 declared as no detail).
pub(crate) type UnfinishedDetails = Arc<Done<Option<Arc<Vec<Value>>>>>;

/// Matched ids all unfinished chained follow-ups may hold together.
const UNFINISHED_MEMBERS_IDS: u64 = 2_000_000;

pub(crate) fn unfinished_members() -> moka::sync::Cache<String, UnfinishedMembers> {
    moka::sync::Cache::builder()
        .max_capacity(UNFINISHED_MEMBERS_IDS)
        .weigher(|_, done: &UnfinishedMembers| {
            let ids: usize = done.values().map(|matched| 1 + matched.len()).sum();
            u32::try_from(ids).unwrap_or(u32::MAX)
        })
        .time_to_live(KEPT_WALK_ANSWERS_FOR)
        .support_invalidation_closures()
        .build()
}

/// KiB all unfinished per-record follow-ups may hold together (64 MiB).
const UNFINISHED_DETAILS_KIB: u64 = 64 * 1024;

pub(crate) fn unfinished_details() -> moka::sync::Cache<String, UnfinishedDetails> {
    moka::sync::Cache::builder()
        .max_capacity(UNFINISHED_DETAILS_KIB)
        .weigher(|_, done: &UnfinishedDetails| {
            let bytes: usize = done
                .values()
                .flatten()
                .flat_map(|records| records.iter())
                .map(held_bytes)
                .sum();
            u32::try_from(1 + bytes / 1024).unwrap_or(u32::MAX)
        })
        .time_to_live(KEPT_WALK_ANSWERS_FOR)
        .support_invalidation_closures()
        .build()
}

/// A follow-up's calls in progress: what finished calls gave, taken over from a call of the
/// account that failed part-way, and handed to its next call if these do not all finish (an
/// error, or the call dropped on a timeout).
struct Unfinished<'e, T: Clone + Send + Sync + 'static> {
    done: std::sync::Mutex<Done<T>>,
    cache: &'e moka::sync::Cache<String, Arc<Done<T>>>,
    key: String,
    finished: bool,
}

impl<'e, T: Clone + Send + Sync + 'static> Unfinished<'e, T> {
    fn start(cache: &'e moka::sync::Cache<String, Arc<Done<T>>>, key: String) -> Self {
        Unfinished {
            done: std::sync::Mutex::new(
                cache
                    .remove(&key)
                    .map(Arc::unwrap_or_clone)
                    .unwrap_or_default(),
            ),
            cache,
            key,
            finished: false,
        }
    }

    fn finish(mut self) -> Done<T> {
        self.finished = true;
        std::mem::take(&mut *lock(&self.done))
    }
}

impl<T: Clone + Send + Sync + 'static> Drop for Unfinished<'_, T> {
    fn drop(&mut self) {
        let done = std::mem::take(&mut *lock(&self.done));
        if !self.finished && !done.is_empty() {
            self.cache
                .insert(std::mem::take(&mut self.key), Arc::new(done));
        }
    }
}

/// Where a walked follow-up's call stood when it stopped part-way: the next request's position,
/// the records of the pages read, and the walk's guards.
#[derive(Debug, Clone)]
pub(crate) struct WalkProgress {
    position: Position,
    records: Vec<Value>,
    pages: u32,
    last_digest: Option<String>,
}

/// KiB all unfinished walks may hold together (64 MiB).
const UNFINISHED_WALKS_KIB: u64 = 64 * 1024;

pub(crate) fn unfinished_walks() -> moka::sync::Cache<String, Arc<WalkProgress>> {
    moka::sync::Cache::builder()
        .max_capacity(UNFINISHED_WALKS_KIB)
        .weigher(|_, progress: &Arc<WalkProgress>| {
            let bytes: usize = progress.records.iter().map(held_bytes).sum();
            u32::try_from(1 + bytes / 1024).unwrap_or(u32::MAX)
        })
        .time_to_live(KEPT_WALK_ANSWERS_FOR)
        .support_invalidation_closures()
        .build()
}

/// A walked follow-up's call in progress, started where an unfinished one of the account stood
/// and handed on if it does not finish (an error, or the call dropped on a timeout). Without a
/// cache (a single call, not a walk) it only holds the one answer's place.
struct ResumableWalk<'e> {
    cache: Option<&'e moka::sync::Cache<String, Arc<WalkProgress>>>,
    key: String,
    progress: WalkProgress,
    finished: bool,
}

impl<'e> ResumableWalk<'e> {
    /// `key` is made only for a walk (a single call keeps nothing).
    fn start(
        cache: Option<&'e moka::sync::Cache<String, Arc<WalkProgress>>>,
        key: impl FnOnce() -> String,
    ) -> Self {
        let key = cache.map(|_| key()).unwrap_or_default();
        let progress = cache
            .and_then(|cache| cache.remove(&key))
            .map(Arc::unwrap_or_clone)
            .unwrap_or(WalkProgress {
                position: Position::First,
                records: Vec::new(),
                pages: 0,
                last_digest: None,
            });
        ResumableWalk {
            cache,
            key,
            progress,
            finished: false,
        }
    }

    fn finish(mut self) -> Vec<Value> {
        self.finished = true;
        std::mem::take(&mut self.progress.records)
    }
}

impl Drop for ResumableWalk<'_> {
    fn drop(&mut self) {
        if let Some(cache) = self.cache
            && !self.finished
            && self.progress.pages > 0
        {
            let progress = WalkProgress {
                position: self.progress.position.clone(),
                records: std::mem::take(&mut self.progress.records),
                pages: self.progress.pages,
                last_digest: self.progress.last_digest.take(),
            };
            cache.insert(std::mem::take(&mut self.key), Arc::new(progress));
        }
    }
}

/// What a chained follow-up found over one catalog answer: that answer, and its index.
pub(crate) type ChainedAnswers =
    std::sync::Mutex<std::collections::HashMap<String, (Arc<Vec<Value>>, Arc<ChainedIndex>)>>;

/// For each value a chained follow-up's `matches` gave, the positions of the records it gives a
/// page record matching it: in the catalog (the records whose calls answered the value), or, for
/// `gives: answers`, in `answers` (the calls' records, in catalog order, that gave it).
#[derive(Debug, Default)]
pub(crate) struct ChainedIndex {
    by_key: PairIndex,
    /// Shared: a follow-up chained over this one calls once per record of it.
    answers: Option<Arc<Vec<Value>>>,
}

/// Answer records by the key they pair with: key → their positions in the answer (or catalog).
type PairIndex = std::collections::HashMap<String, Vec<usize>>;

/// The ids a `matches` gives for an answer record: one, or each of a list (a group answering
/// its members' ids pairs with every one of them).
fn ids_of(value: Option<Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => {
            let mut ids: Vec<String> = items.into_iter().filter_map(|id| as_id(Some(id))).collect();
            let mut seen = std::collections::HashSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            ids
        }
        other => as_id(other).into_iter().collect(),
    }
}

/// A value read off a record as an id: text as it is, a number as its digits.
pub(crate) fn as_id(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(text) if !text.is_empty() => Some(text),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// What a follow-up's `id` gave, as the id its call is asked with: for a resource that reads the
/// id's parts (`{{id.0}}`, `{{id.1}}`: a group's workspace and its own id), a list of texts or
/// numbers, none empty, each part kept apart; otherwise one text or number.
fn follow_up_id(follow_up: &FollowUp, value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::Array(parts)) if follow_up.id_parts => {
            let parts: Option<Vec<String>> =
                parts.into_iter().map(|part| as_id(Some(part))).collect();
            Some(parts?.join(&ID_PART_SEPARATOR.to_string()))
        }
        other => as_id(other),
    }
}

impl Engine {
    fn walk_answers_key(call: &ListCall) -> String {
        format!("{}\u{0}{}", call.target.account.id, call.fingerprint())
    }

    /// A call continuing a walk by its cursor takes the answers the walk's earlier calls kept.
    pub(crate) fn resume_walk_answers(&self, call: &mut ListCall) {
        if call.query.next_cursor.is_none() || !call.keeps_walk_answers() {
            return;
        }
        if let Some(kept) = self.kept_walk_answers.get(&Self::walk_answers_key(call)) {
            call.walk_answers = kept;
        }
    }

    /// Keeps the call's follow-up answers for the walk's next call (it answered a cursor).
    pub(crate) fn keep_walk_answers(&self, call: &ListCall) {
        if !call.keeps_walk_answers() {
            return;
        }
        self.kept_walk_answers
            .insert(Self::walk_answers_key(call), call.walk_answers.clone());
    }

    /// Drops the answers kept for the walks of `account`, and what its unfinished follow-ups
    /// got (the admin API changed or removed it).
    pub(crate) fn forget_walk_answers(&self, account: &str) {
        forget_walk_answers(
            account,
            &self.kept_walk_answers,
            &self.unfinished_members,
            &self.unfinished_walks,
            &self.unfinished_details,
        );
    }

    /// Runs every follow-up of the call's method for `records`, its expressions over them in
    /// `scope` (the call's, with `$pass` on a named pass's page).
    pub(crate) async fn follow_up(
        &self,
        call: &ListCall,
        scope: &Scope,
        records: &[Value],
    ) -> Result<FollowedUp, ApiError> {
        let mut variables = FollowedUp {
            page: Vec::new(),
            records: vec![Vec::new(); records.len()],
            asked: Vec::new(),
        };
        // The per-page answers of this page, for the follow-ups chained over them.
        let mut catalogs: Vec<(&str, Arc<Vec<Value>>)> = Vec::new();
        for follow_up in &call.method().follow_ups {
            if !call.makes(follow_up) {
                continue;
            }
            if let Some(over) = &follow_up.over {
                let catalog = catalogs
                    .iter()
                    .find(|(name, _)| name == over)
                    .map(|(_, answer)| answer.clone());
                if let Some(catalog) = catalog {
                    let answers = self
                        .follow_over(call, scope, follow_up, catalog, records, &mut variables)
                        .await?;
                    // `gives: answers`: a catalog in turn, for a follow-up chained over it.
                    if let Some(answers) = answers {
                        catalogs.push((&follow_up.name, answers));
                    }
                }
            } else if follow_up.per_page {
                if let Some(answer) = self
                    .follow_page(call, scope, follow_up, records, &mut variables)
                    .await?
                {
                    catalogs.push((&follow_up.name, answer));
                }
            } else {
                self.follow_records(call, scope, follow_up, records, &mut variables)
                    .await?;
            }
        }
        Ok(variables)
    }

    /// A follow-up chained over a catalog (`over:`): one call per catalog record, once for the
    /// walk while the catalog answer is the same; each page record gets the catalog records
    /// whose answers hold a record matching it (none: an empty list). Gives its answers'
    /// records when it `gives: answers`.
    async fn follow_over(
        &self,
        call: &ListCall,
        scope: &Scope,
        follow_up: &FollowUp,
        catalog: Arc<Vec<Value>>,
        records: &[Value],
        variables: &mut FollowedUp,
    ) -> Result<Option<Arc<Vec<Value>>>, ApiError> {
        variables.asked.push(follow_up.name.clone());
        let known = lock(&call.walk_answers.chained)
            .get(&follow_up.name)
            .filter(|(over, _)| Arc::ptr_eq(over, &catalog))
            .map(|(_, index)| index.clone());
        let index = match known {
            Some(index) => index,
            None => {
                let index = Arc::new(match follow_up.gives_answers {
                    true => self.index_answers(call, follow_up, &catalog).await?,
                    false => ChainedIndex {
                        by_key: self.index_members(call, follow_up, &catalog).await?,
                        answers: None,
                    },
                });
                lock(&call.walk_answers.chained)
                    .insert(follow_up.name.clone(), (catalog.clone(), index.clone()));
                index
            }
        };
        let given = index
            .answers
            .as_deref()
            .map_or(&catalog[..], |answers| &answers[..]);
        bind_paired(
            call,
            scope,
            follow_up,
            records,
            &index.by_key,
            given,
            variables,
        )?;
        Ok(index.answers.clone())
    }

    /// `gives: answers`: calls the chained follow-up once per catalog record with an id (each id
    /// once), keeps the answers' records in catalog order, and indexes them by the values their
    /// `matches` gives (none without `matches`: a level another follow-up is chained over).
    async fn index_answers(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
        catalog: &[Value],
    ) -> Result<ChainedIndex, ApiError> {
        let mut asked: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for item in catalog {
            if let Some(id) = follow_up_id(
                follow_up,
                evaluate(call, &call.scope, &follow_up.id, item, "follow_up.id")?,
            ) && seen.insert(id.clone())
            {
                asked.push(id);
            }
        }
        let done = self.answer_each(call, follow_up, &asked).await?;
        let mut by_key = PairIndex::new();
        let mut answers = Vec::new();
        for id in &asked {
            for record in done
                .get(id)
                .into_iter()
                .flatten()
                .flat_map(|records| records.iter())
            {
                let at = answers.len();
                if let Some(matches) = &follow_up.matches {
                    for matched in ids_of(evaluate(
                        call,
                        &call.scope,
                        matches,
                        record,
                        "follow_up.matches",
                    )?) {
                        by_key.entry(matched).or_default().push(at);
                    }
                }
                answers.push(record.clone());
            }
        }
        Ok(ChainedIndex {
            by_key,
            answers: Some(Arc::new(answers)),
        })
    }

    /// Calls the chained follow-up once per catalog record with an id (each id once) and indexes
    /// what the answers hold: the value `matches` gives → the catalog records answering it.
    async fn index_members(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
        catalog: &[Value],
    ) -> Result<PairIndex, ApiError> {
        let mut asked: Vec<(String, Vec<usize>)> = Vec::new();
        let mut position_of: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        for (at, item) in catalog.iter().enumerate() {
            let Some(id) = follow_up_id(
                follow_up,
                evaluate(call, &call.scope, &follow_up.id, item, "follow_up.id")?,
            ) else {
                continue;
            };
            match position_of.get(&id) {
                Some(&slot) => asked[slot].1.push(at),
                None => {
                    position_of.insert(id.clone(), asked.len());
                    asked.push((id, vec![at]));
                }
            }
        }
        let Some(matches) = &follow_up.matches else {
            return Ok(PairIndex::new());
        };
        // What each call matched, by the id it was asked: taken over from a call of the account
        // that failed part-way, and handed on if this one fails or is dropped (a timeout).
        let unfinished = Unfinished::start(
            &self.unfinished_members,
            format!("{}\u{0}{}", call.target.account.id, follow_up.name),
        );
        let limit = self.follow_up_limit(call, follow_up);
        try_join_all(asked.iter().map(|(id, _)| {
            let limit = limit.clone();
            let done = &unfinished.done;
            async move {
                if lock(done).contains_key(id) {
                    return Ok(());
                }
                let _permit = limit
                    .acquire()
                    .await
                    .map_err(|_| ApiError::internal("the follow-up limiter was closed"))?;
                let answer = self.follow_one(call, follow_up, id, None).await?;
                let mut matched = Vec::new();
                for member in answer.iter().flatten() {
                    matched.extend(ids_of(evaluate(
                        call,
                        &call.scope,
                        matches,
                        member,
                        "follow_up.matches",
                    )?));
                }
                lock(done).insert(id.clone(), Arc::new(matched));
                Ok::<_, ApiError>(())
            }
        }))
        .await?;
        let done = unfinished.finish();
        let mut index = PairIndex::new();
        for (id, positions) in &asked {
            for matched in done.get(id).into_iter().flat_map(|matched| matched.iter()) {
                let found = index.entry(matched.clone()).or_default();
                for &at in positions {
                    // A member listed twice in one answer (or across its pages) counts once.
                    if !found.contains(&at) {
                        found.push(at);
                    }
                }
            }
        }
        for found in index.values_mut() {
            found.sort_unstable();
        }
        Ok(index)
    }

    /// Calls the follow-up once for each of `ids`, at most its concurrency at once, and gives
    /// each call's records by the id it was asked (`None`: a 404 declared as no detail). The
    /// answers of finished calls are taken over from a call of the account that failed part-way
    /// (slow per-user calls past the deadline), and handed on if this one fails or is dropped.
    async fn answer_each(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
        ids: &[String],
    ) -> Result<Done<Option<Arc<Vec<Value>>>>, ApiError> {
        let unfinished = Unfinished::start(
            &self.unfinished_details,
            format!("{}\u{0}{}", call.target.account.id, follow_up.name),
        );
        let limit = self.follow_up_limit(call, follow_up);
        try_join_all(ids.iter().map(|id| {
            let limit = limit.clone();
            let done = &unfinished.done;
            async move {
                if lock(done).contains_key(id) {
                    return Ok(());
                }
                let _permit = limit
                    .acquire()
                    .await
                    .map_err(|_| ApiError::internal("the follow-up limiter was closed"))?;
                let answer = self.follow_one(call, follow_up, id, None).await?;
                lock(done).insert(id.clone(), answer.map(Arc::new));
                Ok::<_, ApiError>(())
            }
        }))
        .await?;
        Ok(unfinished.finish())
    }

    /// For a get: the answers of the list's per-record follow-ups that `read` names (a user's
    /// details, read by the list's mapping the get shares), asked for `record` as the list asks
    /// them for each of its records, with `$query` the get's ([`get_query`]). Page-level
    /// follow-ups are made only where the file says so (`on_get`, a catalog of a few calls);
    /// chained ones never: they would walk the account's whole catalog for one record.
    pub(crate) async fn follow_get_record(
        &self,
        list: MethodKey,
        account_id: &str,
        id: &str,
        record: &Value,
        read: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<(String, Value)>, ApiError> {
        let mut params = serde_json::Map::new();
        params.insert(
            "integrated_account_id".to_owned(),
            Value::String(account_id.to_owned()),
        );
        let Ok(mut call) = self.prepare_list(list, params) else {
            return Ok(Vec::new());
        };
        // What a follow-up's `id` reads to know it serves a get: one user's groups are then
        // asked of that user, not of the account's whole catalog.
        call.scope = call.scope.with("query", get_query(id));
        let mut variables = FollowedUp {
            page: Vec::new(),
            records: vec![Vec::new()],
            asked: Vec::new(),
        };
        let records = std::slice::from_ref(record);
        for follow_up in &call.method().follow_ups {
            if follow_up.over.is_some() || !read.contains(&follow_up.name) || !call.makes(follow_up)
            {
                continue;
            }
            if !follow_up.per_page {
                self.follow_records(&call, &call.scope, follow_up, records, &mut variables)
                    .await?;
            } else if follow_up.on_get {
                self.follow_page(&call, &call.scope, follow_up, records, &mut variables)
                    .await?;
            }
        }
        let mut bound = variables.page;
        bound.extend(variables.records.pop().unwrap_or_default());
        Ok(bound)
    }

    async fn follow_records(
        &self,
        call: &ListCall,
        scope: &Scope,
        follow_up: &FollowUp,
        records: &[Value],
        variables: &mut FollowedUp,
    ) -> Result<(), ApiError> {
        let ids = records
            .iter()
            .map(|record| {
                evaluate(call, scope, &follow_up.id, record, "follow_up.id")
                    .map(|id| follow_up_id(follow_up, id))
            })
            .collect::<Result<Vec<Option<String>>, ApiError>>()?;
        let wanted: Vec<String> = ids.iter().flatten().cloned().collect();
        let done = self.answer_each(call, follow_up, &wanted).await?;
        for (slot, id) in variables.records.iter_mut().zip(&ids) {
            let answer = id.as_ref().and_then(|id| done.get(id)).cloned().flatten();
            if let Some(found) = answer.map(Arc::unwrap_or_clone).and_then(one_or_many) {
                slot.push((follow_up.name.clone(), found));
            }
        }
        Ok(())
    }

    /// A per-page follow-up; gives its answer when it was asked (for follow-ups chained over it).
    async fn follow_page(
        &self,
        call: &ListCall,
        scope: &Scope,
        follow_up: &FollowUp,
        records: &[Value],
        variables: &mut FollowedUp,
    ) -> Result<Option<Arc<Vec<Value>>>, ApiError> {
        if records.is_empty() {
            return Ok(None);
        }
        let page = Value::Array(records.to_vec());
        let id = evaluate(call, scope, &follow_up.id, &page, "follow_up.id")?;
        let limit = self.follow_up_limit(call, follow_up);
        let answered = match &follow_up.batch {
            None => {
                let Some(id) = follow_up_id(follow_up, id) else {
                    return Ok(None);
                };
                variables.asked.push(follow_up.name.clone());
                let known = lock(&call.walk_answers.per_page)
                    .get(&follow_up.name)
                    .filter(|(asked, _)| *asked == id)
                    .map(|(_, answer)| answer.clone());
                let answer = match known {
                    Some(answer) => answer,
                    None => {
                        let _permit = limit
                            .acquire()
                            .await
                            .map_err(|_| ApiError::internal("the follow-up limiter was closed"))?;
                        let answer = self
                            .follow_one(call, follow_up, &id, None)
                            .await?
                            .map(Arc::new);
                        lock(&call.walk_answers.per_page)
                            .insert(follow_up.name.clone(), (id, answer.clone()));
                        answer
                    }
                };
                let Some(answered) = answer else {
                    return Ok(None);
                };
                answered
            }
            Some(batch) => {
                // The page's ids, each once, in calls of at most `size`.
                let mut ids: Vec<String> = match id {
                    Some(Value::Array(items)) => {
                        items.into_iter().filter_map(|id| as_id(Some(id))).collect()
                    }
                    other => as_id(other).into_iter().collect(),
                };
                let mut seen = std::collections::HashSet::new();
                ids.retain(|id| seen.insert(id.clone()));
                if ids.is_empty() {
                    return Ok(None);
                }
                variables.asked.push(follow_up.name.clone());
                if batch.keep {
                    self.follow_kept_batch(call, follow_up, batch, &ids, &limit)
                        .await?
                } else {
                    let answers = try_join_all(ids.chunks(batch.size).map(|chunk| {
                        let limit = limit.clone();
                        async move {
                            let _permit = limit.acquire().await.map_err(|_| {
                                ApiError::internal("the follow-up limiter was closed")
                            })?;
                            let joined = chunk.join(",");
                            self.follow_one(call, follow_up, &joined, Some((batch, chunk)))
                                .await
                        }
                    }))
                    .await?;
                    Arc::new(answers.into_iter().flatten().flatten().collect())
                }
            }
        };
        let Some(matches) = &follow_up.matches else {
            // Nothing pairs the answer with records: it is the whole page's.
            if let Some(found) = one_or_many(answered.as_ref().clone()) {
                variables.page.push((follow_up.name.clone(), found));
            }
            return Ok(Some(answered));
        };
        // The answer's records by the key they match, in answer order: a page of thousands of
        // records (Airtable's whole enterprise in one) is paired in one pass, not one per record.
        let mut by_key = PairIndex::new();
        for (index, item) in answered.iter().enumerate() {
            for matched in ids_of(evaluate(
                call,
                &call.scope,
                matches,
                item,
                "follow_up.matches",
            )?) {
                by_key.entry(matched).or_default().push(index);
            }
        }
        bind_paired(
            call, scope, follow_up, records, &by_key, &answered, variables,
        )?;
        Ok(Some(answered))
    }

    /// A kept batch's answers for a page's `ids`: the calls the walk made for them, and new
    /// calls (of at most `size` ids) for the ids no page of the walk asked yet; each call's
    /// records once, in the order of the page's ids.
    async fn follow_kept_batch(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
        batch: &FollowUpBatch,
        ids: &[String],
        limit: &Arc<tokio::sync::Semaphore>,
    ) -> Result<Arc<Vec<Value>>, ApiError> {
        // Answers of calls a failed call of the account finished (a first page whose calls ran
        // past the deadline or a long rate limit), by their joined ids: the next call, a walk
        // of its own, starts from them; handed on again if it fails too.
        let unfinished = Unfinished::start(
            &self.unfinished_details,
            format!("{}\u{0}{}", call.target.account.id, follow_up.name),
        );
        let calls: Vec<Arc<KeptCall>> = {
            let mut batched = lock(&call.walk_answers.batched);
            let kept = batched.entry(follow_up.name.clone()).or_default();
            let new: Vec<String> = ids
                .iter()
                .filter(|id| !kept.contains_key(*id))
                .cloned()
                .collect();
            let done = lock(&unfinished.done);
            for chunk in new.chunks(batch.size) {
                let answer = match done.get(&chunk.join(",")) {
                    Some(answer) => {
                        tokio::sync::OnceCell::new_with(Some(answer.clone().unwrap_or_default()))
                    }
                    None => tokio::sync::OnceCell::new(),
                };
                let made = Arc::new(KeptCall {
                    ids: chunk.to_vec(),
                    answer,
                });
                for id in chunk {
                    kept.insert(id.clone(), made.clone());
                }
            }
            let mut calls: Vec<Arc<KeptCall>> = Vec::new();
            for id in ids {
                if let Some(made) = kept.get(id)
                    && !calls.iter().any(|taken| Arc::ptr_eq(taken, made))
                {
                    calls.push(made.clone());
                }
            }
            calls
        };
        let done = &unfinished.done;
        let answers = try_join_all(calls.iter().map(|kept| async move {
            kept.answer
                .get_or_try_init(|| async {
                    let _permit = limit
                        .acquire()
                        .await
                        .map_err(|_| ApiError::internal("the follow-up limiter was closed"))?;
                    let joined = kept.ids.join(",");
                    let answer = self
                        .follow_one(call, follow_up, &joined, Some((batch, &kept.ids)))
                        .await?;
                    let answer = Arc::new(answer.unwrap_or_default());
                    lock(done).insert(joined, Some(answer.clone()));
                    Ok::<_, ApiError>(answer)
                })
                .await
                .cloned()
        }))
        .await?;
        unfinished.finish();
        Ok(Arc::new(
            answers
                .iter()
                .flat_map(|records| records.iter().cloned())
                .collect(),
        ))
    }

    /// One follow-up call: the records its answer holds (every page's, with `walk`), or `None`
    /// for a 404 declared as "no detail". `id` fills `{{id}}`; a batch's ids also go as its
    /// repeated parameter.
    async fn follow_one(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
        id: &str,
        batch: Option<(&FollowUpBatch, &[String])>,
    ) -> Result<Option<Vec<Value>>, ApiError> {
        let what = format!("the `{}` follow-up request", follow_up.name);
        self.read_answer(call, follow_up, id, batch, &what).await
    }

    /// The records of one call of `follow_up`'s resource (every page's, with `walk`), or `None`
    /// for a 404 declared as "no detail"; `what` names the call in its errors (a follow-up, a
    /// pass's catalog).
    pub(crate) async fn read_answer(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
        id: &str,
        batch: Option<(&FollowUpBatch, &[String])>,
        what: &str,
    ) -> Result<Option<Vec<Value>>, ApiError> {
        // Read as the records a mapping reads: an integer beyond ±2^53 as its digits.
        let records = self.read_records(call, follow_up, id, batch, what).await?;
        Ok(records.map(|records| {
            records
                .into_iter()
                .map(unigate_mapping::doc::with_exact_integers)
                .collect()
        }))
    }

    async fn read_records(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
        id: &str,
        batch: Option<(&FollowUpBatch, &[String])>,
        what: &str,
    ) -> Result<Option<Vec<Value>>, ApiError> {
        let target = &call.target;
        let failed = |error: ApiError| {
            let mut error = error;
            error.message = format!(
                "{what} of integration `{}` failed: {}",
                target.integration.id, error.message
            );
            error
        };
        let endpoint = Endpoint::render(target, &follow_up.resource, Some(id))?;
        let resource = endpoint.resource();
        // Records that carry what they were asked for (`$id` in `records`).
        let with_id;
        let scope = match resource.records_read_id {
            true => {
                with_id = call.scope.with("id", Value::String(id.to_owned()));
                &with_id
            }
            false => &call.scope,
        };
        let strategy = &resource.pagination_of(None).strategy;
        // A walk asks the most a page may hold; a single call asks what the list call does,
        // within what its own resource accepts.
        let page_size = match (follow_up.walk, strategy.max_page_size) {
            (true, Some(max)) => max,
            (true, None) => strategy.page_size(None, call.page_size.max(100)),
            (false, _) => strategy.page_size(Some(call.page_size), call.page_size),
        };
        // A walk that stops part-way (an outage, a rate limit longer than the gateway waits,
        // the request deadline) is taken up where it stood by the account's next call.
        let mut walk =
            ResumableWalk::start(follow_up.walk.then_some(&self.unfinished_walks), || {
                format!(
                    "{}\u{0}{}\u{0}{page_size}\u{0}{id}",
                    target.account.id, follow_up.name
                )
            });
        loop {
            let WalkProgress {
                position,
                records,
                pages,
                last_digest,
            } = &mut walk.progress;
            let body = render_body(
                resource,
                None,
                position,
                page_size,
                &call.unified_query,
                Some(id),
                &call.scope,
            )
            .map_err(|error| mapping_error(&target.integration, &error))?;
            let mut request = match follow_up.walk {
                true => endpoint.page_request(position, 0, None, page_size, body)?,
                false => endpoint.request(body)?,
            };
            if let Some((
                FollowUpBatch {
                    param: Some(param), ..
                },
                ids,
            )) = batch
            {
                let mut query = request.url.query_pairs_mut();
                for id in ids {
                    query.append_pair(param, id);
                }
            }
            self.metrics
                .follow_up_call(&target.integration.id, &follow_up.name);
            let response = self
                .call_provider_for_follow_up(target, &endpoint, &request)
                .await
                .map_err(failed)?;
            if response.status == 404 && follow_up.skip_not_found && *pages == 0 {
                return Ok(None);
            }
            let headers = response.header_pairs();
            let answer = Answer {
                status: response.status,
                headers: &headers,
                body: &response.body,
                format: target.integration.body_format,
            };
            let text = body_text(&response.body);
            let body = match check_answer(target, answer, &text, &call.scope, None) {
                // A provider that says "no such record" another way (Zoho's 400 INVALID_DATA for
                // a deleted group, Slack's HTTP 200 `invalid_team`) says so through the
                // mapping's `errors.not_found`.
                Err(error) if follow_up.skip_not_found && *pages == 0 && error.status() == 404 => {
                    return Ok(None);
                }
                checked => checked.map_err(failed)?,
            };
            if !follow_up.walk {
                return extract_records(resource, body, scope)
                    .map(Some)
                    .map_err(|error| failed(mapping_error(&target.integration, &error)));
            }
            let reading = read_page(resource, None, answer, body, scope)
                .map_err(|error| failed(mapping_error(&target.integration, &error)))?;
            *pages += 1;
            let received = reading.received();
            let next = match (&strategy.style, reading.next) {
                (Style::LinkHeader | Style::NextUrl, Some(link)) if link.trim().is_empty() => None,
                (Style::LinkHeader | Style::NextUrl, Some(link)) => Some(
                    endpoint
                        .checked_next_url(
                            &request.url,
                            &link,
                            resource.pagination_of(None).next_url_keeps_query,
                            0,
                        )
                        .map_err(failed)?,
                ),
                (_, next) => next,
            };
            let digest = crate::page::page_digest(&response.body);
            let facts = PageFacts {
                next,
                record_count: received,
                has_more: reading.has_more,
                total: reading.total,
                digest: Some(digest.clone()),
            };
            let next = match strategy.next_position(
                position,
                page_size,
                &facts,
                last_digest.as_deref(),
                *pages,
            ) {
                // The last page again for a page past the end: the walk is over, and this page's
                // records were read with the page before.
                Err(PaginationError::IdenticalPage) if strategy.last_page_repeats => {
                    return Ok(Some(walk.finish()));
                }
                next => next,
            }
            .map_err(|error| {
                    let message = match error {
                        // Not a loop but an answer larger than the walk is sized for: say which
                        // bound, so the operator can raise it (or turn the follow-up off).
                        PaginationError::Endless(pages) => format!(
                            "its answer has more than {pages} pages, the `pagination.max_pages` of resource `{}`; the list is not answered without it",
                            follow_up.resource
                        ),
                        other => other.to_string(),
                    };
                    failed(ApiError::new(ErrorKind::BadGateway, message))
                })?;
            records.extend(reading.records);
            match next {
                Some(next) => {
                    *position = next;
                    *last_digest = Some(digest);
                }
                None => return Ok(Some(walk.finish())),
            }
        }
    }

    /// The follow-up's bound on calls in flight for the call's account, shared by every call.
    fn follow_up_limit(
        &self,
        call: &ListCall,
        follow_up: &FollowUp,
    ) -> Arc<tokio::sync::Semaphore> {
        let key = format!(
            "{}\u{0}{}\u{0}{}",
            call.target.integration.id, call.target.account.id, follow_up.name
        );
        self.follow_up_limits.get_with(key, || {
            Arc::new(tokio::sync::Semaphore::new(follow_up.concurrency as usize))
        })
    }
}

/// `$query` on a get: `{"id": …}`, the record asked for (the list's query has no `id`).
pub(crate) fn get_query(id: &str) -> Value {
    serde_json::json!({ "id": id })
}

/// A follow-up expression over `input` in `scope`; an error names the integration and the field.
pub(crate) fn evaluate(
    call: &ListCall,
    scope: &Scope,
    expression: &Expression,
    input: &Value,
    what: &'static str,
) -> Result<Option<Value>, ApiError> {
    expression.evaluate(input, scope).map_err(|error| {
        mapping_error(
            &call.target.integration,
            &unigate_mapping::MapError::Eval { what, error },
        )
    })
}

/// Gives each page record (by its `key`) the answer records `by_key` pairs with it, in answer
/// order; none is an empty list, a record without a key gets nothing.
fn bind_paired(
    call: &ListCall,
    scope: &Scope,
    follow_up: &FollowUp,
    records: &[Value],
    by_key: &PairIndex,
    answered: &[Value],
    variables: &mut FollowedUp,
) -> Result<(), ApiError> {
    let Some(key) = &follow_up.key else {
        return Ok(());
    };
    for (record, slot) in records.iter().zip(variables.records.iter_mut()) {
        let Some(wanted) = as_id(evaluate(call, scope, key, record, "follow_up.key")?) else {
            continue;
        };
        let found: Vec<Value> = by_key
            .get(&wanted)
            .map(|positions| positions.iter().map(|&at| answered[at].clone()).collect())
            .unwrap_or_default();
        slot.push((follow_up.name.clone(), Value::Array(found)));
    }
    Ok(())
}

/// A follow-up's answer as the variable: its one record, or all of them.
fn one_or_many(mut records: Vec<Value>) -> Option<Value> {
    match records.len() {
        0 => None,
        1 => records.pop(),
        _ => Some(Value::Array(records)),
    }
}

pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_walk_weighs_what_its_answers_hold() {
        let answers = WalkAnswers::default();
        assert_eq!(answers.weight(), 1, "an empty walk still takes a place");
        // 100 groups of about 2 KiB each: 100 x (32 + (32 + 2 + 32 + 1) + (32 + 4 + 32 + 2000))
        // bytes = 211 KiB, plus the walk's own place.
        let group = serde_json::json!({"id": "g", "name": "x".repeat(2000)});
        lock(&answers.per_page).insert(
            "catalog".into(),
            ("all".into(), Some(Arc::new(vec![group; 100]))),
        );
        assert_eq!(answers.weight(), 212);
        assert_eq!(
            held_bytes(&serde_json::json!({"ab": "cd"})),
            32 + 32 + 2 + 32 + 2
        );
    }
}
