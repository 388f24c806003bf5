//! Every stored post's arrival number and thread group, in memory, so a
//! thread reads its group's `events` rows with one statement that DuckDB
//! prunes by `seq` (which follows the storage order) instead of scanning
//! the `id` and `root` columns of every row group.

use std::collections::HashMap;

use duckdb::Connection;
use feed_core::EventType;

use super::{corrupt, Res};

/// A stored post: id, arrival number, thread group as of when it was read
/// or stored (groups absorbed since are followed through [`Posts::find`]),
/// and author (DID number).
#[derive(Clone, Copy)]
struct PostRef {
    id: u64,
    seq: i64,
    group: u64,
    author: i32,
}

/// Stored posts by id (a large sorted list and a small one for the newest,
/// merged when the small one grows past [`RECENT`]), and the `seq` span of
/// each thread group with more than one post. About 32 bytes per post and
/// 40 per such group.
#[derive(Default)]
pub(super) struct Posts {
    base: Vec<PostRef>,
    recent: Vec<PostRef>,
    /// Groups absorbed since open: old group → the group that took it in.
    up: HashMap<u64, u64>,
    /// Lowest and highest `seq` of each group of two or more posts.
    spans: HashMap<u64, (i64, i64)>,
}

/// Posts kept in the small list before it is merged into the large one.
const RECENT: usize = 8192;

/// Merges `new` (any order, ids not in `into`) into the sorted `into`.
fn merge(into: &mut Vec<PostRef>, mut new: Vec<PostRef>) {
    new.sort_unstable_by_key(|p| p.id);
    let mut i = into.len();
    into.extend_from_slice(&new);
    let (mut j, mut k) = (new.len(), into.len());
    while j > 0 {
        k -= 1;
        if i > 0 && into[i - 1].id > new[j - 1].id {
            into[k] = into[i - 1];
            i -= 1;
        } else {
            into[k] = new[j - 1];
            j -= 1;
        }
    }
}

fn find_in(list: &[PostRef], id: u64) -> Option<PostRef> {
    list.binary_search_by_key(&id, |p| p.id)
        .ok()
        .map(|i| list[i])
}

impl Posts {
    /// Reads every stored post (`count` of them, as counted at open, with
    /// arrival numbers below `next_seq`), one `seq` range per statement
    /// (DuckDB materialises a result in full).
    pub(super) fn load(c: &Connection, count: usize, next_seq: i64) -> Res<Posts> {
        let post = EventType::Post.code();
        let mut base = Vec::with_capacity(count);
        let mut stmt = c.prepare(
            "SELECT id, seq, root, author FROM events WHERE seq >= ? AND seq < ? AND kind = ?",
        )?;
        for (start, end) in super::seq_ranges(next_seq) {
            let mut rows = stmt.query(duckdb::params![start, end, post])?;
            while let Some(r) = rows.next()? {
                let group: Option<u64> = r.get(2)?;
                base.push(PostRef {
                    id: r.get(0)?,
                    seq: r.get(1)?,
                    group: group.ok_or_else(|| corrupt("stored post without a thread group"))?,
                    author: r.get(3)?,
                });
            }
        }
        // The spans of groups of two or more: sorted by group in place (no
        // second copy of the list), then back by id.
        base.sort_unstable_by_key(|p| (p.group, p.seq));
        let mut spans = HashMap::new();
        for run in base.chunk_by(|a, b| a.group == b.group) {
            if let (Some(first), Some(last)) = (run.first(), run.last()) {
                if run.len() > 1 {
                    spans.insert(first.group, (first.seq, last.seq));
                }
            }
        }
        base.sort_unstable_by_key(|p| p.id);
        if base.windows(2).any(|w| w[0].id == w[1].id) {
            return Err(corrupt("two stored events share an id"));
        }
        Ok(Posts {
            base,
            recent: Vec::new(),
            up: HashMap::new(),
            spans,
        })
    }

    fn get(&self, id: u64) -> Option<PostRef> {
        find_in(&self.base, id).or_else(|| find_in(&self.recent, id))
    }

    /// The group `g` now belongs to.
    fn find(&self, mut g: u64) -> u64 {
        while let Some(&next) = self.up.get(&g) {
            g = next;
        }
        g
    }

    /// The `seq` span of group `g`: a group of one post is its post (whose
    /// id names the group).
    fn span(&self, g: u64) -> Option<(i64, i64)> {
        self.spans
            .get(&g)
            .copied()
            .or_else(|| self.get(g).map(|p| (p.seq, p.seq)))
    }

    /// Stored post `id`'s thread group and that group's `seq` span; `None`
    /// if `id` is not a stored post.
    pub(super) fn group(&self, id: u64) -> Res<Option<(u64, (i64, i64))>> {
        let Some(p) = self.get(id) else {
            return Ok(None);
        };
        let g = self.find(p.group);
        let span = self
            .span(g)
            .ok_or_else(|| corrupt("a thread group has no posts"))?;
        Ok(Some((g, span)))
    }

    /// Stored post `id` as the write path needs it: its `seq`, its thread
    /// group now, and its author's DID number; `None` if `id` is not a
    /// stored post.
    pub(super) fn target(&self, id: u64) -> Option<(i64, u64, i32)> {
        self.get(id).map(|p| (p.seq, self.find(p.group), p.author))
    }

    /// After a commit: the posts stored (id, `seq`, group, author) and the
    /// groups absorbed (`old` into `new`, as the store recorded them).
    pub(super) fn add(&mut self, posts: Vec<(u64, i64, u64, i32)>, merges: Vec<(u64, u64)>) {
        // The posts first, so that every group's own post is found.
        let fresh = posts
            .iter()
            .map(|&(id, seq, group, author)| PostRef {
                id,
                seq,
                group,
                author,
            })
            .collect();
        merge(&mut self.recent, fresh);
        if self.recent.len() > RECENT {
            let recent = std::mem::take(&mut self.recent);
            merge(&mut self.base, recent);
        }
        for (old, new) in merges {
            let (old, new) = (self.find(old), self.find(new));
            if old == new {
                continue;
            }
            let absorbed = self.span(old);
            self.spans.remove(&old);
            self.up.insert(old, new);
            if let Some((lo, hi)) = absorbed {
                self.widen(new, lo, hi);
            }
        }
        for (id, seq, group, _) in posts {
            let g = self.find(group);
            // A post alone in its group needs no span.
            if g != id || self.spans.contains_key(&g) {
                self.widen(g, seq, seq);
            }
        }
    }

    /// Widens group `g`'s span to take in `lo..=hi`.
    fn widen(&mut self, g: u64, lo: i64, hi: i64) {
        let (a, b) = self.span(g).unwrap_or((lo, hi));
        self.spans.insert(g, (a.min(lo), b.max(hi)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{hash_set, vec};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn merge_keeps_every_id_in_order(
            ids in hash_set(any::<u64>(), 0..100),
            sides in vec(any::<bool>(), 100),
        ) {
            let (mut into, mut new) = (Vec::new(), Vec::new());
            for (i, id) in ids.iter().enumerate() {
                let p = PostRef { id: *id, seq: 0, group: *id, author: 1 };
                if sides[i] { into.push(p) } else { new.push(p) }
            }
            into.sort_unstable_by_key(|p| p.id);
            let mut want: Vec<u64> = ids.into_iter().collect();
            want.sort_unstable();
            merge(&mut into, new);
            prop_assert_eq!(into.iter().map(|p| p.id).collect::<Vec<_>>(), want);
        }
    }

    /// Spans follow new members, absorbed groups, and groups whose first
    /// post arrives in the same batch as its reply.
    #[test]
    fn spans_follow_members_and_merges() {
        let mut p = Posts::default();
        // Post 10 alone, seq 1: a group of one.
        p.add(vec![(10, 1, 10, 1)], vec![]);
        assert_eq!(p.group(10).unwrap(), Some((10, (1, 1))));
        assert!(p.spans.is_empty());
        // A reply (11) in a later batch; a root (20) and its reply (21) in
        // the same batch.
        p.add(vec![(11, 5, 10, 2), (21, 6, 20, 1), (20, 7, 20, 3)], vec![]);
        assert_eq!(p.group(11).unwrap(), Some((10, (1, 5))));
        assert_eq!(p.group(20).unwrap(), Some((20, (6, 7))));
        // Reply 31 arrived before its parent 30 (its own group); 30 comes
        // as a reply to 21 and absorbs it.
        p.add(vec![(31, 8, 31, 4)], vec![]);
        p.add(vec![(30, 9, 20, 5)], vec![(31, 20)]);
        for id in [20, 21, 30, 31] {
            assert_eq!(p.group(id).unwrap(), Some((20, (6, 9))));
        }
        // The write path's view: `seq`, the group now, the author.
        assert_eq!(p.target(31), Some((8, 20, 4)));
        assert_eq!(p.target(11), Some((5, 10, 2)));
        assert_eq!(p.target(99), None);
        assert_eq!(p.group(99).unwrap(), None);
        // Past the small list's size, the lists are merged.
        let many: Vec<(u64, i64, u64, i32)> = (0..RECENT as u64 + 10)
            .map(|i| (1000 + i, 100 + i as i64, 1000 + i, 1))
            .collect();
        p.add(many, vec![]);
        assert!(p.recent.is_empty());
        assert_eq!(p.group(1005).unwrap(), Some((1005, (105, 105))));
        assert_eq!(p.group(30).unwrap(), Some((20, (6, 9))));
    }
}
