//! Walking a provider's pages in order. For offset and page-number pagination the positions of
//! the next pages are known before they arrive, so a walk that takes every page (stream,
//! `truto_ignore_limit`) fetches a window of them concurrently and hands them on in order; a page
//! that ends the list early or does not advance as predicted discards the rest of the window.
//! Every other walk fetches one page at a time. A list served in parts (`passes`) is walked
//! once per pass: a pass's last page leads to the first page of the next, with fresh
//! pagination state.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::future::join_all;
use unigate_pagination::{CursorState, PaginationError, Position, Style};
use unigate_unified::{ApiError, ErrorKind};

use crate::Engine;
use crate::call::ListCall;
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
}

impl Walker {
    pub(crate) fn new(engine: Engine, call: Arc<ListCall>, state: CursorState) -> Self {
        Walker {
            engine,
            call,
            state,
            ahead: VecDeque::new(),
            total: None,
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
        self.fetch_next_page()
            .await
            .map_err(|error| self.engine.redact(&self.call.target, error))
    }

    async fn fetch_next_page(&mut self) -> Result<Page, ApiError> {
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
                self.engine.fetch_page(&self.call, &self.state).await?
            }
        };
        if page.total.is_some() {
            self.total = page.total;
        }
        let pass = self.state.pass;
        if let (None, Some(next_pass)) = (&page.next, self.call.endpoint.next_pass(pass)) {
            // The end of one pass of a list served in parts: the walk goes on at the first page
            // of the next one, which shares nothing with this pass's pages.
            self.ahead.clear();
            self.total = None;
            self.state = CursorState {
                position: Position::First,
                last_digest: None,
                pages: self.state.pages + 1,
                pass: next_pass,
            };
            page.next = Some(Position::First);
            return Ok(page);
        }
        self.state = CursorState {
            position: page.next.clone().unwrap_or(Position::First),
            // Read only where another page follows (the next fetch's guard, the cursor).
            last_digest: page.next.is_some().then(|| page.digest()),
            pages: self.state.pages + 1,
            pass,
        };
        Ok(page)
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
        let fetches = positions.iter().enumerate().map(|(k, position)| {
            let state = CursorState {
                position: position.clone(),
                last_digest: None,
                pages: base + k as u32,
                pass: self.state.pass,
            };
            let engine = self.engine.clone();
            let call = self.call.clone();
            async move { engine.fetch_page(&call, &state).await }
        });
        let pages = join_all(fetches).await;
        self.ahead = positions.into_iter().zip(pages).collect();
    }
}
