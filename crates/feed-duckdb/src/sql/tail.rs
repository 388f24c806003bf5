//! The newest stored events in memory: their `events` and `event_content`
//! rows, and for each the newest post `ts` up to it, so a recent home
//! timeline is answered without a DuckDB statement when these rows are
//! known to hold it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use duckdb::Connection;
use feed_core::EventType;

use super::{rows_between, Body, Head, Res};

fn is_post(kind: u8) -> bool {
    kind == EventType::Post.code()
}

/// One stored event's two rows.
struct Held {
    head: Head,
    body: Body,
    /// The newest `ts` of the posts at or before this row (`rowid`s
    /// `0..=` this one), if any ([`UNKNOWN`] if not known).
    top: Option<i64>,
}

impl Held {
    /// Bytes it holds in memory.
    fn size(&self) -> usize {
        row_size(&self.head, &self.body)
    }
}

/// Bytes a held row of `head` and `body` takes.
pub(super) fn row_size(head: &Head, body: &Body) -> usize {
    std::mem::size_of::<Held>() + head.heap() + body.heap()
}

/// The newest stored events, `rowid`s `first_row..`. Rows never move
/// (their `rowid`s run 0, 1, 2, … in arrival order) and content never
/// changes, so the tail is filled at open and after each commit, with
/// the oldest dropped beyond `cap` bytes; only the `deleted` and `edited`
/// flags of held rows change ([`Tail::mark`]).
///
/// Listings take content rows from it instead of a second statement
/// (fetching content rows by `rowid` cost ~1.5 ms at 1M events, since
/// every row group is tested), and a timeline whose posts it holds is
/// answered from it alone ([`Tail::timeline`]).
pub(super) struct Tail {
    first_row: i64,
    held: VecDeque<Held>,
    bytes: usize,
    /// The byte budget (0: nothing is held).
    pub(super) cap: usize,
    /// The newest post `ts` before `first_row`, if any ([`UNKNOWN`] if
    /// not known).
    before: Option<i64>,
}

/// Stands for a newest post `ts` that is not known: no post can be newer,
/// so a timeline is never answered from rows it covers.
const UNKNOWN: Option<i64> = Some(i64::MAX);

/// A committed batch's share of the tail: its rows are `start..`; the
/// newest `rows` (from `rowid` `first` on) are copied, the others only
/// counted by their newest post `ts`.
pub(super) struct Part {
    pub(super) start: i64,
    pub(super) first: i64,
    pub(super) dropped_top: Option<i64>,
    pub(super) rows: Vec<(Head, Body)>,
}

impl Part {
    /// Nothing written.
    pub(super) fn none() -> Part {
        Part {
            start: 0,
            first: 0,
            dropped_top: None,
            rows: Vec::new(),
        }
    }
}

impl Tail {
    fn new(cap: usize, first_row: i64, before: Option<i64>) -> Tail {
        Tail {
            first_row,
            held: VecDeque::new(),
            bytes: 0,
            cap,
            before,
        }
    }

    /// The newest of the `rows` stored events, up to `cap` bytes: read
    /// newest first, 4,096 rows per statement, until `cap` is reached (so
    /// a store of large rows, embeddings say, reads only what it keeps).
    pub(super) fn load(c: &Connection, rows: i64, cap: usize) -> Res<Tail> {
        const CHUNK: i64 = 4096;
        if cap == 0 {
            return Ok(Tail::new(0, rows, UNKNOWN));
        }
        let mut chunks = Vec::new();
        let (mut end, mut bytes) = (rows, 0);
        while end > 0 && bytes < cap {
            let start = (end - CHUNK).max(0);
            let chunk = rows_between(c, start, end)?;
            bytes += chunk.iter().map(|(h, b)| row_size(h, b)).sum::<usize>();
            chunks.push((start, chunk));
            end = start;
        }
        // The newest post `ts` before the rows read.
        let before: Option<i64> = c
            .prepare("SELECT max(ts) FROM events WHERE kind = ? AND seq <= ?")?
            .query_row(duckdb::params![EventType::Post.code(), end], |r| r.get(0))?;
        let mut tail = Tail::new(cap, end, before);
        for (start, rows) in chunks.into_iter().rev() {
            tail.extend(Part {
                start,
                first: start,
                dropped_top: None,
                rows,
            });
        }
        Ok(tail)
    }

    /// Content row `row`, if held.
    pub(super) fn get(&self, row: i64) -> Option<&Body> {
        self.held_at(row).map(|h| &h.body)
    }

    fn held_at(&self, row: i64) -> Option<&Held> {
        self.held.get(self.index(row)?)
    }

    /// The position of row `row` in `held`, if it can be there.
    fn index(&self, row: i64) -> Option<usize> {
        usize::try_from(row.checked_sub(self.first_row)?).ok()
    }

    fn end(&self) -> i64 {
        self.first_row + self.held.len() as i64
    }

    /// Drops every held row; the tail goes on at `first_row`.
    fn restart(&mut self, first_row: i64, before: Option<i64>) {
        self.held.clear();
        self.bytes = 0;
        self.first_row = first_row;
        self.before = before;
    }

    /// Adds a committed batch's rows.
    pub(super) fn extend(&mut self, part: Part) {
        if self.cap == 0 || (part.rows.is_empty() && part.first == part.start) {
            return;
        }
        let top = self.held.back().map_or(self.before, |h| h.top);
        if part.start != self.end() {
            // Not the rows after the held ones (batches are appended in
            // order, so this does not happen): the newest post before
            // them is not known.
            self.restart(part.first, UNKNOWN);
        } else if part.first != part.start {
            self.restart(part.first, top.max(part.dropped_top));
        }
        let mut top = self.held.back().map_or(self.before, |h| h.top);
        for (head, body) in part.rows {
            if is_post(head.kind) {
                top = top.max(Some(head.ts));
            }
            let h = Held { head, body, top };
            self.bytes += h.size();
            self.held.push_back(h);
        }
        while self.bytes > self.cap {
            let Some(h) = self.held.pop_front() else {
                break;
            };
            self.bytes -= h.size();
            self.before = h.top;
            self.first_row += 1;
        }
    }

    /// Sets the flag a commit set on stored row `row`, if held: `deleted`,
    /// or (`deleted` false) `edited`, which only posts carry.
    pub(super) fn mark(&mut self, row: i64, deleted: bool) {
        let Some(i) = self.index(row) else {
            return;
        };
        if let Some(h) = self.held.get_mut(i) {
            if deleted {
                h.head.deleted = true;
            } else if is_post(h.head.kind) {
                h.head.edited = true;
            }
        }
    }

    /// The `limit` newest live posts (by `ts`, then id) by the authors
    /// `wanted` marks (indexed by DID number) before `cursor`, if the held
    /// rows are known to hold them: `limit` were found and every post the
    /// tail does not hold, or has not visited yet, is older than the last
    /// of them, or the tail holds every stored post. `None` otherwise (the
    /// caller asks DuckDB). Newest first, with `rowid`s.
    pub(super) fn timeline(
        &self,
        wanted: &[bool],
        limit: usize,
        cursor: Option<(i64, u64)>,
    ) -> Option<Vec<(i64, Head)>> {
        if limit == 0 {
            return None;
        }
        let mut best: BinaryHeap<Reverse<(i64, u64, usize)>> = BinaryHeap::with_capacity(limit);
        let oldest_found = |best: &BinaryHeap<Reverse<(i64, u64, usize)>>| {
            best.peek()
                .filter(|_| best.len() == limit)
                .map(|Reverse((ts, _, _))| *ts)
        };
        let mut complete = false;
        for (i, h) in self.held.iter().enumerate().rev() {
            if oldest_found(&best).is_some_and(|ts| h.top < Some(ts)) {
                complete = true;
                break;
            }
            let e = &h.head;
            let by_wanted = usize::try_from(e.author_n)
                .ok()
                .and_then(|a| wanted.get(a))
                .copied()
                .unwrap_or(false);
            let before_cursor =
                cursor.is_none_or(|(ts, id)| e.ts < ts || (e.ts == ts && e.id < id));
            if !is_post(e.kind) || e.deleted || !by_wanted || !before_cursor {
                continue;
            }
            if best.len() == limit {
                if best
                    .peek()
                    .is_some_and(|Reverse(m)| (e.ts, e.id) < (m.0, m.1))
                {
                    continue;
                }
                best.pop();
            }
            best.push(Reverse((e.ts, e.id, i)));
        }
        // Stopped early, or every unvisited post (those before the tail)
        // is older than the oldest found, or there are none.
        let older_than_found = oldest_found(&best).is_some_and(|ts| self.before < Some(ts));
        if !(complete || older_than_found || self.before.is_none()) {
            return None;
        }
        let mut found = best.into_vec();
        found.sort_unstable();
        Some(
            found
                .into_iter()
                .map(|Reverse((_, _, i))| (self.first_row + i as i64, self.held[i].head.clone()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A stored row as the model sees it: kind code, author, `ts`, deleted.
    type Row = (u8, i32, i64, bool);

    fn held(row: usize, &(kind, author_n, ts, deleted): &Row) -> (Head, Body) {
        let head = Head {
            seq: row as i64 + 1,
            id: row as u64,
            kind,
            author_n,
            ts,
            hash: vec![0; 32],
            parent: None,
            deleted,
            edited: false,
        };
        let body = Body {
            id: row as u64,
            content: None,
            tags: None,
            mentions: None,
            embedding: None,
        };
        (head, body)
    }

    fn kind() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => Just(EventType::Post.code()),
            1 => Just(EventType::Reaction.code()),
            1 => Just(EventType::Delete.code()),
        ]
    }

    proptest! {
        /// Whatever the tail answers is the newest `limit` live posts of
        /// all rows, held or not, and a tail holding every row answers.
        #[test]
        fn a_timeline_from_the_tail_is_the_one_of_all_rows(
            rows in vec((kind(), 1i32..5, -20i64..20, any::<bool>()), 0..60),
            batches in vec((1usize..12, 0usize..12), 1..30),
            cap_rows in 1usize..50,
            deletes in vec(0usize..60, 0..8),
            wanted in vec(any::<bool>(), 4),
            limit in 1usize..8,
            cursor in proptest::option::of((-20i64..20, 0u64..60)),
        ) {
            let mut rows = rows;
            let size = {
                let (h, b) = held(0, &(0, 1, 0, false));
                row_size(&h, &b)
            };
            let mut tail = Tail::new(cap_rows * size, 0, None);
            let mut start = 0;
            for (n, keep) in batches {
                let end = (start + n).min(rows.len());
                if start == end {
                    break;
                }
                let first = end - keep.min(end - start);
                let dropped_top = rows[start..first]
                    .iter()
                    .filter(|r| is_post(r.0))
                    .map(|r| r.2)
                    .max();
                tail.extend(Part {
                    start: start as i64,
                    first: first as i64,
                    dropped_top,
                    rows: (first..end).map(|i| held(i, &rows[i])).collect(),
                });
                start = end;
            }
            rows.truncate(start);
            for d in deletes {
                if let Some(r) = rows.get_mut(d) {
                    r.3 = true;
                    tail.mark(d as i64, true);
                }
            }
            // By DID number (1, 2, …).
            let mut wanted_by_n = vec![false];
            wanted_by_n.extend(wanted);
            let mut want: Vec<(i64, u64)> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| is_post(r.0) && !r.3 && wanted_by_n[r.1 as usize])
                .map(|(i, r)| (r.2, i as u64))
                .filter(|&k| cursor.is_none_or(|c| k < c))
                .collect();
            want.sort_unstable_by(|a, b| b.cmp(a));
            want.truncate(limit);
            match tail.timeline(&wanted_by_n, limit, cursor) {
                Some(found) => {
                    let got: Vec<(i64, u64)> = found
                        .iter()
                        .map(|(r, h)| {
                            assert_eq!(*r as u64, h.id);
                            (h.ts, h.id)
                        })
                        .collect();
                    prop_assert_eq!(got, want);
                }
                None => prop_assert!(
                    tail.first_row > 0,
                    "the tail holds every row but did not answer"
                ),
            }
        }
    }
}
