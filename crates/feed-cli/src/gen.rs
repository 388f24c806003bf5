//! `feed gen`: a seeded, SPEC-valid synthetic social data set.
//!
//! Authors' activity and follower counts are Zipf-distributed; posts form
//! reply trees; reactions of all three kinds, hashtags, mentions, edits,
//! deletes and unfollows appear in realistic proportions; about 1% of
//! edits, deletes and replies arrive before their targets. Post text comes
//! from Debian's `fortunes` when installed, else from generated sentences.

use std::collections::VecDeque;
use std::sync::Arc;

pub use feed_core::rng::Rng;
use feed_core::snowflake::SnowflakeGenerator;
use feed_core::{ContentHash, Did, EventId, EventType, FeedEvent};

/// Knobs of the generator.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Events to produce.
    pub events: usize,
    /// Seed: the same seed gives the same data set.
    pub seed: u64,
    /// Give posts topic-clustered unit embeddings (for vector benchmarks).
    pub vectors: bool,
    /// Start of the data set's time span, ns.
    pub start_ts: i64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            events: 100_000,
            seed: 1,
            vectors: false,
            // 2026-01-01T00:00:00Z
            start_ts: 1_767_225_600_000_000_000,
        }
    }
}

/// Samples ranks 0..n with probability ∝ 1/(rank+1)^s.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// A Zipf distribution over `n` ranks with exponent `s`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let cdf = (0..n.max(1))
            .map(|k| {
                acc += 1.0 / ((k + 1) as f64).powf(s);
                acc
            })
            .collect::<Vec<_>>();
        let total = acc;
        Zipf {
            cdf: cdf.into_iter().map(|c| c / total).collect(),
        }
    }
    /// One rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// The DID of synthetic author `i`.
pub fn author_did(i: usize) -> Did {
    let h = blake3::hash(format!("feed-gen-author-{i}").as_bytes());
    Did(*h.as_bytes())
}

const WORDS: &[&str] = &[
    "the",
    "a",
    "river",
    "solar",
    "mesh",
    "garden",
    "market",
    "bread",
    "rain",
    "signal",
    "village",
    "battery",
    "school",
    "music",
    "coffee",
    "bicycle",
    "harvest",
    "library",
    "storm",
    "friend",
    "radio",
    "window",
    "mountain",
    "recipe",
    "festival",
    "code",
    "bridge",
    "lantern",
    "ocean",
    "letter",
    "morning",
    "night",
    "quiet",
    "bright",
    "old",
    "new",
    "small",
    "shared",
    "is",
    "was",
    "finds",
    "carries",
    "builds",
    "sings",
    "waits",
    "grows",
    "opens",
    "remembers",
];

fn sentence(rng: &mut Rng) -> String {
    let n = 6 + rng.below(18);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len())]);
    }
    s.push('.');
    s
}

/// Short texts (at most 600 bytes) from Debian's fortunes, if installed.
pub fn fortunes() -> Vec<String> {
    let mut texts = feed_core::synth::fortunes();
    texts.retain(|t| t.len() <= 600);
    texts
}

/// Generates the data set, calling `emit` for each event in arrival order.
pub fn generate(cfg: &GenConfig, mut emit: impl FnMut(FeedEvent)) {
    let mut rng = Rng::new(cfg.seed);
    let n_authors = (cfg.events / 40).clamp(20, 50_000);
    let activity = Zipf::new(n_authors, 1.1);
    let popularity = Zipf::new(n_authors, 1.2);
    let tags = Zipf::new(200, 1.1);
    let corpus = fortunes();
    let dids: Vec<Did> = (0..n_authors).map(author_did).collect();
    let mut vectors = feed_core::synth::EmbeddingLike::new(cfg.seed ^ 0x5eed);

    // Snowflake ids on a clock that follows the data set's time.
    let now_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let clock = now_ms.clone();
    let ids = SnowflakeGenerator::with_clock(
        1,
        Arc::new(move || clock.load(std::sync::atomic::Ordering::Relaxed)),
    );
    let span_ns: i64 = 30 * 86_400 * 1_000_000_000;
    let step = (span_ns / cfg.events.max(1) as i64).max(1);
    let mut ts = cfg.start_ts;

    let mut recent_posts: VecDeque<(EventId, usize)> = VecDeque::with_capacity(4096);
    let mut own: Vec<Vec<(EventId, EventType)>> = vec![Vec::new(); n_authors];
    let mut follows: Vec<Vec<(EventId, usize)>> = vec![Vec::new(); n_authors];
    // Events held back so they arrive after something that refers to them.
    let mut held: Vec<(usize, FeedEvent)> = Vec::new();
    let mut produced = 0usize;

    let mut out = |e: FeedEvent, produced: &mut usize, held: &mut Vec<(usize, FeedEvent)>| {
        *produced += 1;
        emit(e);
        let due: Vec<usize> = held
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= *produced)
            .map(|(i, _)| i)
            .collect();
        for i in due.into_iter().rev() {
            let (_, e) = held.swap_remove(i);
            *produced += 1;
            emit(e);
        }
    };

    // Everyone starts by following a Zipf-popular handful.
    let initial_follows = n_authors.min(cfg.events / 10);
    while produced + held.len() < cfg.events {
        ts += (rng.f64() * 2.0 * step as f64) as i64 + 1;
        now_ms.store(
            (ts / 1_000_000) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        let id = ids.next_id();
        let a = if produced < initial_follows {
            produced % n_authors
        } else {
            activity.sample(&mut rng)
        };
        let roll = rng.f64();
        let kind = if produced < initial_follows || roll < 0.08 {
            EventType::Follow
        } else if roll < 0.50 {
            EventType::Post
        } else if roll < 0.80 {
            EventType::Reaction
        } else if roll < 0.83 {
            EventType::Mention
        } else if roll < 0.86 {
            EventType::Hashtag
        } else if roll < 0.92 {
            EventType::Edit
        } else {
            EventType::Delete
        };
        let text = match kind {
            EventType::Post | EventType::Edit | EventType::Mention => {
                if corpus.is_empty() {
                    sentence(&mut rng)
                } else {
                    corpus[rng.below(corpus.len())].clone()
                }
            }
            _ => String::new(),
        };
        let mut e = FeedEvent::new(id, kind, dids[a], ts, &text);
        let mut late = false;
        match kind {
            EventType::Follow => {
                let mut t = popularity.sample(&mut rng);
                if t == a {
                    t = (t + 1) % n_authors;
                }
                e.mentions = vec![dids[t]];
                follows[a].push((id, t));
            }
            EventType::Post => {
                if !recent_posts.is_empty() && rng.f64() < 0.4 {
                    let back = (rng.f64().powi(3) * recent_posts.len() as f64) as usize;
                    let (p, _) =
                        recent_posts[recent_posts.len() - 1 - back.min(recent_posts.len() - 1)];
                    e.parent = Some(p);
                }
                // 1% of posts arrive up to 50 events late, after replies,
                // reactions, edits or deletes that refer to them.
                late = rng.f64() < 0.01;
                if rng.f64() < 0.3 {
                    let n = 1 + rng.below(3);
                    e.tags = (0..n)
                        .map(|_| format!("topic{}", tags.sample(&mut rng)))
                        .collect();
                    e.tags.dedup();
                }
                if rng.f64() < 0.1 {
                    e.mentions = vec![dids[popularity.sample(&mut rng)]];
                }
                if cfg.vectors {
                    e.embedding = Some(vectors.next_vector());
                }
                recent_posts.push_back((id, a));
                if recent_posts.len() > 4096 {
                    recent_posts.pop_front();
                }
                own[a].push((id, EventType::Post));
            }
            EventType::Reaction => {
                let Some(&(p, _)) = pick_recent(&recent_posts, &mut rng) else {
                    continue;
                };
                e.parent = Some(p);
                let k = rng.f64();
                e.tags = vec![if k < 0.7 {
                    "like"
                } else if k < 0.9 {
                    "boost"
                } else {
                    "bookmark"
                }
                .to_string()];
                own[a].push((id, EventType::Reaction));
            }
            EventType::Mention => {
                let n = 1 + rng.below(3);
                e.mentions = (0..n).map(|_| dids[popularity.sample(&mut rng)]).collect();
                e.parent = pick_recent(&recent_posts, &mut rng).map(|(p, _)| *p);
            }
            EventType::Hashtag => {
                e.tags = vec![format!("topic{}", tags.sample(&mut rng))];
                e.parent = pick_recent(&recent_posts, &mut rng).map(|(p, _)| *p);
                e.content = Some(String::new());
                e.content_hash = ContentHash::of("");
            }
            EventType::Edit => {
                let posts: Vec<EventId> = own[a]
                    .iter()
                    .rev()
                    .filter(|(_, k)| *k == EventType::Post)
                    .take(10)
                    .map(|(i, _)| *i)
                    .collect();
                let Some(&p) = posts.get(rng.below(posts.len().max(1))) else {
                    continue;
                };
                e.parent = Some(p);
            }
            EventType::Delete => {
                let r = rng.f64();
                let target = if r < 0.1 && !follows[a].is_empty() {
                    let i = rng.below(follows[a].len());
                    Some(follows[a].swap_remove(i).0)
                } else {
                    own[a]
                        .iter()
                        .rev()
                        .take(20)
                        .nth(rng.below(20))
                        .map(|(i, _)| *i)
                };
                let Some(t) = target else { continue };
                own[a].retain(|(i, _)| *i != t);
                e.parent = Some(t);
            }
        }
        if late {
            held.push((produced + 1 + rng.below(50), e));
            continue;
        }
        out(e, &mut produced, &mut held);
    }
    for (_, e) in held {
        emit(e);
    }
}

fn pick_recent<'a>(
    recent: &'a VecDeque<(EventId, usize)>,
    rng: &mut Rng,
) -> Option<&'a (EventId, usize)> {
    if recent.is_empty() {
        return None;
    }
    let back = (rng.f64().powi(2) * recent.len() as f64) as usize;
    recent.get(recent.len() - 1 - back.min(recent.len() - 1))
}
