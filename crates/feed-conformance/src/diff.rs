//! Differential checks: two event stores holding the same events must give
//! the same answer to every query. Used after crashes (against a replay into
//! `MemoryEventStore`, which the suite holds to the oracle) and across
//! profiles.

use futures::StreamExt;

use feed_core::{BucketWidth, Did, EventId, EventStore, EventType, Filter};

use crate::events::paged;

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Keeps failure reports readable when values are long.
fn clip(s: String) -> String {
    const MAX: usize = 3_000;
    if s.len() <= MAX {
        return s;
    }
    let cut = (0..=MAX)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} bytes)", &s[..cut], s.len())
}

fn same<T: PartialEq + std::fmt::Debug>(what: String, a: T, b: T) -> Result<(), String> {
    if a == b {
        Ok(())
    } else {
        Err(format!(
            "{what} differs\n  reference: {}\n  store:     {}",
            clip(format!("{a:?}")),
            clip(format!("{b:?}"))
        ))
    }
}

/// Compares every query of SPEC §5 (search aside) between `reference` and
/// `store` for the given ids, DIDs and tags, plus `export` and `stats`.
pub async fn compare_stores<R: EventStore, S: EventStore>(
    reference: &R,
    store: &S,
    ids: &[EventId],
    dids: &[Did],
    tags: &[&str],
) -> Result<(), String> {
    let (r, s) = (reference, store);
    for &id in ids {
        same(
            format!("get({id})"),
            r.get(id).await.map_err(err("get"))?,
            s.get(id).await.map_err(err("get"))?,
        )?;
        same(
            format!("versions({id})"),
            r.versions(id).await.map_err(err("versions"))?,
            s.versions(id).await.map_err(err("versions"))?,
        )?;
        same(
            format!("thread({id})"),
            r.thread(id).await.map_err(err("thread"))?,
            s.thread(id).await.map_err(err("thread"))?,
        )?;
        same(
            format!("counts({id})"),
            r.counts(id).await.map_err(err("counts"))?,
            s.counts(id).await.map_err(err("counts"))?,
        )?;
    }
    for d in dids {
        let full = r.timeline(d, 500, None).await.map_err(err("timeline"))?;
        same(
            format!("timeline({d})"),
            &full,
            &s.timeline(d, 500, None).await.map_err(err("timeline"))?,
        )?;
        same(
            format!("timeline({d}) paged by 7"),
            paged(|b| r.timeline(d, 7, b)).await?,
            paged(|b| s.timeline(d, 7, b)).await?,
        )?;
        same(
            format!("author_feed({d})"),
            r.author_feed(d, None, None, 200)
                .await
                .map_err(err("author_feed"))?,
            s.author_feed(d, None, None, 200)
                .await
                .map_err(err("author_feed"))?,
        )?;
        same(
            format!("following({d})"),
            r.following(d).await.map_err(err("following"))?,
            s.following(d).await.map_err(err("following"))?,
        )?;
        same(
            format!("followers({d})"),
            r.followers(d).await.map_err(err("followers"))?,
            s.followers(d).await.map_err(err("followers"))?,
        )?;
        same(
            format!("mentions({d})"),
            r.mentions(d, 200, None).await.map_err(err("mentions"))?,
            s.mentions(d, 200, None).await.map_err(err("mentions"))?,
        )?;
    }
    for t in tags {
        same(
            format!("tag({t})"),
            r.tag(t, 200, None).await.map_err(err("tag"))?,
            s.tag(t, 200, None).await.map_err(err("tag"))?,
        )?;
    }
    let filters = [
        Filter::default(),
        Filter {
            types: Some(vec![EventType::Post, EventType::Reaction]),
            limit: Some(100),
            ..Filter::default()
        },
        Filter {
            authors: Some(dids.iter().take(2).copied().collect()),
            tags: Some(tags.iter().take(2).map(|t| t.to_string()).collect()),
            ..Filter::default()
        },
    ];
    for f in &filters {
        same(
            format!("query({f:?})"),
            r.query(f).await.map_err(err("query"))?,
            s.query(f).await.map_err(err("query"))?,
        )?;
        for w in [BucketWidth::Minute, BucketWidth::Hour, BucketWidth::Day] {
            same(
                format!("buckets({f:?}, {w:?})"),
                r.buckets(f, w).await.map_err(err("buckets"))?,
                s.buckets(f, w).await.map_err(err("buckets"))?,
            )?;
        }
    }
    let (rs, ss) = (
        r.stats().await.map_err(err("stats"))?,
        s.stats().await.map_err(err("stats"))?,
    );
    same("stats live".into(), rs.live, ss.live)?;
    same("stats stored".into(), rs.stored, ss.stored)?;
    let mut a = r.export();
    let mut b = s.export();
    let mut n = 0u64;
    loop {
        match (a.next().await, b.next().await) {
            (None, None) => return Ok(()),
            (x, y) => {
                let x = x.transpose().map_err(err("export"))?;
                let y = y.transpose().map_err(err("export"))?;
                same(format!("export line {n}"), x, y)?;
            }
        }
        n += 1;
    }
}
