//! The event model of SPEC §1: ids, types, DIDs, hashes, embeddings, events,
//! and the shapes that queries return (SPEC §5).

use std::fmt;
use std::str::FromStr;

/// Dimension of every embedding (all-MiniLM-L6-v2).
pub const EMBEDDING_DIM: usize = 384;
/// Largest `content`, in bytes of UTF-8.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Most tags on one event.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in bytes (after lowercasing).
pub const MAX_TAG_BYTES: usize = 64;
/// Most mentions on one event.
pub const MAX_MENTIONS: usize = 64;
/// How far in the future of the store's clock an event may be (the stack's MAX_FUTURE), in ns.
pub const MAX_FUTURE_NS: i64 = 3630 * 1_000_000_000;
/// Largest `limit` a timeline honours; larger limits are clamped.
pub const MAX_TIMELINE_LIMIT: usize = 500;
/// Most nodes a thread returns before it sets `truncated`.
pub const MAX_THREAD_NODES: usize = 10_000;
/// Largest `k` a search honours; larger values are clamped.
pub const MAX_SEARCH_K: usize = 100;

/// A Snowflake event id (SPEC §2). Ordering ties on `ts` are broken by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The seven event types, stored as 0..6 in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum EventType {
    /// Content; with `parent`, a reply.
    Post = 0,
    /// A like, boost or bookmark of a post.
    Reaction = 1,
    /// Follows exactly one DID.
    Follow = 2,
    /// An explicit reference to one or more DIDs.
    Mention = 3,
    /// Attaches topics to `parent` or stands alone.
    Hashtag = 4,
    /// Replaces a post's visible content.
    Edit = 5,
    /// Removes its target from every query.
    Delete = 6,
}

impl EventType {
    /// All types in storage order.
    pub const ALL: [EventType; 7] = [
        EventType::Post,
        EventType::Reaction,
        EventType::Follow,
        EventType::Mention,
        EventType::Hashtag,
        EventType::Edit,
        EventType::Delete,
    ];

    /// The SPEC name (`post`, `reaction`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Post => "post",
            EventType::Reaction => "reaction",
            EventType::Follow => "follow",
            EventType::Mention => "mention",
            EventType::Hashtag => "hashtag",
            EventType::Edit => "edit",
            EventType::Delete => "delete",
        }
    }

    /// The stored code 0..6.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The type of a stored code, if it is one.
    pub fn from_code(code: u8) -> Option<EventType> {
        EventType::ALL.get(code as usize).copied()
    }

    /// Whether `tag(…)` and `mentions(…)` cover this type (SPEC §3: posts,
    /// mention events and hashtag events only).
    pub fn carries_topics(self) -> bool {
        matches!(
            self,
            EventType::Post | EventType::Mention | EventType::Hashtag
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or(())
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes: &[u8; 64] = s.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The value of one hex digit (either case).
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// 32 bytes as 64 lowercase hex digits, in one write (a `write!` per
/// byte made every DID and hash in query output and exports 32 calls).
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8; 32]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for (pair, b) in buf.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
    // Only ASCII digits were written, so this cannot fail.
    f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

/// An author's DID key: 32 bytes. Shown as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Did(pub [u8; 32]);

/// The prefix accepted in front of a DID's hex on input.
pub const DID_PREFIX: &str = "did:libertaria:";

impl Did {
    /// Parses 64 hex characters (either case) or `did:libertaria:<hex>`.
    pub fn parse(s: &str) -> Option<Did> {
        let hex = s.strip_prefix(DID_PREFIX).unwrap_or(s);
        parse_hex32(hex).map(Did)
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// BLAKE3 of a content's UTF-8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The hash of `content`.
    pub fn of(content: &str) -> ContentHash {
        ContentHash(*blake3::hash(content.as_bytes()).as_bytes())
    }

    /// Parses 64 hex characters (either case).
    pub fn parse(s: &str) -> Option<ContentHash> {
        parse_hex32(s).map(ContentHash)
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// Why a vector is not a valid embedding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddingError {
    /// Not exactly 384 components.
    #[error("embedding must have {EMBEDDING_DIM} components, got {0}")]
    WrongLength(usize),
    /// A NaN or infinite component.
    #[error("embedding component {0} is not finite")]
    NotFinite(usize),
    /// Every component is zero.
    #[error("embedding is all zero")]
    AllZero,
}

/// A 384-d sentence embedding: finite, not all zero, stored L2-normalised.
#[derive(Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Checks and L2-normalises `v`. A vector whose norm is already within
    /// 1e-6 of 1 is kept bit for bit, so normalising is idempotent and
    /// export → ingest → export is exact.
    pub fn new(v: Vec<f32>) -> Result<Embedding, EmbeddingError> {
        if v.len() != EMBEDDING_DIM {
            return Err(EmbeddingError::WrongLength(v.len()));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(EmbeddingError::NotFinite(i));
        }
        let norm = v
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            return Err(EmbeddingError::AllZero);
        }
        if (norm - 1.0).abs() <= 1e-6 {
            return Ok(Embedding(v));
        }
        let v: Vec<f32> = v.iter().map(|&x| ((x as f64) / norm) as f32).collect();
        if v.iter().all(|&x| x == 0.0) {
            return Err(EmbeddingError::AllZero);
        }
        Ok(Embedding(v))
    }

    /// The normalised components.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Cosine similarity with another embedding (a dot product, both being
    /// unit length), accumulated in f64.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        dot(&self.0, &other.0)
    }
}

/// Dot product of two equal-length slices, accumulated in f64.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    // An indexed loop, not `zip`/`map`/`sum`: the same additions in the
    // same order (from -0.0, as `Sum` starts), but inlined and free of
    // bounds checks at opt-level "z" too, where the adaptors stay calls.
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = -0.0f64;
    for i in 0..n {
        s += a[i] as f64 * b[i] as f64;
    }
    s as f32
}

impl fmt::Debug for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Embedding[{:.3}, {:.3}, …]", self.0[0], self.0[1])
    }
}

/// One social event (SPEC §1).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedEvent {
    /// Snowflake id, unique per store.
    pub id: EventId,
    /// What the event is.
    pub kind: EventType,
    /// The author's DID key.
    pub author: Did,
    /// Unix time in nanoseconds.
    pub ts: i64,
    /// BLAKE3 of the content.
    pub content_hash: ContentHash,
    /// The content itself, when known (≤ 64 KiB).
    pub content: Option<String>,
    /// Reply-to, target or context, by type.
    pub parent: Option<EventId>,
    /// Topics (lowercased once validated); for a reaction, its kind first.
    pub tags: Vec<String>,
    /// Referenced DIDs; for a follow, the followed one.
    pub mentions: Vec<Did>,
    /// Optional sentence embedding.
    pub embedding: Option<Embedding>,
}

impl FeedEvent {
    /// A new event of `kind` with `content` (hash computed) and nothing else.
    pub fn new(id: EventId, kind: EventType, author: Did, ts: i64, content: &str) -> FeedEvent {
        FeedEvent {
            id,
            kind,
            author,
            ts,
            content_hash: ContentHash::of(content),
            content: Some(content.to_owned()),
            parent: None,
            tags: Vec::new(),
            mentions: Vec::new(),
            embedding: None,
        }
    }

    /// Sets `parent`.
    pub fn with_parent(mut self, parent: EventId) -> FeedEvent {
        self.parent = Some(parent);
        self
    }

    /// Sets `tags`.
    pub fn with_tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> FeedEvent {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `mentions`.
    pub fn with_mentions(mut self, mentions: impl IntoIterator<Item = Did>) -> FeedEvent {
        self.mentions = mentions.into_iter().collect();
        self
    }

    /// Sets `embedding`.
    pub fn with_embedding(mut self, e: Embedding) -> FeedEvent {
        self.embedding = Some(e);
        self
    }

    /// The `(ts, id)` position of this event in time.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            ts: self.ts,
            id: self.id,
        }
    }

    /// Whether `other` is the same event for `duplicate` purposes: every
    /// field equal except `content` (fixed by `content_hash`) and
    /// `embedding` (derived data, not part of the event's identity).
    pub fn same_event(&self, other: &FeedEvent) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.author == other.author
            && self.ts == other.ts
            && self.content_hash == other.content_hash
            && self.parent == other.parent
            && self.tags == other.tags
            && self.mentions == other.mentions
    }

    /// A reaction's kind (its first tag; none means `like`). `None` for
    /// other types or an unknown kind.
    pub fn reaction_kind(&self) -> Option<ReactionKind> {
        if self.kind != EventType::Reaction {
            return None;
        }
        match self.tags.first().map(String::as_str) {
            None => Some(ReactionKind::Like),
            Some(t) => ReactionKind::parse(t),
        }
    }
}

/// The three kinds of reaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReactionKind {
    /// `like` (also a reaction without tags).
    Like,
    /// `boost`.
    Boost,
    /// `bookmark`.
    Bookmark,
}

impl ReactionKind {
    /// Parses a (lowercased) kind tag.
    pub fn parse(tag: &str) -> Option<ReactionKind> {
        match tag {
            "like" => Some(ReactionKind::Like),
            "boost" => Some(ReactionKind::Boost),
            "bookmark" => Some(ReactionKind::Bookmark),
            _ => None,
        }
    }
}

/// A `(ts, id)` position; `before` cursors are exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// Nanoseconds.
    pub ts: i64,
    /// Tie-breaker.
    pub id: EventId,
}

impl Cursor {
    /// Parses `TS:ID`.
    pub fn parse(s: &str) -> Option<Cursor> {
        let (ts, id) = s.split_once(':')?;
        Some(Cursor {
            ts: ts.parse().ok()?,
            id: EventId(id.parse().ok()?),
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ts, self.id)
    }
}

/// A live event as reads show it: a post with its newest content.
#[derive(Clone, Debug, PartialEq)]
pub struct EventView {
    /// The event; for an edited post, `content`, `content_hash` and
    /// `embedding` come from the newest edit in effect.
    pub event: FeedEvent,
    /// Whether an edit is in effect.
    pub edited: bool,
}

/// What `get` finds for a stored id.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A live event.
    Live(EventView),
    /// A stored but deleted event: only its id is shown.
    Deleted(EventId),
}

impl Entry {
    /// The id either way.
    pub fn id(&self) -> EventId {
        match self {
            Entry::Live(v) => v.event.id,
            Entry::Deleted(id) => *id,
        }
    }
}

/// One node of a thread.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadNode {
    /// Distance from the thread's root (0 for the root).
    pub depth: u32,
    /// The post, or a placeholder for a deleted post with live replies.
    pub entry: Entry,
}

/// The result of `thread(id)`: root first, then the rest oldest first.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Thread {
    /// The nodes.
    pub nodes: Vec<ThreadNode>,
    /// More than [`MAX_THREAD_NODES`] nodes existed.
    pub truncated: bool,
}

/// The result of `counts(id)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counts {
    /// Live direct replies.
    pub replies: u64,
    /// Live posts below at any depth.
    pub thread_size: u64,
    /// Distinct authors with a live `like`.
    pub likes: u64,
    /// Distinct authors with a live `boost`.
    pub boosts: u64,
    /// Distinct authors with a live `bookmark`.
    pub bookmarks: u64,
    /// Live edits in effect.
    pub edits: u64,
}

/// A NIP-01 style filter: lists are ORed, fields ANDed. `None` means no
/// restriction; an empty list matches nothing.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Filter {
    /// Event ids.
    pub ids: Option<Vec<EventId>>,
    /// Authors.
    pub authors: Option<Vec<Did>>,
    /// Types.
    pub types: Option<Vec<EventType>>,
    /// Tags (matched lowercased, on posts, mention and hashtag events).
    pub tags: Option<Vec<String>>,
    /// Mentioned DIDs (on posts, mention and hashtag events).
    pub mentions: Option<Vec<Did>>,
    /// Parent ids.
    pub parents: Option<Vec<EventId>>,
    /// Earliest `ts`, inclusive.
    pub since: Option<i64>,
    /// Latest `ts`, inclusive.
    pub until: Option<i64>,
    /// Most results; `None` returns all.
    pub limit: Option<usize>,
}

impl Filter {
    /// The filter's types as a bit set for SQL (bit `n` set for the type
    /// with code `n`); every type when it names none.
    pub fn type_mask(&self) -> i64 {
        let types: &[EventType] = self.types.as_deref().unwrap_or(&EventType::ALL);
        types.iter().fold(0, |m, t| m | (1 << t.code()))
    }
}

/// Bucket widths for activity charts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BucketWidth {
    /// 60 s.
    Minute,
    /// 3600 s.
    Hour,
    /// 86400 s (UTC days).
    Day,
}

impl BucketWidth {
    /// Width in nanoseconds.
    pub fn nanos(self) -> i64 {
        match self {
            BucketWidth::Minute => 60_000_000_000,
            BucketWidth::Hour => 3_600_000_000_000,
            BucketWidth::Day => 86_400_000_000_000,
        }
    }

    /// The start of the bucket holding `ts` (floor, also for negative ts).
    pub fn start_of(self, ts: i64) -> i64 {
        ts.div_euclid(self.nanos()).saturating_mul(self.nanos())
    }

    /// Parses `minute`, `hour`, `day`.
    pub fn parse(s: &str) -> Option<BucketWidth> {
        match s {
            "minute" => Some(BucketWidth::Minute),
            "hour" => Some(BucketWidth::Hour),
            "day" => Some(BucketWidth::Day),
            _ => None,
        }
    }
}

/// Event count of one type in one time bucket. Buckets come sorted by
/// `(start, kind)` and only with non-zero counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Bucket start, ns.
    pub start: i64,
    /// Event type.
    pub kind: EventType,
    /// Live events of that type in the bucket.
    pub count: u64,
}

/// What `stats()` reports.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Live events per type, indexed by type code.
    pub live: [u64; 7],
    /// Stored events in all (live, deleted, and deletes themselves).
    pub stored: u64,
    /// Bytes the store occupies on disk (0 in memory).
    pub bytes_on_disk: u64,
}

/// Rounds a `limit` request for timelines.
pub fn clamp_timeline_limit(limit: usize) -> usize {
    limit.min(MAX_TIMELINE_LIMIT)
}

/// Normalises a tag given to a query: one leading `#` dropped, lowercased.
pub fn query_tag(tag: &str) -> String {
    tag.strip_prefix('#').unwrap_or(tag).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_is_written_lowercase() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        bytes[0] = 0x00;
        bytes[31] = 0xff;
        let d = Did(bytes);
        let s = d.to_string();
        assert_eq!(s.len(), 64);
        assert!(s.starts_with("00") && s.ends_with("ff"));
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        assert_eq!(Did::parse(&s), Some(d));
        assert_eq!(Did::parse(&s.to_uppercase()), Some(d));
        assert_eq!(Did::parse(&format!("did:libertaria:{s}")), Some(d));
        let h = ContentHash(bytes);
        assert_eq!(h.to_string(), s);
        assert_eq!(ContentHash::parse(&s), Some(h));
    }

    #[test]
    fn bad_hex_is_refused() {
        let good = "ab".repeat(32);
        assert!(Did::parse(&good).is_some());
        assert_eq!(Did::parse(&good[..62]), None);
        assert_eq!(Did::parse(&format!("{good}ab")), None);
        assert_eq!(Did::parse(&format!("g{}", &good[1..])), None);
        assert_eq!(Did::parse(&format!("{} ", &good[..63])), None);
        // 64 bytes, but "é" is two of them: not hex.
        assert_eq!(Did::parse(&format!("é{}", &good[2..])), None);
        assert_eq!(ContentHash::parse(""), None);
    }
}
