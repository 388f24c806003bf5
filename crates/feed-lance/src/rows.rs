//! The filter fields of every stored row, kept in memory: ids, counts and
//! the exact number of rows a filter passes, without touching the table.

use std::collections::HashMap;

use feed_core::{Did, EventId, EventType, Hit, VectorFilter};

/// One row's filter fields; the author as its number in [`Rows`].
#[derive(Clone, Copy, Debug)]
struct Meta {
    kind: EventType,
    author: u32,
    ts: i64,
}

/// Rows by id, with authors numbered once (a 32-byte DID per author, not
/// per row), and the number of rows per author and type: a filter without
/// time bounds is counted from those (a sum over its authors), one with
/// them by a pass over 16-byte entries with a table lookup per author.
#[derive(Default)]
pub(crate) struct Rows {
    meta: HashMap<EventId, Meta>,
    author_no: HashMap<Did, u32>,
    /// Rows per (author number, type).
    per_author: HashMap<(u32, EventType), usize>,
}

impl Rows {
    /// Adds or replaces a row.
    pub(crate) fn insert(&mut self, id: EventId, kind: EventType, author: Did, ts: i64) {
        let next = self.author_no.len() as u32;
        let author = *self.author_no.entry(author).or_insert(next);
        if let Some(old) = self.meta.insert(id, Meta { kind, author, ts }) {
            self.uncount(old);
        }
        *self.per_author.entry((author, kind)).or_default() += 1;
    }

    /// Removes a row; whether it was there.
    pub(crate) fn remove(&mut self, id: EventId) -> bool {
        match self.meta.remove(&id) {
            Some(old) => {
                self.uncount(old);
                true
            }
            None => false,
        }
    }

    fn uncount(&mut self, m: Meta) {
        if let Some(n) = self.per_author.get_mut(&(m.author, m.kind)) {
            *n -= 1;
            if *n == 0 {
                self.per_author.remove(&(m.author, m.kind));
            }
        }
    }

    /// Whether the row is held.
    pub(crate) fn contains(&self, id: EventId) -> bool {
        self.meta.contains_key(&id)
    }

    /// Rows held.
    pub(crate) fn len(&self) -> usize {
        self.meta.len()
    }

    /// Every id, ascending.
    pub(crate) fn ids(&self) -> Vec<EventId> {
        let mut ids: Vec<EventId> = self.meta.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The exact number of rows `f` passes.
    pub(crate) fn count(&self, f: &VectorFilter) -> usize {
        if *f == VectorFilter::default() {
            return self.meta.len();
        }
        if f.since.is_some() || f.until.is_some() {
            let passes = self.matcher(f);
            return self.meta.values().filter(|m| passes(m)).count();
        }
        match &f.authors {
            None => self
                .per_author
                .iter()
                .filter(|((_, k), _)| f.passes_type(*k))
                .map(|(_, n)| n)
                .sum(),
            Some(list) => {
                // Each listed author once, however often the list names it.
                let mut numbers: Vec<u32> = self.numbers(list).collect();
                numbers.sort_unstable();
                numbers.dedup();
                numbers
                    .iter()
                    .flat_map(|&a| EventType::ALL.iter().map(move |&k| (a, k)))
                    .filter(|(_, k)| f.passes_type(*k))
                    .filter_map(|key| self.per_author.get(&key))
                    .sum()
            }
        }
    }

    /// The numbers of the authors in `list` that have rows.
    fn numbers<'a>(&'a self, list: &'a [Did]) -> impl Iterator<Item = u32> + 'a {
        list.iter().filter_map(|d| self.author_no.get(d).copied())
    }

    /// Keeps the hits whose rows are held and pass `f`, in order.
    pub(crate) fn keep_passing(&self, f: &VectorFilter, hits: &mut Vec<Hit>) {
        let passes = self.matcher(f);
        hits.retain(|h| self.meta.get(&h.id).is_some_and(&passes));
    }

    /// `f` as a test of one row, authors compared by number.
    fn matcher(&self, f: &VectorFilter) -> impl Fn(&Meta) -> bool {
        let allowed: Option<Vec<bool>> = f.authors.as_ref().map(|list| {
            let mut allowed = vec![false; self.author_no.len()];
            for n in self.numbers(list) {
                allowed[n as usize] = true;
            }
            allowed
        });
        // Types and time through the shared rule; authors by number above.
        let rest = VectorFilter {
            authors: None,
            ..f.clone()
        };
        let anyone = Did([0; 32]);
        move |m: &Meta| {
            allowed
                .as_ref()
                .is_none_or(|a| a.get(m.author as usize) == Some(&true))
                && rest.matches(m.kind, &anyone, m.ts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn did(n: u8) -> Did {
        Did([n; 32])
    }

    #[test]
    fn counts_follow_inserts_replacements_and_removals() {
        let mut rows = Rows::default();
        rows.insert(EventId(1), EventType::Post, did(1), 10);
        rows.insert(EventId(2), EventType::Post, did(2), 20);
        rows.insert(EventId(3), EventType::Reaction, did(1), 30);
        let by = |authors: Vec<Did>| VectorFilter {
            authors: Some(authors),
            ..VectorFilter::default()
        };
        assert_eq!(rows.count(&VectorFilter::default()), 3);
        assert_eq!(rows.count(&by(vec![did(1)])), 2);
        // An author the index has never seen passes nothing.
        assert_eq!(rows.count(&by(vec![did(9)])), 0);
        assert_eq!(rows.count(&by(vec![])), 0);
        // An author listed twice is counted once.
        assert_eq!(rows.count(&by(vec![did(1), did(1)])), 2);
        let reactions_of_1 = VectorFilter {
            types: Some(vec![EventType::Reaction]),
            authors: Some(vec![did(1)]),
            ..VectorFilter::default()
        };
        assert_eq!(rows.count(&reactions_of_1), 1);
        let posts_since_15 = VectorFilter {
            types: Some(vec![EventType::Post]),
            since: Some(15),
            ..VectorFilter::default()
        };
        assert_eq!(rows.count(&posts_since_15), 1);
        // A replaced row is counted under its new author only.
        rows.insert(EventId(1), EventType::Post, did(2), 10);
        assert_eq!(rows.count(&by(vec![did(1)])), 1);
        assert_eq!(rows.count(&by(vec![did(2)])), 2);
        assert!(rows.remove(EventId(2)));
        assert!(!rows.remove(EventId(2)));
        assert_eq!(rows.count(&by(vec![did(2)])), 1);
        assert_eq!(rows.ids(), vec![EventId(1), EventId(3)]);
        assert_eq!(rows.len(), 2);
        // The per-author counts agree with a pass over the rows.
        for f in [
            VectorFilter::default(),
            by(vec![did(1)]),
            by(vec![did(2), did(1), did(2)]),
            reactions_of_1.clone(),
            posts_since_15.clone(),
            VectorFilter {
                types: Some(vec![EventType::Post]),
                ..VectorFilter::default()
            },
        ] {
            let passes = rows.matcher(&f);
            let scanned = rows.meta.values().filter(|m| passes(m)).count();
            assert_eq!(rows.count(&f), scanned, "{f:?}");
        }
        // Hits are kept in order when held and passing; a removed row is not.
        let hit = |id| Hit {
            id: EventId(id),
            score: 0.5,
        };
        let mut hits = vec![hit(3), hit(2), hit(1)];
        rows.keep_passing(&by(vec![did(1), did(2)]), &mut hits);
        assert_eq!(hits, vec![hit(3), hit(1)]);
        rows.keep_passing(&by(vec![did(2)]), &mut hits);
        assert_eq!(hits, vec![hit(1)]);
    }
}
