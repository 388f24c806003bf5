//! Generators: abstract operation lists that proptest can shrink, and their
//! realisation into concrete events. Pools are small on purpose, so that
//! ids, authors, timestamps and tags collide and the interesting cases
//! (ties, late deletes, foreign edits, cycles, repeated reactions) are common.

use std::collections::HashMap;
use std::fmt;

use feed_core::{
    BucketWidth, ContentHash, Did, Embedding, EventId, EventType, FeedEvent, Filter, EMBEDDING_DIM,
};
use proptest::prelude::*;

/// Authors A, B, C, and D, who never writes but can be followed.
pub const AUTHORS: usize = 4;
const WRITERS: u8 = 3;

/// The DID of author `i`.
pub fn did(i: u8) -> Did {
    let mut b = [0u8; 32];
    b[0] = 0xa0 + i;
    b[31] = i;
    Did(b)
}

/// A fixed base time: 2023-11-14T22:13:20Z.
pub const BASE_TS: i64 = 1_700_000_000_000_000_000;
const SEC: i64 = 1_000_000_000;

/// Timestamp slots: close ones (ties, same minute), an hour and a day
/// later, and one before 1970 (floor buckets).
pub const TS_SLOTS: [i64; 12] = [
    BASE_TS,
    BASE_TS,
    BASE_TS + 20 * SEC,
    BASE_TS + 40 * SEC,
    BASE_TS + 60 * SEC,
    BASE_TS + 61 * SEC,
    BASE_TS + 90 * SEC,
    BASE_TS + 3_600 * SEC,
    BASE_TS + 3_601 * SEC,
    BASE_TS + 86_400 * SEC,
    BASE_TS + 86_400 * SEC,
    -90 * SEC,
];

/// Tags as written (case varies; stored lowercased).
pub const TAGS: [&str; 7] = ["rust", "Rust", "NEWS", "news", "café", "CAFÉ", "Straße"];
/// Tags as queried.
pub const QUERY_TAGS: [&str; 6] = ["rust", "#RUST", "news", "Café", "straße", "absent"];

const CONTENTS: [&str; 5] = ["hello", "hello world", "", "zürich ☃ 東京", "edited text"];

/// Where a `parent` points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentRef {
    /// An id already handed out, `n` steps back (modulo).
    Back(u8),
    /// Id `1 + n` (modulo the ids handed out): early events are targeted
    /// again and again (repeated reactions, several edits of one post).
    Abs(u8),
    /// An id that will be handed out `n` (1..=4) events from now.
    Forward(u8),
}

/// One deliberate rule violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// ts two days ahead.
    FutureTs,
    /// content_hash of other text.
    BadHash,
    /// 64 KiB + 1 of content.
    HugeContent,
    /// 33 tags.
    ManyTags,
    /// 65 mentions.
    ManyMentions,
    /// One of: empty, with space, leading `#`, 65 bytes.
    BadTag(u8),
    /// parent = own id.
    OwnParent,
    /// no parent (a fault for reactions, edits, deletes).
    NoParent,
    /// a follow of oneself.
    SelfFollow,
    /// a reaction kind that does not exist.
    BadKind,
    /// no mentions (a fault for follows and mention events).
    NoMentions,
    /// no tags (a fault for hashtag events).
    NoTags,
    /// id 0.
    ZeroId,
}

/// One generated event, before ids are assigned.
#[derive(Clone, PartialEq)]
pub struct GenEvent {
    /// Type.
    pub kind: EventType,
    /// Author index (0..3).
    pub author: u8,
    /// Index into TS_SLOTS.
    pub ts: u8,
    /// Parent reference.
    pub parent: Option<ParentRef>,
    /// Indexes into TAGS (for reactions: kind tag choice instead).
    pub tags: Vec<u8>,
    /// Author indexes mentioned.
    pub mentions: Vec<u8>,
    /// Index into CONTENTS; 5 = hash only, no content.
    pub content: u8,
    /// Seed of an embedding.
    pub embed: Option<u8>,
    /// For an edit or delete aimed forward: the target, when it arrives,
    /// takes this event's author.
    pub adopt: bool,
    /// A rule violation.
    pub fault: Option<Fault>,
}

impl fmt::Debug for GenEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} by {}", self.kind, (b'A' + self.author) as char)?;
        write!(f, " ts{}", self.ts)?;
        match self.parent {
            Some(ParentRef::Back(n)) => write!(f, " parent=back{n}")?,
            Some(ParentRef::Forward(n)) => write!(f, " parent=fwd{n}")?,
            Some(ParentRef::Abs(n)) => write!(f, " parent=abs{n}")?,
            None => {}
        }
        if !self.tags.is_empty() {
            write!(f, " tags{:?}", self.tags)?;
        }
        if !self.mentions.is_empty() {
            let m: String = self.mentions.iter().map(|i| (b'A' + i) as char).collect();
            write!(f, " @{m}")?;
        }
        write!(f, " c{}", self.content)?;
        if let Some(e) = self.embed {
            write!(f, " emb{e}")?;
        }
        if self.adopt {
            write!(f, " adopt")?;
        }
        if let Some(x) = self.fault {
            write!(f, " FAULT {x:?}")?;
        }
        Ok(())
    }
}

/// One step of a generated scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Append a batch of new events.
    Append(Vec<GenEvent>),
    /// Re-append an earlier event unchanged (a duplicate, or rejected again).
    Resend(u8),
    /// Re-append an earlier event with another ts (a conflict if stored).
    Conflict(u8),
    /// Close and reopen the store.
    Reopen,
}

/// A generated filter for `query` and `buckets`.
#[derive(Clone, Debug, PartialEq)]
pub struct GenFilter {
    /// Author indexes.
    pub authors: Option<Vec<u8>>,
    /// Types.
    pub types: Option<Vec<EventType>>,
    /// Query-tag indexes.
    pub tags: Option<Vec<u8>>,
    /// Mentioned author indexes.
    pub mentions: Option<Vec<u8>>,
    /// Ids (1-based, small).
    pub ids: Option<Vec<u8>>,
    /// Parent ids (small).
    pub parents: Option<Vec<u8>>,
    /// since/until as TS_SLOTS indexes.
    pub since: Option<u8>,
    /// See `since`.
    pub until: Option<u8>,
    /// Limit.
    pub limit: Option<u8>,
    /// Bucket width.
    pub width: BucketWidth,
}

impl GenFilter {
    /// The concrete filter.
    pub fn filter(&self) -> Filter {
        Filter {
            ids: self
                .ids
                .as_ref()
                .map(|v| v.iter().map(|&i| EventId(i as u64)).collect()),
            authors: self
                .authors
                .as_ref()
                .map(|v| v.iter().map(|&i| did(i)).collect()),
            types: self.types.clone(),
            tags: self.tags.as_ref().map(|v| {
                v.iter()
                    .map(|&i| QUERY_TAGS[i as usize].to_string())
                    .collect()
            }),
            mentions: self
                .mentions
                .as_ref()
                .map(|v| v.iter().map(|&i| did(i)).collect()),
            parents: self
                .parents
                .as_ref()
                .map(|v| v.iter().map(|&i| EventId(i as u64)).collect()),
            since: self.since.map(|i| TS_SLOTS[i as usize]),
            until: self.until.map(|i| TS_SLOTS[i as usize]),
            limit: self.limit.map(usize::from),
        }
    }
}

/// A whole scenario: operations, and the filters checked after each step.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Steps.
    pub ops: Vec<Op>,
    /// Filters for `query` and `buckets`.
    pub filters: Vec<GenFilter>,
    /// Seeds of search query vectors.
    pub queries: Vec<u8>,
}

fn kind() -> impl Strategy<Value = EventType> {
    prop_oneof![
        5 => Just(EventType::Post),
        3 => Just(EventType::Reaction),
        2 => Just(EventType::Follow),
        1 => Just(EventType::Mention),
        1 => Just(EventType::Hashtag),
        2 => Just(EventType::Edit),
        3 => Just(EventType::Delete),
    ]
}

fn parent_ref() -> impl Strategy<Value = ParentRef> {
    prop_oneof![
        2 => (0u8..12).prop_map(ParentRef::Back),
        2 => (0u8..6).prop_map(ParentRef::Abs),
        1 => (1u8..=4).prop_map(ParentRef::Forward),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::FutureTs),
        Just(Fault::BadHash),
        Just(Fault::HugeContent),
        Just(Fault::ManyTags),
        Just(Fault::ManyMentions),
        (0u8..4).prop_map(Fault::BadTag),
        Just(Fault::OwnParent),
        Just(Fault::NoParent),
        Just(Fault::SelfFollow),
        Just(Fault::BadKind),
        Just(Fault::NoMentions),
        Just(Fault::NoTags),
        Just(Fault::ZeroId),
    ]
}

/// One generated event.
pub fn gen_event() -> impl Strategy<Value = GenEvent> {
    (
        kind(),
        0..WRITERS,
        0u8..TS_SLOTS.len() as u8,
        proptest::option::weighted(0.8, parent_ref()),
        proptest::collection::vec(0u8..TAGS.len() as u8, 0..3),
        proptest::collection::vec(0u8..AUTHORS as u8, 0..3),
        0u8..6,
        proptest::option::weighted(0.3, 0u8..6),
        proptest::bool::weighted(0.6),
        proptest::option::weighted(0.12, fault()),
    )
        .prop_map(
            |(kind, author, ts, parent, tags, mentions, content, embed, adopt, fault)| GenEvent {
                kind,
                author,
                ts,
                parent,
                tags,
                mentions,
                content,
                embed,
                adopt,
                fault,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => proptest::collection::vec(gen_event(), 1..7).prop_map(Op::Append),
        2 => any::<u8>().prop_map(Op::Resend),
        1 => any::<u8>().prop_map(Op::Conflict),
        1 => Just(Op::Reopen),
    ]
}

fn small_list<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Vec<T>>> {
    proptest::option::weighted(0.3, proptest::collection::vec(s, 0..3))
}

fn gen_filter() -> impl Strategy<Value = GenFilter> {
    (
        small_list(0u8..AUTHORS as u8),
        small_list(kind()),
        small_list(0u8..QUERY_TAGS.len() as u8),
        small_list(0u8..AUTHORS as u8),
        small_list(1u8..30),
        small_list(1u8..30),
        proptest::option::weighted(0.3, 0u8..TS_SLOTS.len() as u8),
        proptest::option::weighted(0.3, 0u8..TS_SLOTS.len() as u8),
        proptest::option::weighted(0.3, 0u8..6),
        prop_oneof![
            Just(BucketWidth::Minute),
            Just(BucketWidth::Hour),
            Just(BucketWidth::Day)
        ],
    )
        .prop_map(
            |(authors, types, tags, mentions, ids, parents, since, until, limit, width)| {
                GenFilter {
                    authors,
                    types,
                    tags,
                    mentions,
                    ids,
                    parents,
                    since,
                    until,
                    limit,
                    width,
                }
            },
        )
}

/// A whole scenario.
pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(op(), 1..10),
        proptest::collection::vec(gen_filter(), 1..4),
        proptest::collection::vec(0u8..6, 1..3),
    )
        .prop_map(|(ops, filters, queries)| Scenario {
            ops,
            filters,
            queries,
        })
}

/// A deterministic unit embedding from a seed; seeds share components so
/// that similarities vary and some tie.
pub fn embedding(seed: u8) -> Embedding {
    let mut v = vec![0.0f32; EMBEDDING_DIM];
    v[seed as usize % 7] = 1.0;
    v[(seed as usize * 5 + 3) % EMBEDDING_DIM] = 0.5 + (seed % 3) as f32 * 0.25;
    v[100 + (seed as usize % 4)] = -0.25;
    // A valid embedding by construction.
    Embedding::new(v).unwrap_or_else(|_| unreachable!("seeded embedding is non-zero"))
}

/// Turns generated events into concrete ones: ids 1, 2, 3… in order.
#[derive(Default)]
pub struct Realiser {
    next: u64,
    /// Authors promised to forward targets by adopting edits/deletes.
    promised: HashMap<u64, u8>,
    /// Every concrete event produced so far (for Resend / Conflict).
    pub produced: Vec<FeedEvent>,
}

impl Realiser {
    /// The concrete event for `g`; `now` is the store's clock.
    pub fn realise(&mut self, g: &GenEvent, now: i64) -> FeedEvent {
        self.next += 1;
        let id = self.next;
        let parent = g.parent.map(|p| match p {
            ParentRef::Back(n) => {
                if id == 1 {
                    1 + n as u64 % 3 + 1
                } else {
                    id - 1 - (n as u64 % (id - 1))
                }
            }
            ParentRef::Forward(n) => id + n as u64,
            ParentRef::Abs(n) => {
                // Reactions and edits aim at the n-th post, so that one post
                // collects repeated reactions and several edits.
                let posts: Vec<u64> = self
                    .produced
                    .iter()
                    .filter(|e| e.kind == EventType::Post)
                    .map(|e| e.id.0)
                    .collect();
                match g.kind {
                    EventType::Reaction | EventType::Edit if !posts.is_empty() => {
                        posts[n as usize % posts.len().min(2)]
                    }
                    _ => 1 + n as u64 % (id - 1).max(1) + u64::from(id == 1),
                }
            }
        });
        let mut author = self.promised.remove(&id).unwrap_or(g.author);
        // An edit or delete of an earlier event by its own author, mostly.
        if let (Some(ParentRef::Back(_) | ParentRef::Abs(_)), Some(p)) = (g.parent, parent) {
            if g.adopt && matches!(g.kind, EventType::Edit | EventType::Delete) {
                if let Some(t) = self.produced.iter().find(|e| e.id.0 == p) {
                    author = (0..WRITERS).find(|&i| did(i) == t.author).unwrap_or(author);
                }
            }
        }
        if let (Some(ParentRef::Forward(_)), Some(p)) = (g.parent, parent) {
            if g.adopt && matches!(g.kind, EventType::Edit | EventType::Delete) {
                self.promised.insert(p, author);
            }
        }
        let content = match g.content {
            5 => None,
            i => Some(CONTENTS[i as usize % CONTENTS.len()].to_string()),
        };
        let hash = ContentHash::of(content.as_deref().unwrap_or("hidden"));
        let mut ev = FeedEvent {
            id: EventId(id),
            kind: g.kind,
            author: did(author),
            ts: TS_SLOTS[g.ts as usize % TS_SLOTS.len()],
            content_hash: hash,
            content,
            parent: parent.map(EventId),
            tags: g
                .tags
                .iter()
                .map(|&i| TAGS[i as usize].to_string())
                .collect(),
            mentions: g.mentions.iter().map(|&i| did(i)).collect(),
            embedding: g.embed.map(embedding),
        };
        match g.kind {
            EventType::Reaction => {
                ev.tags = match g.tags.first() {
                    None => vec![],
                    Some(0) | Some(3) => vec!["like".into()],
                    Some(1) => vec!["LIKE".into()],
                    Some(2) | Some(5) => vec!["boost".into()],
                    Some(_) => vec!["Bookmark".into(), "rust".into()],
                }
            }
            EventType::Follow => {
                let target = g.mentions.first().copied().unwrap_or(3);
                let target = if target == author { 3 } else { target };
                ev.mentions = vec![did(target)];
            }
            EventType::Mention if ev.mentions.is_empty() => ev.mentions = vec![did(1)],
            EventType::Hashtag if ev.tags.is_empty() => ev.tags = vec!["news".into()],
            _ => {}
        }
        if let Some(f) = g.fault {
            self.apply_fault(&mut ev, f, author, now);
        }
        self.produced.push(ev.clone());
        ev
    }

    fn apply_fault(&self, ev: &mut FeedEvent, f: Fault, author: u8, now: i64) {
        match f {
            Fault::FutureTs => ev.ts = now + 2 * 86_400 * SEC,
            Fault::BadHash => {
                ev.content = Some("the content".into());
                ev.content_hash = ContentHash::of("other content");
            }
            Fault::HugeContent => {
                let c = "x".repeat(64 * 1024 + 1);
                ev.content_hash = ContentHash::of(&c);
                ev.content = Some(c);
            }
            Fault::ManyTags => ev.tags = (0..33).map(|i| format!("t{i}")).collect(),
            Fault::ManyMentions => ev.mentions = (0..65).map(|i| did(i % 4)).collect(),
            Fault::BadTag(k) => ev.tags.push(match k % 4 {
                0 => String::new(),
                1 => "two words".into(),
                2 => "#hash".into(),
                _ => "y".repeat(65),
            }),
            Fault::OwnParent => ev.parent = Some(ev.id),
            Fault::NoParent => ev.parent = None,
            Fault::SelfFollow => {
                // Whatever the generated kind, this becomes a follow of oneself.
                ev.kind = EventType::Follow;
                ev.parent = None;
                ev.tags.clear();
                ev.mentions = vec![did(author)];
            }
            Fault::BadKind => {
                if ev.kind == EventType::Reaction {
                    ev.tags = vec!["love".into()];
                }
            }
            Fault::NoMentions => {
                if matches!(ev.kind, EventType::Follow | EventType::Mention) {
                    ev.mentions.clear();
                }
            }
            Fault::NoTags => {
                if ev.kind == EventType::Hashtag {
                    ev.tags.clear();
                }
            }
            Fault::ZeroId => ev.id = EventId(0),
        }
    }

    /// An earlier event, unchanged.
    pub fn resend(&self, pick: u8) -> Option<FeedEvent> {
        if self.produced.is_empty() {
            return None;
        }
        Some(self.produced[pick as usize % self.produced.len()].clone())
    }

    /// An earlier event with another ts.
    pub fn conflict(&self, pick: u8) -> Option<FeedEvent> {
        self.resend(pick).map(|mut e| {
            e.ts += 1;
            e
        })
    }

    /// Ids handed out so far.
    pub fn max_id(&self) -> u64 {
        self.next
    }
}
