//! `MemoryEventStore`: a plain, indexed, in-process implementation of the
//! SPEC. Nothing persists; it is the quick backend for tests and the shape
//! the persistent backends follow.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::RwLock;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use crate::model::*;
use crate::thread::{pick_thread_nodes, ReachedNode};
use crate::traits::{EventStore, StoreError};
use crate::validate::*;

/// Bugs that can be planted in a `MemoryEventStore` to prove the
/// conformance suite notices them. Only the `planted-bugs` feature (tests
/// only) can switch one on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Deleting a follow does not end the following.
    UnfollowIgnored,
    /// A delete by someone other than the target's author is honoured.
    ForeignDeleteHonoured,
    /// The oldest edit gives a post's content instead of the newest.
    OldestEditShown,
    /// Reactions appear as thread nodes.
    ReactionsInThread,
    /// One author's repeated likes are counted more than once.
    RepeatedLikesCounted,
    /// A `before` cursor is inclusive, so paging repeats an event.
    CursorRepeats,
    /// A delete that arrived before its target is not applied.
    LateDeleteIgnored,
    /// `tag` matches case-sensitively.
    TagCaseSensitive,
    /// `buckets` counts deleted events.
    DeletedInBuckets,
    /// A conflicting event is reported as a duplicate.
    ConflictAsDuplicate,
    /// An edit by another author takes effect when its target arrives later.
    ForeignEditApplied,
}

impl PlantedBug {
    /// Every planted bug.
    pub const ALL: [PlantedBug; 11] = [
        PlantedBug::UnfollowIgnored,
        PlantedBug::ForeignDeleteHonoured,
        PlantedBug::OldestEditShown,
        PlantedBug::ReactionsInThread,
        PlantedBug::RepeatedLikesCounted,
        PlantedBug::CursorRepeats,
        PlantedBug::LateDeleteIgnored,
        PlantedBug::TagCaseSensitive,
        PlantedBug::DeletedInBuckets,
        PlantedBug::ConflictAsDuplicate,
        PlantedBug::ForeignEditApplied,
    ];
}

#[derive(Default)]
struct State {
    /// Event and its arrival number.
    events: HashMap<EventId, (FeedEvent, u64)>,
    arrival: Vec<EventId>,
    /// Every stored event by its `parent`.
    children: HashMap<EventId, Vec<EventId>>,
    by_time: BTreeSet<(i64, EventId)>,
    by_author: HashMap<Did, BTreeSet<(i64, EventId)>>,
    /// Topic-carrying events by tag, and every event by mentioned DID.
    by_tag: HashMap<String, BTreeSet<(i64, EventId)>>,
    by_mention: HashMap<Did, BTreeSet<(i64, EventId)>>,
}

/// An in-memory [`EventStore`].
#[derive(Default)]
pub struct MemoryEventStore {
    state: RwLock<State>,
    #[cfg(feature = "planted-bugs")]
    bug: Option<PlantedBug>,
}

impl MemoryEventStore {
    /// An empty store.
    pub fn new() -> MemoryEventStore {
        MemoryEventStore::default()
    }

    /// An empty store with one planted bug.
    #[cfg(feature = "planted-bugs")]
    pub fn with_bug(bug: PlantedBug) -> MemoryEventStore {
        MemoryEventStore {
            state: RwLock::default(),
            bug: Some(bug),
        }
    }

    #[cfg(feature = "planted-bugs")]
    fn has(&self, bug: PlantedBug) -> bool {
        self.bug == Some(bug)
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn has(&self, _bug: PlantedBug) -> bool {
        false
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The state is only mutated under the write lock by code that does
        // not panic half-way; a poisoned lock still holds consistent data.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
}

use PlantedBug as Bug;

/// Read helpers over one locked state.
struct View<'a> {
    st: &'a State,
    store: &'a MemoryEventStore,
}

impl<'a> View<'a> {
    fn bug(&self, b: Bug) -> bool {
        self.store.has(b)
    }

    fn stored(&self, id: EventId) -> Option<&'a FeedEvent> {
        self.st.events.get(&id).map(|(e, _)| e)
    }

    fn children(&self, id: EventId) -> impl Iterator<Item = &'a FeedEvent> + 'a {
        let st = self.st;
        st.children
            .get(&id)
            .into_iter()
            .flatten()
            .filter_map(move |c| st.events.get(c).map(|(e, _)| e))
    }

    fn is_deleted(&self, ev: &FeedEvent) -> bool {
        let seq = self.st.events.get(&ev.id).map_or(0, |(_, s)| *s);
        self.children(ev.id).any(|d| {
            let applies = if self.bug(Bug::ForeignDeleteHonoured) {
                d.kind == EventType::Delete && ev.kind != EventType::Delete
            } else {
                delete_applies(d, ev.into())
            };
            let in_time = !self.bug(Bug::LateDeleteIgnored)
                || self.st.events.get(&d.id).is_some_and(|(_, s)| *s > seq);
            applies && in_time
        })
    }

    fn live(&self, id: EventId) -> Option<&'a FeedEvent> {
        self.stored(id).filter(|e| !self.is_deleted(e))
    }

    fn edits_in_effect(&self, post: &'a FeedEvent) -> impl Iterator<Item = &'a FeedEvent> + '_ {
        self.children(post.id).filter(move |e| {
            let applies = if self.bug(Bug::ForeignEditApplied) {
                e.kind == EventType::Edit && post.kind == EventType::Post
            } else {
                edit_applies(e, post)
            };
            applies && !self.is_deleted(e)
        })
    }

    fn newest_edit(&self, post: &'a FeedEvent) -> Option<&'a FeedEvent> {
        let edits = self.edits_in_effect(post);
        if self.bug(Bug::OldestEditShown) {
            edits.min_by_key(|e| e.cursor())
        } else {
            edits.max_by_key(|e| e.cursor())
        }
    }

    fn view(&self, ev: &'a FeedEvent) -> EventView {
        if ev.kind == EventType::Post {
            apply_edit(ev, self.newest_edit(ev))
        } else {
            apply_edit(ev, None)
        }
    }

    fn entry(&self, ev: &'a FeedEvent) -> Entry {
        if self.is_deleted(ev) {
            Entry::Deleted(ev.id)
        } else {
            Entry::Live(self.view(ev))
        }
    }

    /// Newest-first walk over an index, live events only, before `before`.
    fn newest_first(
        &self,
        index: impl DoubleEndedIterator<Item = &'a (i64, EventId)>,
        before: Option<Cursor>,
        keep: impl Fn(&FeedEvent) -> bool,
        limit: usize,
    ) -> Vec<EventView> {
        let repeat = self.bug(Bug::CursorRepeats);
        index
            .rev()
            .filter(|(ts, id)| {
                before.is_none_or(|b| {
                    let here = (*ts, *id);
                    let cut = (b.ts, b.id);
                    if repeat {
                        here <= cut
                    } else {
                        here < cut
                    }
                })
            })
            .filter_map(|(_, id)| self.live(*id))
            .filter(|e| keep(e))
            .take(limit)
            .map(|e| self.view(e))
            .collect()
    }

    fn following(&self, did: &Did) -> BTreeSet<Did> {
        let Some(idx) = self.st.by_author.get(did) else {
            return BTreeSet::new();
        };
        idx.iter()
            .filter_map(|(_, id)| self.stored(*id))
            .filter(|e| e.kind == EventType::Follow)
            .filter(|e| self.bug(Bug::UnfollowIgnored) || !self.is_deleted(e))
            .filter_map(|e| e.mentions.first().copied())
            .collect()
    }

    fn followers(&self, did: &Did) -> BTreeSet<Did> {
        let Some(idx) = self.st.by_mention.get(did) else {
            return BTreeSet::new();
        };
        idx.iter()
            .filter_map(|(_, id)| self.stored(*id))
            .filter(|e| e.kind == EventType::Follow && e.mentions.first() == Some(did))
            .filter(|e| self.bug(Bug::UnfollowIgnored) || !self.is_deleted(e))
            .map(|e| e.author)
            .collect()
    }

    /// Posts (and with the planted bug, reactions) directly below `id`.
    fn thread_children(&self, id: EventId) -> impl Iterator<Item = &'a FeedEvent> + '_ {
        let reactions = self.bug(Bug::ReactionsInThread);
        self.children(id).filter(move |c| {
            c.kind == EventType::Post || (reactions && c.kind == EventType::Reaction)
        })
    }

    /// Breadth-first walk from `root` over thread children, each node once:
    /// `(event, depth, index of its tree parent)`.
    fn reach(&self, root: &'a FeedEvent) -> Vec<(&'a FeedEvent, u32, usize)> {
        let mut seen = HashSet::from([root.id]);
        let mut nodes = vec![(root, 0u32, 0usize)];
        let mut i = 0;
        while i < nodes.len() {
            let (node, depth, _) = nodes[i];
            for c in self.thread_children(node.id) {
                if seen.insert(c.id) {
                    nodes.push((c, depth + 1, i));
                }
            }
            i += 1;
        }
        nodes
    }

    fn thread(&self, id: EventId) -> Thread {
        let Some(root) = self.stored(id).filter(|e| e.kind == EventType::Post) else {
            return Thread::default();
        };
        let nodes = self.reach(root);
        let reached: Vec<ReachedNode> = nodes
            .iter()
            .map(|(e, depth, _)| ReachedNode {
                id: e.id,
                parent: e.parent,
                depth: *depth,
                ts: e.ts,
                live: !self.is_deleted(e),
            })
            .collect();
        let (picked, truncated) = pick_thread_nodes(&reached);
        Thread {
            nodes: picked
                .into_iter()
                .map(|i| ThreadNode {
                    depth: reached[i].depth,
                    entry: if reached[i].live {
                        Entry::Live(self.view(nodes[i].0))
                    } else {
                        Entry::Deleted(reached[i].id)
                    },
                })
                .collect(),
            truncated,
        }
    }

    fn counts(&self, id: EventId) -> Option<Counts> {
        let post = self.live(id).filter(|e| e.kind == EventType::Post)?;
        let mut c = Counts {
            replies: self
                .children(id)
                .filter(|e| e.kind == EventType::Post && !self.is_deleted(e))
                .count() as u64,
            thread_size: self.reach(post)[1..]
                .iter()
                .filter(|(e, _, _)| e.kind == EventType::Post && !self.is_deleted(e))
                .count() as u64,
            edits: self.edits_in_effect(post).count() as u64,
            ..Counts::default()
        };
        let mut seen = HashSet::new();
        for r in self.children(id).filter(|e| !self.is_deleted(e)) {
            let Some(kind) = r.reaction_kind() else {
                continue;
            };
            if !seen.insert((kind, r.author)) && !self.bug(Bug::RepeatedLikesCounted) {
                continue;
            }
            match kind {
                ReactionKind::Like => c.likes += 1,
                ReactionKind::Boost => c.boosts += 1,
                ReactionKind::Bookmark => c.bookmarks += 1,
            }
        }
        Some(c)
    }
}

#[async_trait]
impl EventStore for MemoryEventStore {
    async fn append(&self, batch: Vec<FeedEvent>) -> Result<Vec<AppendStatus>, StoreError> {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        let mut statuses = append_with(batch, now_ns(), &mut *st)?;
        if self.has(Bug::ConflictAsDuplicate) {
            for s in &mut statuses {
                if s.code() == Some(ErrorCode::Conflict) {
                    *s = AppendStatus::Duplicate;
                }
            }
        }
        Ok(statuses)
    }

    async fn get(&self, id: EventId) -> Result<Option<Entry>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        Ok(v.stored(id).map(|e| v.entry(e)))
    }

    async fn stored(&self, id: EventId) -> Result<Option<FeedEvent>, StoreError> {
        Ok(self.read().events.get(&id).map(|(e, _)| e.clone()))
    }

    async fn versions(&self, id: EventId) -> Result<Vec<FeedEvent>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        let Some(ev) = v.live(id) else {
            return Ok(Vec::new());
        };
        let mut out = vec![ev.clone()];
        if ev.kind == EventType::Post {
            let mut edits: Vec<&FeedEvent> = v.edits_in_effect(ev).collect();
            edits.sort_by_key(|e| e.cursor());
            out.extend(edits.into_iter().cloned());
        }
        Ok(out)
    }

    async fn timeline(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        let mut authors = v.following(did);
        authors.insert(*did);
        let merged: BTreeSet<(i64, EventId)> = authors
            .iter()
            .filter_map(|a| st.by_author.get(a))
            .flatten()
            .copied()
            .collect();
        Ok(v.newest_first(
            merged.iter(),
            before,
            |e| e.kind == EventType::Post,
            clamp_timeline_limit(limit),
        ))
    }

    async fn author_feed(
        &self,
        did: &Did,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<Vec<EventView>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        let Some(idx) = st.by_author.get(did) else {
            return Ok(Vec::new());
        };
        Ok(v.newest_first(
            idx.iter(),
            None,
            |e| {
                e.kind == EventType::Post
                    && since.is_none_or(|s| e.ts >= s)
                    && until.is_none_or(|u| e.ts <= u)
            },
            limit,
        ))
    }

    async fn thread(&self, id: EventId) -> Result<Thread, StoreError> {
        let st = self.read();
        Ok(View {
            st: &st,
            store: self,
        }
        .thread(id))
    }

    async fn counts(&self, id: EventId) -> Result<Option<Counts>, StoreError> {
        let st = self.read();
        Ok(View {
            st: &st,
            store: self,
        }
        .counts(id))
    }

    async fn tag(
        &self,
        tag: &str,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        let key = if self.has(Bug::TagCaseSensitive) {
            tag.strip_prefix('#').unwrap_or(tag).to_owned()
        } else {
            query_tag(tag)
        };
        let Some(idx) = st.by_tag.get(&key) else {
            return Ok(Vec::new());
        };
        Ok(v.newest_first(idx.iter(), before, |_| true, limit))
    }

    async fn mentions(
        &self,
        did: &Did,
        limit: usize,
        before: Option<Cursor>,
    ) -> Result<Vec<EventView>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        let Some(idx) = st.by_mention.get(did) else {
            return Ok(Vec::new());
        };
        Ok(v.newest_first(idx.iter(), before, |e| e.kind.carries_topics(), limit))
    }

    async fn following(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
        let st = self.read();
        Ok(View {
            st: &st,
            store: self,
        }
        .following(did)
        .into_iter()
        .collect())
    }

    async fn followers(&self, did: &Did) -> Result<Vec<Did>, StoreError> {
        let st = self.read();
        Ok(View {
            st: &st,
            store: self,
        }
        .followers(did)
        .into_iter()
        .collect())
    }

    async fn query(&self, filter: &Filter) -> Result<Vec<EventView>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        Ok(v.newest_first(
            st.by_time.iter(),
            None,
            |e| filter_matches(filter, e),
            filter.limit.unwrap_or(usize::MAX),
        ))
    }

    async fn buckets(
        &self,
        filter: &Filter,
        width: BucketWidth,
    ) -> Result<Vec<Bucket>, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        let mut counts: std::collections::BTreeMap<(i64, EventType), u64> = Default::default();
        for (_, id) in &st.by_time {
            let Some(e) = v.stored(*id) else { continue };
            if (!self.has(Bug::DeletedInBuckets) && v.is_deleted(e)) || !filter_matches(filter, e) {
                continue;
            }
            *counts.entry((width.start_of(e.ts), e.kind)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((start, kind), count)| Bucket { start, kind, count })
            .collect())
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let st = self.read();
        let v = View {
            st: &st,
            store: self,
        };
        let mut s = StoreStats {
            stored: st.events.len() as u64,
            ..StoreStats::default()
        };
        for (e, _) in st.events.values() {
            if !v.is_deleted(e) {
                s.live[e.kind.code() as usize] += 1;
            }
        }
        Ok(s)
    }

    fn export(&self) -> BoxStream<'_, Result<FeedEvent, StoreError>> {
        let st = self.read();
        let all: Vec<Result<FeedEvent, StoreError>> = st
            .arrival
            .iter()
            .filter_map(|id| st.events.get(id).map(|(e, _)| Ok(e.clone())))
            .collect();
        stream::iter(all).boxed()
    }

    async fn log(&self, after: u64, limit: usize) -> Result<Vec<(u64, FeedEvent)>, StoreError> {
        let st = self.read();
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        Ok(st
            .arrival
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .filter_map(|(i, id)| st.events.get(id).map(|(e, _)| (i as u64 + 1, e.clone())))
            .collect())
    }

    async fn log_head(&self) -> Result<u64, StoreError> {
        Ok(self.read().arrival.len() as u64)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Admit for State {
    type Error = StoreError;
    fn existing(&mut self, id: EventId) -> Result<Option<FeedEvent>, StoreError> {
        Ok(self.events.get(&id).map(|(e, _)| e.clone()))
    }
    fn exists(&mut self, id: EventId) -> Result<bool, StoreError> {
        Ok(self.events.contains_key(&id))
    }
    fn target(&mut self, id: EventId) -> Result<Option<TargetRef>, StoreError> {
        Ok(self.events.get(&id).map(|(e, _)| TargetRef::from(e)))
    }
    fn insert(&mut self, ev: FeedEvent, _target: Option<TargetRef>) -> Result<(), StoreError> {
        insert(self, ev);
        Ok(())
    }
}

fn insert(st: &mut State, ev: FeedEvent) {
    let key = (ev.ts, ev.id);
    let seq = st.arrival.len() as u64;
    st.arrival.push(ev.id);
    if let Some(p) = ev.parent {
        st.children.entry(p).or_default().push(ev.id);
    }
    st.by_time.insert(key);
    st.by_author.entry(ev.author).or_default().insert(key);
    if ev.kind.carries_topics() {
        for t in &ev.tags {
            st.by_tag.entry(t.clone()).or_default().insert(key);
        }
    }
    for m in &ev.mentions {
        st.by_mention.entry(*m).or_default().insert(key);
    }
    st.events.insert(ev.id, (ev, seq));
}
