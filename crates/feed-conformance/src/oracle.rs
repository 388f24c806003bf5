//! The reference model: a deliberately naive reading of SPEC.md that shares
//! no query or rule code with any backend (only the plain data types of
//! `feed-core`). Every answer is recomputed by scanning the list of stored
//! events, so it is slow and obviously right.

use std::collections::{BTreeMap, BTreeSet};

use feed_core::{
    BucketWidth, ContentHash, Counts, Cursor, Did, Entry, ErrorCode, EventId, EventType, EventView,
    FeedEvent, Filter, Thread, ThreadNode,
};

/// Expected outcome of one appended event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Stored.
    Accepted,
    /// Already there, unchanged.
    Duplicate,
    /// Rejected with this code.
    Rejected(ErrorCode),
}

/// The model: stored events in arrival order.
#[derive(Clone, Debug, Default)]
pub struct Oracle {
    /// Every stored event, as accepted (tags lowercased), in arrival order.
    pub events: Vec<FeedEvent>,
}

const THREAD_CAP: usize = 10_000;

fn rule_check(ev: &FeedEvent, now: i64) -> Result<FeedEvent, ErrorCode> {
    use ErrorCode::*;
    if ev.id.0 == 0 {
        return Err(BadField);
    }
    if ev.content.as_ref().is_some_and(|c| c.len() > 65_536) {
        return Err(TooLarge);
    }
    if ev.tags.len() > 32 || ev.mentions.len() > 64 {
        return Err(TooLarge);
    }
    let mut tags = Vec::new();
    for t in &ev.tags {
        let lower = t.to_lowercase();
        if t.is_empty()
            || t.starts_with('#')
            || t.chars().any(char::is_whitespace)
            || lower.len() > 64
        {
            return Err(BadField);
        }
        tags.push(lower);
    }
    if let Some(c) = &ev.content {
        if ContentHash::of(c) != ev.content_hash {
            return Err(BadHash);
        }
    }
    if ev.parent == Some(ev.id) || ev.parent == Some(EventId(0)) {
        return Err(BadField);
    }
    if ev.ts > now + 3_630_000_000_000 {
        return Err(FutureTs);
    }
    let kind = ev.kind;
    if matches!(
        kind,
        EventType::Reaction | EventType::Edit | EventType::Delete
    ) && ev.parent.is_none()
    {
        return Err(MissingTarget);
    }
    if kind == EventType::Reaction
        && tags
            .first()
            .is_some_and(|t| !["like", "boost", "bookmark"].contains(&t.as_str()))
    {
        return Err(BadField);
    }
    if kind == EventType::Follow {
        if ev.mentions.len() != 1 {
            return Err(BadField);
        }
        if ev.mentions[0] == ev.author {
            return Err(SelfFollow);
        }
    }
    if kind == EventType::Mention && ev.mentions.is_empty() {
        return Err(BadField);
    }
    if kind == EventType::Hashtag && tags.is_empty() {
        return Err(BadField);
    }
    let mut out = ev.clone();
    out.tags = tags;
    Ok(out)
}

fn newest_first(mut v: Vec<&FeedEvent>) -> Vec<&FeedEvent> {
    v.sort_by_key(|e| std::cmp::Reverse((e.ts, e.id)));
    v
}

fn before_ok(e: &FeedEvent, before: Option<Cursor>) -> bool {
    before.is_none_or(|c| (e.ts, e.id) < (c.ts, c.id))
}

fn topical(e: &FeedEvent) -> bool {
    matches!(
        e.kind,
        EventType::Post | EventType::Mention | EventType::Hashtag
    )
}

impl Oracle {
    /// Applies a batch, returning the expected status of each event.
    pub fn append(&mut self, batch: &[FeedEvent], now: i64) -> Vec<Expect> {
        batch
            .iter()
            .map(|raw| {
                let ev = match rule_check(raw, now) {
                    Ok(ev) => ev,
                    Err(c) => return Expect::Rejected(c),
                };
                if let Some(old) = self.find(ev.id) {
                    let same = old.kind == ev.kind
                        && old.author == ev.author
                        && old.ts == ev.ts
                        && old.content_hash == ev.content_hash
                        && old.parent == ev.parent
                        && old.tags == ev.tags
                        && old.mentions == ev.mentions;
                    return if same {
                        Expect::Duplicate
                    } else {
                        Expect::Rejected(ErrorCode::Conflict)
                    };
                }
                if let Some(t) = ev.parent.and_then(|p| self.find(p)) {
                    let wrong_type = match ev.kind {
                        EventType::Reaction | EventType::Edit => t.kind != EventType::Post,
                        EventType::Delete => t.kind == EventType::Delete,
                        _ => false,
                    };
                    if wrong_type {
                        return Expect::Rejected(ErrorCode::InvalidTarget);
                    }
                    if matches!(ev.kind, EventType::Edit | EventType::Delete)
                        && t.author != ev.author
                    {
                        return Expect::Rejected(ErrorCode::NotAuthor);
                    }
                }
                self.events.push(ev);
                Expect::Accepted
            })
            .collect()
    }

    /// The stored event with `id`.
    pub fn find(&self, id: EventId) -> Option<&FeedEvent> {
        self.events.iter().find(|e| e.id == id)
    }

    /// Whether a stored event is deleted.
    pub fn deleted(&self, e: &FeedEvent) -> bool {
        e.kind != EventType::Delete
            && self.events.iter().any(|d| {
                d.kind == EventType::Delete && d.parent == Some(e.id) && d.author == e.author
            })
    }

    fn live(&self) -> impl Iterator<Item = &FeedEvent> {
        self.events.iter().filter(|e| !self.deleted(e))
    }

    fn edits_of<'a>(&'a self, post: &'a FeedEvent) -> Vec<&'a FeedEvent> {
        let mut v: Vec<&FeedEvent> = self
            .live()
            .filter(|e| {
                e.kind == EventType::Edit
                    && e.parent == Some(post.id)
                    && e.author == post.author
                    && post.kind == EventType::Post
            })
            .collect();
        v.sort_by_key(|e| (e.ts, e.id));
        v
    }

    /// A live event as reads show it.
    pub fn shown(&self, e: &FeedEvent) -> EventView {
        let mut event = e.clone();
        let mut edited = false;
        if let Some(last) = self.edits_of(e).last() {
            event.content = last.content.clone();
            event.content_hash = last.content_hash;
            event.embedding = last.embedding.clone();
            edited = true;
        }
        EventView { event, edited }
    }

    fn views(&self, v: Vec<&FeedEvent>, limit: usize) -> Vec<EventView> {
        newest_first(v)
            .into_iter()
            .take(limit)
            .map(|e| self.shown(e))
            .collect()
    }

    /// `get`.
    pub fn get(&self, id: EventId) -> Option<Entry> {
        let e = self.find(id)?;
        Some(if self.deleted(e) {
            Entry::Deleted(id)
        } else {
            Entry::Live(self.shown(e))
        })
    }

    /// `stored`.
    pub fn stored(&self, id: EventId) -> Option<FeedEvent> {
        self.find(id).cloned()
    }

    /// `versions`.
    pub fn versions(&self, id: EventId) -> Vec<FeedEvent> {
        match self.find(id) {
            Some(e) if !self.deleted(e) => std::iter::once(e)
                .chain(self.edits_of(e))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `following`.
    pub fn following(&self, did: &Did) -> Vec<Did> {
        self.live()
            .filter(|e| e.kind == EventType::Follow && e.author == *did)
            .map(|e| e.mentions[0])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// `followers`.
    pub fn followers(&self, did: &Did) -> Vec<Did> {
        self.live()
            .filter(|e| e.kind == EventType::Follow && e.mentions[0] == *did)
            .map(|e| e.author)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// `timeline`.
    pub fn timeline(&self, did: &Did, limit: usize, before: Option<Cursor>) -> Vec<EventView> {
        let mut who = self.following(did);
        who.push(*did);
        let posts = self
            .live()
            .filter(|e| {
                e.kind == EventType::Post && who.contains(&e.author) && before_ok(e, before)
            })
            .collect();
        self.views(posts, limit.min(500))
    }

    /// `author_feed`.
    pub fn author_feed(
        &self,
        did: &Did,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Vec<EventView> {
        let posts = self
            .live()
            .filter(|e| {
                e.kind == EventType::Post
                    && e.author == *did
                    && since.is_none_or(|s| e.ts >= s)
                    && until.is_none_or(|u| e.ts <= u)
            })
            .collect();
        self.views(posts, limit)
    }

    /// Depth of `e` below `root`, walking parent links through stored posts.
    fn depth_below(&self, e: &FeedEvent, root: EventId) -> Option<u32> {
        let mut cur = e;
        let mut depth = 0u32;
        let mut seen = BTreeSet::new();
        loop {
            if cur.id == root {
                return Some(depth);
            }
            if !seen.insert(cur.id) {
                return None;
            }
            let p = self.find(cur.parent?)?;
            if p.kind != EventType::Post {
                return None;
            }
            cur = p;
            depth += 1;
        }
    }

    /// Every post in `root`'s tree with its depth (root included, depth 0).
    fn tree(&self, root: &FeedEvent) -> Vec<(&FeedEvent, u32)> {
        self.events
            .iter()
            .filter(|e| e.kind == EventType::Post)
            .filter_map(|e| self.depth_below(e, root.id).map(|d| (e, d)))
            .collect()
    }

    /// `thread`.
    pub fn thread(&self, id: EventId) -> Thread {
        let Some(root) = self.find(id).filter(|e| e.kind == EventType::Post) else {
            return Thread::default();
        };
        let tree = self.tree(root);
        // Ids on the path from a live node up to the root.
        let mut keep = BTreeSet::new();
        for (e, _) in &tree {
            if self.deleted(e) {
                continue;
            }
            let mut cur = *e;
            loop {
                if !keep.insert(cur.id) || cur.id == root.id {
                    break;
                }
                match cur.parent.and_then(|p| self.find(p)) {
                    Some(p) => cur = p,
                    None => break,
                }
            }
        }
        if !keep.contains(&root.id) {
            return Thread::default();
        }
        let mut nodes: Vec<(&FeedEvent, u32)> = tree
            .into_iter()
            .filter(|(e, _)| keep.contains(&e.id))
            .collect();
        nodes.sort_by_key(|(e, d)| (*d, e.ts, e.id));
        let truncated = nodes.len() > THREAD_CAP;
        nodes.truncate(THREAD_CAP);
        let (first, rest) = nodes.split_at_mut(1);
        rest.sort_by_key(|(e, _)| (e.ts, e.id));
        let nodes = first
            .iter()
            .chain(rest.iter())
            .map(|(e, d)| ThreadNode {
                depth: *d,
                entry: if self.deleted(e) {
                    Entry::Deleted(e.id)
                } else {
                    Entry::Live(self.shown(e))
                },
            })
            .collect();
        Thread { nodes, truncated }
    }

    /// `counts`.
    pub fn counts(&self, id: EventId) -> Option<Counts> {
        let post = self
            .find(id)
            .filter(|e| e.kind == EventType::Post && !self.deleted(e))?;
        let kinds = |kind: &str| {
            self.live()
                .filter(|r| r.kind == EventType::Reaction && r.parent == Some(id))
                .filter(|r| r.tags.first().map_or("like", |t| t.as_str()) == kind)
                .map(|r| r.author)
                .collect::<BTreeSet<_>>()
                .len() as u64
        };
        Some(Counts {
            replies: self
                .live()
                .filter(|e| e.kind == EventType::Post && e.parent == Some(id))
                .count() as u64,
            thread_size: self
                .tree(post)
                .iter()
                .filter(|(e, d)| *d > 0 && !self.deleted(e))
                .count() as u64,
            likes: kinds("like"),
            boosts: kinds("boost"),
            bookmarks: kinds("bookmark"),
            edits: self.edits_of(post).len() as u64,
        })
    }

    /// `tag`.
    pub fn tag(&self, tag: &str, limit: usize, before: Option<Cursor>) -> Vec<EventView> {
        let t = tag.strip_prefix('#').unwrap_or(tag).to_lowercase();
        let hits = self
            .live()
            .filter(|e| topical(e) && e.tags.contains(&t) && before_ok(e, before))
            .collect();
        self.views(hits, limit)
    }

    /// `mentions`.
    pub fn mentions(&self, did: &Did, limit: usize, before: Option<Cursor>) -> Vec<EventView> {
        let hits = self
            .live()
            .filter(|e| topical(e) && e.mentions.contains(did) && before_ok(e, before))
            .collect();
        self.views(hits, limit)
    }

    fn matches(f: &Filter, e: &FeedEvent) -> bool {
        let tag_hit = |t: &String| {
            let t = t.strip_prefix('#').unwrap_or(t).to_lowercase();
            topical(e) && e.tags.contains(&t)
        };
        f.ids.as_ref().is_none_or(|l| l.contains(&e.id))
            && f.authors.as_ref().is_none_or(|l| l.contains(&e.author))
            && f.types.as_ref().is_none_or(|l| l.contains(&e.kind))
            && f.tags.as_ref().is_none_or(|l| l.iter().any(tag_hit))
            && f.mentions
                .as_ref()
                .is_none_or(|l| topical(e) && l.iter().any(|m| e.mentions.contains(m)))
            && f.parents
                .as_ref()
                .is_none_or(|l| e.parent.is_some_and(|p| l.contains(&p)))
            && f.since.is_none_or(|s| e.ts >= s)
            && f.until.is_none_or(|u| e.ts <= u)
    }

    /// `query`.
    pub fn query(&self, f: &Filter) -> Vec<EventView> {
        let hits = self.live().filter(|e| Self::matches(f, e)).collect();
        self.views(hits, f.limit.unwrap_or(usize::MAX))
    }

    /// `buckets` as `(start, type, count)`.
    pub fn buckets(&self, f: &Filter, width: BucketWidth) -> Vec<(i64, EventType, u64)> {
        let w = width.nanos() as i128;
        let mut m: BTreeMap<(i64, EventType), u64> = BTreeMap::new();
        for e in self.live().filter(|e| Self::matches(f, e)) {
            let ts = e.ts as i128;
            let start = (ts - ts.rem_euclid(w)) as i64;
            *m.entry((start, e.kind)).or_default() += 1;
        }
        m.into_iter().map(|((s, k), c)| (s, k, c)).collect()
    }

    /// Live events per type code.
    pub fn live_counts(&self) -> [u64; 7] {
        let mut c = [0; 7];
        for e in self.live() {
            c[e.kind as usize] += 1;
        }
        c
    }

    /// Live posts with a visible embedding: `(id, author, ts, vector)`.
    pub fn searchable(&self) -> Vec<(EventId, Did, i64, Vec<f32>)> {
        self.live()
            .filter(|e| e.kind == EventType::Post)
            .filter_map(|e| {
                let v = self.shown(e);
                v.event
                    .embedding
                    .map(|x| (e.id, e.author, e.ts, x.as_slice().to_vec()))
            })
            .collect()
    }
}
