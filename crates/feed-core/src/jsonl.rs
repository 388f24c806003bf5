//! JSON Lines interchange (SPEC §6): one event per line; `id`, `parent` and
//! `ts` as JSON integers, exact to the last digit; hashes and DIDs as hex.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::model::*;
use crate::validate::{ErrorCode, Rejection};

/// Longest line `parse_line` reads (content is at most 64 KiB, but escapes
/// and a 384-float embedding make a legal line longer).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

fn bad(field: &'static str, msg: &str) -> Rejection {
    Rejection::field(ErrorCode::BadField, field, msg)
}

fn bad_emb(msg: impl std::fmt::Display) -> Rejection {
    Rejection::field(ErrorCode::BadEmbedding, "embedding", msg)
}

/// A decoded JSON object's values by key.
trait Get {
    fn get_value(&self, key: &str) -> Option<&Value>;
}

impl Get for Map<String, Value> {
    fn get_value(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}

/// A value given and not `null`.
fn opt<'a>(obj: &'a impl Get, key: &str) -> Option<&'a Value> {
    obj.get_value(key).filter(|v| !v.is_null())
}

fn u64_field(obj: &impl Get, key: &'static str) -> Result<Option<u64>, Rejection> {
    match opt(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(key, "must be a non-negative JSON integer")),
    }
}

/// Parses one line into an event. Structural errors only (`bad_json`,
/// `bad_field`, `too_large` for the line, `bad_embedding`); the rules of
/// SPEC §1/§3 are checked by [`crate::validate::validate`] at append.
/// Without `content` and `content_hash` the content is the empty string;
/// with only `content` the hash is computed.
pub fn parse_line(line: &str) -> Result<FeedEvent, Rejection> {
    if line.len() > MAX_LINE_BYTES {
        return Err(Rejection::new(
            ErrorCode::TooLarge,
            format!(
                "line of {} bytes, at most {MAX_LINE_BYTES} read",
                line.len()
            ),
        ));
    }
    // A key given twice is refused: parsers disagree on which value wins,
    // so such a line could mean one event here and another wherever it is
    // relayed.
    let top: Top = serde_json::from_str(line)
        .map_err(|e| Rejection::new(ErrorCode::BadJson, format!("not JSON: {e}")))?;
    let Top::Object(obj) = top else {
        return Err(Rejection::new(
            ErrorCode::BadJson,
            "an event is a JSON object",
        ));
    };
    parse_object(obj)
}

/// A line's top-level JSON value: an object whose keys are all distinct,
/// or anything else (skipped over, not kept).
enum Top {
    Object(Box<Fields>),
    Other,
}

/// Every key an event line may carry: the event's own fields, then those
/// query output adds (accepted and ignored, so output can be ingested).
const KEYS: [&str; 15] = [
    "id",
    "type",
    "author",
    "ts",
    "content_hash",
    "content",
    "parent",
    "tags",
    "mentions",
    "embedding",
    "score",
    "depth",
    "edited",
    "deleted",
    "truncated",
];

/// The slot of a known key.
fn key_index(key: &str) -> Option<usize> {
    KEYS.iter().position(|k| *k == key)
}

/// An event object as decoded: the value of each key of [`KEYS`] given,
/// and the first other key, if any (the line is then rejected). Known keys
/// go straight to their slot, with no map and no key string allocated.
struct Fields {
    vals: [Option<Value>; KEYS.len()],
    unknown: Option<String>,
}

impl Get for Fields {
    fn get_value(&self, key: &str) -> Option<&Value> {
        self.vals[key_index(key)?].as_ref()
    }
}

impl Fields {
    /// Moves a value out; `null` is absent.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.vals[key_index(key)?].take().filter(|v| !v.is_null())
    }
}

/// An object key: the index of a known one, or an unknown one's text.
enum Key {
    Known(usize),
    Unknown(String),
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<Key, E> {
                Ok(match key_index(k) {
                    Some(i) => Key::Known(i),
                    None => Key::Unknown(k.to_owned()),
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Top {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Top, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Top;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Top, A::Error> {
                let mut out = Box::new(Fields {
                    vals: Default::default(),
                    unknown: None,
                });
                // Unknown keys are rare (the line is rejected); they are
                // kept only to refuse one given twice.
                let mut others: std::collections::HashSet<String> = Default::default();
                while let Some(k) = m.next_key::<Key>()? {
                    let v: Value = m.next_value()?;
                    match k {
                        Key::Known(i) => {
                            if out.vals[i].replace(v).is_some() {
                                return Err(A::Error::custom(format!(
                                    "key {:?} given twice",
                                    KEYS[i]
                                )));
                            }
                        }
                        Key::Unknown(k) => {
                            if !others.insert(k.clone()) {
                                return Err(A::Error::custom(format!("key {k:?} given twice")));
                            }
                            out.unknown.get_or_insert(k);
                        }
                    }
                }
                Ok(Top::Object(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Top, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Top::Other)
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<Top, E> {
                Ok(Top::Other)
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<Top, E> {
                Ok(Top::Other)
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<Top, E> {
                Ok(Top::Other)
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<Top, E> {
                Ok(Top::Other)
            }
            fn visit_str<E: Error>(self, _: &str) -> Result<Top, E> {
                Ok(Top::Other)
            }
            fn visit_unit<E: Error>(self) -> Result<Top, E> {
                Ok(Top::Other)
            }
        }
        d.deserialize_any(Any)
    }
}

/// Parses an already-decoded event object (see [`parse_line`]).
fn parse_object(mut obj: Box<Fields>) -> Result<FeedEvent, Rejection> {
    if let Some(k) = &obj.unknown {
        return Err(Rejection::new(
            ErrorCode::BadField,
            format!("unknown field {k:?}"),
        ));
    }
    let id = u64_field(&*obj, "id")?.ok_or_else(|| bad("id", "is required"))?;
    let kind = opt(&*obj, "type")
        .ok_or_else(|| bad("type", "is required"))?
        .as_str()
        .and_then(|s| s.parse::<EventType>().ok())
        .ok_or_else(|| {
            bad(
                "type",
                "must be one of post, reaction, follow, mention, hashtag, edit, delete",
            )
        })?;
    let author = opt(&*obj, "author")
        .ok_or_else(|| bad("author", "is required"))?
        .as_str()
        .and_then(Did::parse)
        .ok_or_else(|| {
            bad(
                "author",
                "must be 64 hex characters or did:libertaria:<hex>",
            )
        })?;
    let ts = opt(&*obj, "ts")
        .ok_or_else(|| bad("ts", "is required"))?
        .as_i64()
        .ok_or_else(|| bad("ts", "must be a JSON integer of nanoseconds"))?;
    // The decoded strings are moved out, not copied.
    let content = match obj.take("content") {
        None => None,
        Some(Value::String(c)) => Some(c),
        Some(_) => return Err(bad("content", "must be a string")),
    };
    let hash = match opt(&*obj, "content_hash") {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(ContentHash::parse)
                .ok_or_else(|| bad("content_hash", "must be 64 hex characters"))?,
        ),
    };
    let (content, content_hash) = match (content, hash) {
        (None, None) => (Some(String::new()), ContentHash::of("")),
        (Some(c), None) => {
            let h = ContentHash::of(&c);
            (Some(c), h)
        }
        (c, Some(h)) => (c, h),
    };
    let parent = u64_field(&*obj, "parent")?.map(EventId);
    let tags = match obj.take("tags") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .into_iter()
            .map(|t| match t {
                Value::String(t) => Some(t),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad("tags", "must be an array of strings"))?,
        Some(_) => return Err(bad("tags", "must be an array of strings")),
    };
    let mentions = match opt(&*obj, "mentions") {
        None => Vec::new(),
        Some(v) => v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|m| m.as_str().and_then(Did::parse))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad("mentions", "must be an array of DIDs"))?,
    };
    let embedding = match opt(&*obj, "embedding") {
        None => None,
        Some(v) => {
            let arr = v
                .as_array()
                .ok_or_else(|| bad_emb("must be an array of numbers"))?;
            let floats = arr
                .iter()
                .map(|x| x.as_f64().map(|f| f as f32))
                .collect::<Option<Vec<f32>>>()
                .ok_or_else(|| bad_emb("must be an array of numbers"))?;
            Some(Embedding::new(floats).map_err(bad_emb)?)
        }
    };
    Ok(FeedEvent {
        id: EventId(id),
        kind,
        author,
        ts,
        content_hash,
        content,
        parent,
        tags,
        mentions,
        embedding,
    })
}

fn push_str_json(out: &mut String, s: &str) {
    // serde_json's escaping of a str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// Writes the fields of `ev` (without braces) in SPEC order.
fn write_fields(out: &mut String, ev: &FeedEvent, with_embedding: bool) {
    let _ = write!(
        out,
        "\"id\":{},\"type\":\"{}\",\"author\":\"{}\",\"ts\":{},\"content_hash\":\"{}\"",
        ev.id, ev.kind, ev.author, ev.ts, ev.content_hash
    );
    if let Some(c) = &ev.content {
        out.push_str(",\"content\":");
        push_str_json(out, c);
    }
    if let Some(p) = ev.parent {
        let _ = write!(out, ",\"parent\":{p}");
    }
    out.push_str(",\"tags\":[");
    for (i, t) in ev.tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str_json(out, t);
    }
    out.push_str("],\"mentions\":[");
    for (i, m) in ev.mentions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{m}\"");
    }
    out.push(']');
    if with_embedding {
        if let Some(e) = &ev.embedding {
            out.push_str(",\"embedding\":[");
            for (i, x) in e.as_slice().iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // Shortest text that reads back to the same f32.
                let _ = write!(out, "{x:?}");
            }
            out.push(']');
        }
    }
}

/// One interchange line (no newline): every field, embedding included.
pub fn event_line(ev: &FeedEvent) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    write_fields(&mut out, ev, true);
    out.push('}');
    out
}

/// Extra fields that query output adds to an event object.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Extras {
    /// Search similarity.
    pub score: Option<f32>,
    /// Thread depth.
    pub depth: Option<u32>,
    /// Thread truncated (set on the root line).
    pub truncated: Option<bool>,
}

fn write_extras(out: &mut String, x: Extras) {
    if let Some(s) = x.score {
        let _ = write!(out, ",\"score\":{s:?}");
    }
    if let Some(d) = x.depth {
        let _ = write!(out, ",\"depth\":{d}");
    }
    if let Some(t) = x.truncated {
        let _ = write!(out, ",\"truncated\":{t}");
    }
}

fn write_view(out: &mut String, v: &EventView) {
    write_fields(out, &v.event, false);
    let _ = write!(out, ",\"edited\":{},\"deleted\":false", v.edited);
}

/// A query-output line for an entry: a live event with `edited` and
/// `deleted: false`, or a placeholder `{id, deleted: true}`. Embeddings are
/// left out of query output (export carries them).
pub fn entry_line(entry: &Entry, extras: Extras) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    match entry {
        Entry::Live(v) => write_view(&mut out, v),
        Entry::Deleted(id) => {
            let _ = write!(out, "\"id\":{id},\"deleted\":true");
        }
    }
    write_extras(&mut out, extras);
    out.push('}');
    out
}

/// A query-output line for a live event view.
pub fn view_line(view: &EventView, extras: Extras) -> String {
    let mut out = String::with_capacity(256);
    out.push('{');
    write_view(&mut out, view);
    write_extras(&mut out, extras);
    out.push('}');
    out
}

/// Parses a filter object (`ids`, `authors`, `types`, `tags`, `mentions`,
/// `parents`, `since`, `until`, `limit`) as `feed query` takes it.
pub fn parse_filter(text: &str) -> Result<Filter, Rejection> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Rejection::new(ErrorCode::BadJson, format!("filter is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(Rejection::new(
            ErrorCode::BadJson,
            "a filter is a JSON object",
        ));
    };
    fn list<T>(
        obj: &Map<String, Value>,
        key: &'static str,
        item: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, Rejection> {
        match opt(obj, key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(&item).collect::<Option<Vec<T>>>())
                .map(Some)
                .ok_or_else(|| bad(key, "has a wrong value")),
        }
    }
    const KNOWN: [&str; 9] = [
        "ids", "authors", "types", "tags", "mentions", "parents", "since", "until", "limit",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Rejection::new(
            ErrorCode::BadField,
            format!("unknown filter field {k:?}"),
        ));
    }
    let int = |key: &'static str| -> Result<Option<i64>, Rejection> {
        match opt(&obj, key) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad(key, "must be a JSON integer")),
        }
    };
    Ok(Filter {
        ids: list(&obj, "ids", |v| v.as_u64().map(EventId))?,
        authors: list(&obj, "authors", |v| v.as_str().and_then(Did::parse))?,
        types: list(&obj, "types", |v| {
            v.as_str().and_then(|s| s.parse::<EventType>().ok())
        })?,
        tags: list(&obj, "tags", |v| v.as_str().map(str::to_owned))?,
        mentions: list(&obj, "mentions", |v| v.as_str().and_then(Did::parse))?,
        parents: list(&obj, "parents", |v| v.as_u64().map(EventId))?,
        since: int("since")?,
        until: int("until")?,
        limit: match opt(&obj, "limit") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| bad("limit", "must be a non-negative integer"))?
                    as usize,
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(extra: &str) -> String {
        let ev = FeedEvent::new(EventId(8), EventType::Post, Did([7; 32]), 1_000, "hi");
        let l = event_line(&ev);
        format!("{{{extra}{}", &l[1..])
    }

    fn code(l: &str) -> Option<ErrorCode> {
        parse_line(l).err().map(|r| r.code)
    }

    #[test]
    fn keys_are_checked_whatever_their_spelling() {
        assert_eq!(code(&line("")), None);
        // A known key twice, also when one is spelled with an escape.
        assert_eq!(code(&line("\"id\":9,")), Some(ErrorCode::BadJson));
        assert_eq!(code(&line("\"i\\u0064\":9,")), Some(ErrorCode::BadJson));
        // An unknown key is a bad field; the same unknown key twice is bad JSON.
        let r = parse_line(&line("\"zz\":1,")).expect_err("unknown key");
        assert_eq!(r.code, ErrorCode::BadField);
        assert!(r.message.contains("zz"), "{}", r.message);
        assert_eq!(code(&line("\"zz\":1,\"zz\":2,")), Some(ErrorCode::BadJson));
        // Query output's extra fields are accepted and ignored.
        let ev = parse_line(&line("\"score\":0.5,\"depth\":2,\"deleted\":false,"))
            .expect("output fields are ignored");
        assert_eq!(ev.id, EventId(8));
        // `null` is absent.
        let r = parse_line(&line("").replacen("\"id\":8", "\"id\":null", 1)).expect_err("no id");
        assert_eq!(r.field, Some("id"));
    }
}
