//! Validation (SPEC §1, §3, §4): the stateless rules every event must pass
//! on its own, and the stateful rules that depend on what is stored.

use std::fmt;

use crate::model::*;

/// The SPEC's rejection codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// The line is not a JSON object.
    BadJson,
    /// A field is missing, of the wrong type or out of its rules.
    BadField,
    /// Content over 64 KiB, too many tags or mentions, or an oversized line.
    TooLarge,
    /// `content` and `content_hash` disagree.
    BadHash,
    /// Not 384 finite components, or all zero.
    BadEmbedding,
    /// More than MAX_FUTURE ahead of the store's clock.
    FutureTs,
    /// A reaction, edit or delete without `parent`.
    MissingTarget,
    /// A follow of oneself.
    SelfFollow,
    /// An edit or delete of someone else's stored event.
    NotAuthor,
    /// The same id with different fields is already stored.
    Conflict,
    /// A stored target of the wrong type.
    InvalidTarget,
}

impl ErrorCode {
    /// Every code, for coverage checks.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::BadJson,
        ErrorCode::BadField,
        ErrorCode::TooLarge,
        ErrorCode::BadHash,
        ErrorCode::BadEmbedding,
        ErrorCode::FutureTs,
        ErrorCode::MissingTarget,
        ErrorCode::SelfFollow,
        ErrorCode::NotAuthor,
        ErrorCode::Conflict,
        ErrorCode::InvalidTarget,
    ];

    /// The SPEC spelling (`bad_json`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadField => "bad_field",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BadHash => "bad_hash",
            ErrorCode::BadEmbedding => "bad_embedding",
            ErrorCode::FutureTs => "future_ts",
            ErrorCode::MissingTarget => "missing_target",
            ErrorCode::SelfFollow => "self_follow",
            ErrorCode::NotAuthor => "not_author",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidTarget => "invalid_target",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one event was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// The SPEC code.
    pub code: ErrorCode,
    /// For `bad_field` (and size limits): the field at fault.
    pub field: Option<&'static str>,
    /// A sentence for people.
    pub message: String,
}

impl Rejection {
    /// A rejection without a field.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            field: None,
            message: message.into(),
        }
    }

    /// A rejection naming `field`; the message starts with the field name.
    pub fn field(code: ErrorCode, field: &'static str, message: impl fmt::Display) -> Rejection {
        Rejection {
            code,
            field: Some(field),
            message: format!("{field}: {message}"),
        }
    }
}

/// The outcome of one event of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendStatus {
    /// Stored.
    Accepted,
    /// The same event was already stored; nothing changed.
    Duplicate,
    /// Not stored.
    Rejected(Rejection),
}

impl AppendStatus {
    /// The rejection code, if rejected.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            AppendStatus::Rejected(r) => Some(r.code),
            _ => None,
        }
    }
}

/// The store's clock: Unix time in nanoseconds.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

fn bad(field: &'static str, message: impl fmt::Display) -> Rejection {
    Rejection::field(ErrorCode::BadField, field, message)
}

/// Checks one event against the rules that need no stored state and returns
/// it normalised (tags lowercased). `now` is the store's clock in ns.
pub fn validate(mut ev: FeedEvent, now: i64) -> Result<FeedEvent, Rejection> {
    if ev.id.0 == 0 {
        return Err(bad("id", "must be a positive integer"));
    }
    if let Some(content) = &ev.content {
        if content.len() > MAX_CONTENT_BYTES {
            return Err(Rejection::field(
                ErrorCode::TooLarge,
                "content",
                format_args!(
                    "{} bytes, at most {MAX_CONTENT_BYTES} allowed",
                    content.len()
                ),
            ));
        }
    }
    if ev.tags.len() > MAX_TAGS {
        return Err(Rejection::field(
            ErrorCode::TooLarge,
            "tags",
            format_args!("{} tags, at most {MAX_TAGS} allowed", ev.tags.len()),
        ));
    }
    if ev.mentions.len() > MAX_MENTIONS {
        return Err(Rejection::field(
            ErrorCode::TooLarge,
            "mentions",
            format_args!(
                "{} mentions, at most {MAX_MENTIONS} allowed",
                ev.mentions.len()
            ),
        ));
    }
    for tag in &mut ev.tags {
        *tag = normalise_tag(tag)?;
    }
    if let Some(content) = &ev.content {
        if ContentHash::of(content) != ev.content_hash {
            return Err(Rejection::field(
                ErrorCode::BadHash,
                "content_hash",
                "is not the BLAKE3 of content",
            ));
        }
    }
    if ev.parent == Some(ev.id) {
        return Err(bad("parent", "an event cannot be its own parent"));
    }
    if ev.parent == Some(EventId(0)) {
        return Err(bad("parent", "must be a positive integer"));
    }
    if ev.ts > now.saturating_add(MAX_FUTURE_NS) {
        return Err(Rejection::field(
            ErrorCode::FutureTs,
            "ts",
            format_args!("{} is more than 3630 s ahead of the store's clock", ev.ts),
        ));
    }
    match ev.kind {
        EventType::Reaction | EventType::Edit | EventType::Delete if ev.parent.is_none() => {
            return Err(Rejection::field(
                ErrorCode::MissingTarget,
                "parent",
                format_args!("a {} needs a target", ev.kind),
            ));
        }
        EventType::Reaction => {
            if let Some(first) = ev.tags.first() {
                if ReactionKind::parse(first).is_none() {
                    return Err(bad(
                        "tags",
                        format_args!(
                            "a reaction's first tag is its kind (like, boost, bookmark), not {first:?}"
                        ),
                    ));
                }
            }
        }
        EventType::Follow => {
            if ev.mentions.len() != 1 {
                return Err(bad("mentions", "a follow names exactly one DID"));
            }
            if ev.mentions[0] == ev.author {
                return Err(Rejection::field(
                    ErrorCode::SelfFollow,
                    "mentions",
                    "an author cannot follow themselves",
                ));
            }
        }
        EventType::Mention if ev.mentions.is_empty() => {
            return Err(bad("mentions", "a mention names at least one DID"));
        }
        EventType::Hashtag if ev.tags.is_empty() => {
            return Err(bad("tags", "a hashtag event carries at least one tag"));
        }
        _ => {}
    }
    Ok(ev)
}

/// Checks and lowercases one tag: 1..=64 bytes, no whitespace, no leading `#`.
pub fn normalise_tag(tag: &str) -> Result<String, Rejection> {
    if tag.is_empty() {
        return Err(bad("tags", "a tag cannot be empty"));
    }
    if tag.starts_with('#') {
        return Err(bad("tags", format_args!("tag {tag:?} has a leading '#'")));
    }
    if tag.chars().any(char::is_whitespace) {
        return Err(bad("tags", format_args!("tag {tag:?} contains whitespace")));
    }
    let lower = tag.to_lowercase();
    if lower.len() > MAX_TAG_BYTES {
        return Err(bad(
            "tags",
            format_args!(
                "a tag is at most {MAX_TAG_BYTES} bytes, got {}",
                lower.len()
            ),
        ));
    }
    Ok(lower)
}

/// What the stateful rules decide for an event that passed [`validate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Store it.
    Accept,
    /// Already stored, identical: change nothing.
    Duplicate,
}

/// What the rules need to know of a stored target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRef {
    /// Its id.
    pub id: EventId,
    /// Its type.
    pub kind: EventType,
    /// Its author.
    pub author: Did,
}

impl From<&FeedEvent> for TargetRef {
    fn from(e: &FeedEvent) -> TargetRef {
        TargetRef {
            id: e.id,
            kind: e.kind,
            author: e.author,
        }
    }
}

/// The stateful rules of SPEC §3–§4, given what the store holds: `existing`
/// is the stored event with the same id, `target` the stored event named by
/// `parent` (both as of this point of the batch, earlier events included).
pub fn admit(
    ev: &FeedEvent,
    existing: Option<&FeedEvent>,
    target: Option<TargetRef>,
) -> Result<Admission, Rejection> {
    if let Some(old) = existing {
        return if old.same_event(ev) {
            Ok(Admission::Duplicate)
        } else {
            Err(Rejection::new(
                ErrorCode::Conflict,
                format!("id {} is already stored with different fields", ev.id),
            ))
        };
    }
    let Some(t) = target else {
        return Ok(Admission::Accept);
    };
    let needs_post = matches!(ev.kind, EventType::Reaction | EventType::Edit);
    if (needs_post && t.kind != EventType::Post)
        || (ev.kind == EventType::Delete && t.kind == EventType::Delete)
    {
        return Err(Rejection::field(
            ErrorCode::InvalidTarget,
            "parent",
            format_args!("a {} cannot target a {}", ev.kind, t.kind),
        ));
    }
    if matches!(ev.kind, EventType::Edit | EventType::Delete) && t.author != ev.author {
        return Err(Rejection::field(
            ErrorCode::NotAuthor,
            "parent",
            format_args!("only the author of {} may {} it", t.id, ev.kind),
        ));
    }
    Ok(Admission::Accept)
}

/// What a backend provides to [`append_with`]: lookups as of this point of
/// the batch, and the insertion of an accepted event.
pub trait Admit {
    /// The backend's error.
    type Error;
    /// The stored event with this id, if any.
    fn existing(&mut self, id: EventId) -> Result<Option<FeedEvent>, Self::Error>;
    /// Whether an event with this id is stored (a cheap check before
    /// [`Admit::existing`]).
    fn exists(&mut self, id: EventId) -> Result<bool, Self::Error>;
    /// The stored event with this id, as much as the rules need.
    fn target(&mut self, id: EventId) -> Result<Option<TargetRef>, Self::Error>;
    /// Stores an accepted event; `target` is its stored parent, if any.
    fn insert(&mut self, ev: FeedEvent, target: Option<TargetRef>) -> Result<(), Self::Error>;
}

/// The append loop every backend shares: each event of the batch, in
/// order, through [`validate`] and [`admit`], accepted ones inserted so the
/// next events see them. The caller wraps it in one transaction.
pub fn append_with<A: Admit>(
    batch: Vec<FeedEvent>,
    now: i64,
    store: &mut A,
) -> Result<Vec<AppendStatus>, A::Error> {
    let mut out = Vec::with_capacity(batch.len());
    for ev in batch {
        let ev = match validate(ev, now) {
            Ok(ev) => ev,
            Err(r) => {
                out.push(AppendStatus::Rejected(r));
                continue;
            }
        };
        let existing = if store.exists(ev.id)? {
            store.existing(ev.id)?
        } else {
            None
        };
        let target = match ev.parent {
            Some(p) => store.target(p)?,
            None => None,
        };
        out.push(match admit(&ev, existing.as_ref(), target) {
            Err(r) => AppendStatus::Rejected(r),
            Ok(Admission::Duplicate) => AppendStatus::Duplicate,
            Ok(Admission::Accept) => {
                store.insert(ev, target)?;
                AppendStatus::Accepted
            }
        });
    }
    Ok(out)
}

/// Whether `delete` (a stored delete event) removes `target` (the stored
/// event its `parent` names): same author, and the target is not a delete.
pub fn delete_applies(delete: &FeedEvent, target: TargetRef) -> bool {
    delete.kind == EventType::Delete
        && delete.parent == Some(target.id)
        && delete.author == target.author
        && target.kind != EventType::Delete
}

/// Whether `edit` (a stored, live edit) is in effect on `post`: same
/// author, and the target is a post.
pub fn edit_applies(edit: &FeedEvent, post: &FeedEvent) -> bool {
    edit.kind == EventType::Edit
        && edit.parent == Some(post.id)
        && edit.author == post.author
        && post.kind == EventType::Post
}

/// The view of `post` with `edit` (the newest in effect, if any) applied:
/// the edit replaces `content`, `content_hash` and `embedding` only.
pub fn apply_edit(post: &FeedEvent, edit: Option<&FeedEvent>) -> EventView {
    match edit {
        None => EventView {
            event: post.clone(),
            edited: false,
        },
        Some(e) => {
            let mut shown = post.clone();
            shown.content = e.content.clone();
            shown.content_hash = e.content_hash;
            shown.embedding = e.embedding.clone();
            EventView {
                event: shown,
                edited: true,
            }
        }
    }
}

/// Whether a live event matches `f` (all but `limit`).
pub fn filter_matches(f: &Filter, ev: &FeedEvent) -> bool {
    fn any<T: PartialEq>(list: &Option<Vec<T>>, pred: impl Fn(&T) -> bool) -> bool {
        list.as_ref().is_none_or(|l| l.iter().any(pred))
    }
    any(&f.ids, |id| *id == ev.id)
        && any(&f.authors, |a| *a == ev.author)
        && any(&f.types, |t| *t == ev.kind)
        && any(&f.tags, |t| {
            ev.kind.carries_topics() && ev.tags.contains(&query_tag(t))
        })
        && any(&f.mentions, |m| {
            ev.kind.carries_topics() && ev.mentions.contains(m)
        })
        && any(&f.parents, |p| ev.parent == Some(*p))
        && f.since.is_none_or(|s| ev.ts >= s)
        && f.until.is_none_or(|u| ev.ts <= u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post() -> FeedEvent {
        FeedEvent::new(EventId(7), EventType::Post, Did([1; 32]), 1_000, "hi")
    }

    fn code_field(ev: FeedEvent) -> (ErrorCode, Option<&'static str>) {
        let r = validate(ev, 0).expect_err("must be rejected");
        (r.code, r.field)
    }

    #[test]
    fn rejections_name_their_field() {
        assert_eq!(
            code_field(post().with_tags(["two words"])),
            (ErrorCode::BadField, Some("tags"))
        );
        assert_eq!(
            code_field(post().with_parent(EventId(7))),
            (ErrorCode::BadField, Some("parent"))
        );
        let mut e = post();
        e.kind = EventType::Follow;
        assert_eq!(code_field(e), (ErrorCode::BadField, Some("mentions")));
        let mut e = post();
        e.content_hash = ContentHash::of("other");
        assert_eq!(code_field(e), (ErrorCode::BadHash, Some("content_hash")));
        let mut e = post();
        e.ts = MAX_FUTURE_NS + 1;
        assert_eq!(code_field(e), (ErrorCode::FutureTs, Some("ts")));
    }

    #[test]
    fn tags_are_lowercased_and_checked_after() {
        let ok = validate(post().with_tags(["RuSt", "CAFÉ"]), 0).expect("valid");
        assert_eq!(ok.tags, vec!["rust", "café"]);
        assert!(validate(post().with_tags(["#rust"]), 0).is_err());
        assert!(validate(post().with_tags(["x".repeat(64)]), 0).is_ok());
        assert!(validate(post().with_tags(["x".repeat(65)]), 0).is_err());
    }

    #[test]
    fn the_future_limit_is_3630_seconds() {
        let mut e = post();
        e.ts = MAX_FUTURE_NS;
        assert!(validate(e, 0).is_ok());
    }

    #[test]
    fn buckets_floor_before_1970() {
        assert_eq!(BucketWidth::Minute.start_of(-1), -60_000_000_000);
        assert_eq!(BucketWidth::Minute.start_of(59_999_999_999), 0);
        assert_eq!(
            BucketWidth::Day.start_of(86_400_000_000_000),
            86_400_000_000_000
        );
    }

    #[test]
    fn embeddings_are_checked_and_normalised_once() {
        use crate::model::EmbeddingError;
        assert_eq!(
            Embedding::new(vec![1.0; 3]),
            Err(EmbeddingError::WrongLength(3))
        );
        assert_eq!(
            Embedding::new(vec![0.0; EMBEDDING_DIM]),
            Err(EmbeddingError::AllZero)
        );
        let mut v = vec![0.0; EMBEDDING_DIM];
        v[3] = f32::INFINITY;
        assert_eq!(Embedding::new(v), Err(EmbeddingError::NotFinite(3)));
        let e = Embedding::new(vec![3.0; EMBEDDING_DIM]).expect("valid");
        let again = Embedding::new(e.as_slice().to_vec()).expect("valid");
        assert_eq!(e, again);
        assert!((e.cosine(&again) - 1.0).abs() < 1e-6);
    }
}
