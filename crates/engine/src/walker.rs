//! Walking a provider's pages in order. For offset and page-number pagination the positions of
//! the next pages are known before they arrive, so a walk that takes every page (stream,
//! `truto_ignore_limit`) fetches a window of them concurrently and hands them on in order; a page
//! that ends the list early or does not advance as predicted discards the rest of the window.
//! Every other walk fetches one page at a time. A list served in parts (`passes`) is walked
//! once per pass: a pass's last page leads to the first page of the next, with fresh
//! pagination state; a pass over a catalog (`over`) is walked so once per catalog record.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::Value;
use unigate_pagination::{CatalogAt, CursorState, PaginationError, Position, Style};
use unigate_unified::{ApiError, ErrorKind};

use crate::Engine;
use crate::call::ListCall;
use crate::catalog::{Catalog, locate};
use crate::page::Page;

pub(crate) struct Walker {
    engine: Engine,
    call: Arc<ListCall>,
    /// Where the next page to hand on starts, and the guards' memory.
    state: CursorState,
    /// Pages fetched ahead, with the position each was fetched at.
    ahead: VecDeque<(Position, Result<Page, ApiError>)>,
    /// Total records (offset) or pages (page) the provider last reported.
    total: Option<u64>,
    /// The catalog of the pass walked, when it is walked over one (`state.item` is a place
    /// in it).
    catalog: Option<Catalog>,
    /// Whether `state` has been placed in its pass's catalog: a cursor's catalog record found
    /// again in the catalog as read now, a pass's start turned into its first record.
    placed: bool,
}

impl Walker {
    pub(crate) fn new(engine: Engine, call: Arc<ListCall>, state: CursorState) -> Self {
        Walker {
            engine,
            call,
            state,
            ahead: VecDeque::new(),
            total: None,
            catalog: None,
            placed: false,
        }
    }

    pub(crate) fn call(&self) -> &ListCall {
        &self.call
    }

    /// The position after the pages handed on so far (for the continuation cursor).
    pub(crate) fn state(&self) -> &CursorState {
        &self.state
    }

    /// The next page in order, or the error it ended with, cleaned of the account's
    /// credentials ([`Engine::redact`]). Call only while the previous page had a next one.
    pub(crate) async fn next_page(&mut self) -> Result<Page, ApiError> {
        // The walk's page number of this page, the same when a call is asked again with the
        // same cursor (a caller's retry).
        let number = self.state.pages;
        let mut page = self
            .fetch_next_page()
            .await
            .map_err(|error| self.engine.redact(&self.call.target, error))?;
        if self.call.lists_each_id_once() {
            // A user two parts list (an invitation of a member, a provider that ignores the
            // parameter a pass sends) is listed once, by the first part that lists it. A record
            // listed first on this very page (asked again) is listed again.
            let mut listed = crate::follow::lock(&self.call.walk_answers.listed);
            page.records.retain(|record| match record.unified_id() {
                None => true,
                Some(id) => *listed.entry(id).or_insert(number) >= number,
            });
        }
        Ok(page)
    }

    async fn fetch_next_page(&mut self) -> Result<Page, ApiError> {
        // The catalogs left holding nothing, the walk is over.
        if !self.placed
            && self.call.endpoint.pass_over(self.state.pass).is_some()
            && !self.place().await?
        {
            return Ok(Page::empty());
        }
        if self.ahead.is_empty() && self.call.prefetch && self.state.pages > 0 {
            self.fetch_window().await;
        }
        let mut page = match self.ahead.pop_front() {
            Some((position, page)) if position == self.state.position => {
                let mut page = page?;
                if !page.records.is_empty()
                    && let Some(last_digest) = &self.state.last_digest
                    && *last_digest == page.digest()
                {
                    let pass = self.call.endpoint.pass_index(self.state.pass);
                    if !self
                        .call
                        .resource()
                        .pagination_of(pass)
                        .strategy
                        .last_page_repeats
                    {
                        return Err(ApiError::new(
                            ErrorKind::BadGateway,
                            PaginationError::IdenticalPage.to_string(),
                        ));
                    }
                    // The last page again for a page past the end: the walk is over, and these
                    // records were given with the page before (as `Engine::fetch_page` does).
                    page.records.clear();
                    page.next = None;
                }
                // The window guessed the following positions; a page that does not lead to the
                // next guess (a short page, the end) makes the rest of the window void.
                let leads_on = matches!((&page.next, self.ahead.front()), (Some(next), Some((guess, _))) if next == guess);
                if !leads_on {
                    self.ahead.clear();
                }
                page
            }
            _ => {
                self.ahead.clear();
                let over = self.over_record();
                match self.engine.fetch_page(&self.call, &self.state, over).await {
                    // A catalog record gone since the catalog was read (or without the product)
                    // lists nothing, where the pass says so.
                    Err(error)
                        if error.status() == 404
                            && self.state.position == Position::First
                            && self
                                .call
                                .endpoint
                                .pass_over(self.state.pass)
                                .is_some_and(|over| over.skip_not_found) =>
                    {
                        Page::empty()
                    }
                    page => page?,
                }
            }
        };
        if page.total.is_some() {
            self.total = page.total;
        }
        let pass = self.state.pass;
        if page.next.is_none() {
            // The end of one catalog record's list: the walk goes on at the next record's.
            let next_item = self.state.item.as_ref().and_then(|at| {
                let index = at.index as usize + 1;
                let (id, _) = self.catalog.as_ref()?.get(index)?;
                Some(CatalogAt {
                    index: index as u32,
                    id: id.clone(),
                })
            });
            // The end of one pass of a list served in parts: the walk goes on at the first page
            // of the next one, which shares nothing with this pass's pages (a pass over a
            // catalog is placed in its catalog as it is fetched).
            let next_part = match next_item {
                Some(item) => Some((pass, Some(item))),
                None => self
                    .call
                    .endpoint
                    .next_pass(pass)
                    .map(|next_pass| (next_pass, None)),
            };
            if let Some((next_pass, item)) = next_part {
                self.ahead.clear();
                self.total = None;
                self.placed = item.is_some();
                self.state = CursorState {
                    position: Position::First,
                    last_digest: None,
                    pages: self.state.pages + 1,
                    pass: next_pass,
                    item,
                };
                page.next = Some(Position::First);
                return Ok(page);
            }
        }
        self.state = CursorState {
            position: page.next.clone().unwrap_or(Position::First),
            // Read only where another page follows (the next fetch's guard, the cursor).
            last_digest: page.next.is_some().then(|| page.digest()),
            pages: self.state.pages + 1,
            pass,
            item: self.state.item.clone(),
        };
        Ok(page)
    }

    /// Places `state` in its pass's catalog, read now (or kept by the walk): a pass's start
    /// at its first record, a cursor's record where it is now. A record gone since the cursor
    /// was made is walked past: the walk goes on at the record now in its place, from its
    /// first page. A catalog with nothing left leads to the next pass. False when no pass is
    /// left.
    async fn place(&mut self) -> Result<bool, ApiError> {
        let mut pass = self.state.pass;
        // The record to start from, unless the state's own is still in the catalog.
        let mut from = 0;
        loop {
            if self.call.endpoint.pass_over(pass).is_none() {
                break;
            }
            let catalog = self.engine.pass_catalog(&self.call, pass).await?;
            if pass == self.state.pass
                && let Some(at) = &self.state.item
            {
                match locate(&catalog, at) {
                    Some(index) => {
                        self.state.item = Some(CatalogAt {
                            index: index as u32,
                            id: at.id.clone(),
                        });
                        self.catalog = Some(catalog);
                        self.placed = true;
                        return Ok(true);
                    }
                    None => from = at.index as usize,
                }
            }
            if let Some((id, _)) = catalog.get(from) {
                let item = Some(CatalogAt {
                    index: from as u32,
                    id: id.clone(),
                });
                self.move_to(pass, item);
                self.catalog = Some(catalog);
                return Ok(true);
            }
            match self.call.endpoint.next_pass(pass) {
                Some(next) => {
                    pass = next;
                    from = 0;
                }
                None => return Ok(false),
            }
        }
        // A pass not over a catalog, after catalogs with nothing left.
        self.move_to(pass, None);
        self.catalog = None;
        Ok(true)
    }

    /// The walk goes on at the first page of `pass`'s part (`item`) unless it is there.
    fn move_to(&mut self, pass: u32, item: Option<CatalogAt>) {
        self.placed = true;
        if self.state.pass == pass && self.state.item == item {
            return;
        }
        self.ahead.clear();
        self.total = None;
        self.state = CursorState {
            position: Position::First,
            last_digest: None,
            pages: self.state.pages,
            pass,
            item,
        };
    }

    /// The catalog record the current part lists, for a pass over a catalog.
    fn over_record(&self) -> Option<&Value> {
        let at = self.state.item.as_ref()?;
        self.catalog
            .as_ref()?
            .get(at.index as usize)
            .map(|(_, record)| record)
    }

    /// Fetches up to `prefetch_window` pages from the current position at once.
    async fn fetch_window(&mut self) {
        let pass = self.call.endpoint.pass_index(self.state.pass);
        let pagination = &self.call.resource().pagination_of(pass).strategy;
        let size = u64::from(self.call.page_size_of(self.state.pass));
        let window = self.engine.config.prefetch_window as u64;
        let positions: Vec<Position> = match (&pagination.style, &self.state.position) {
            (Style::Offset { .. }, Position::Offset(offset)) => (0..window)
                .map(|k| offset + k * size)
                .filter(|offset| self.total.is_none_or(|total| *offset < total))
                .map(Position::Offset)
                .collect(),
            (Style::Page { first_page, .. }, Position::Page(page)) => (0..window)
                .map(|k| page + k)
                .filter(|page| {
                    self.total
                        .is_none_or(|total| page + 1 - first_page <= total)
                })
                .map(Position::Page)
                .collect(),
            _ => Vec::new(),
        };
        let base = self.state.pages;
        let over = self.over_record().cloned();
        let fetches = positions.iter().enumerate().map(|(k, position)| {
            let state = CursorState {
                position: position.clone(),
                last_digest: None,
                pages: base + k as u32,
                pass: self.state.pass,
                item: self.state.item.clone(),
            };
            let engine = self.engine.clone();
            let call = self.call.clone();
            let over = over.clone();
            async move { engine.fetch_page(&call, &state, over.as_ref()).await }
        });
        let pages = join_all(fetches).await;
        self.ahead = positions.into_iter().zip(pages).collect();
    }
}
