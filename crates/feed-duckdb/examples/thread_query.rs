//! What a thread's statements cost on a store: for 300 sampled posts of
//! an `events.duckdb` (a copy: the store must not be open elsewhere),
//! times the group query as it was (group found by `id`, then `root`
//! scanned), as it is (`seq` span from memory, `root` within it), the
//! content rows by `rowid` alone and within the group's `id` range, and a
//! `get`'s statement without and with `c.id`, twice each, and prints p50
//! and p99.
//!
//! `cargo run --release -p feed-duckdb --example thread_query PATH`

use std::error::Error;
use std::time::Instant;

use duckdb::{params, Connection};

/// The columns the store's group query reads, then `tail`.
macro_rules! group_query {
    ($tail:literal) => {
        concat!(
            "SELECT e.rowid, e.seq, e.id, e.kind, e.author, e.ts, e.hash, e.parent, ",
            "e.deleted, e.edited FROM events e ",
            $tail
        )
    };
}

fn time(
    name: &str,
    n: usize,
    mut f: impl FnMut(usize) -> duckdb::Result<usize>,
) -> duckdb::Result<()> {
    let mut d = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        if f(i)? == 0 {
            return Err(duckdb::Error::QueryReturnedNoRows);
        }
        d.push(t.elapsed().as_micros());
    }
    d.sort_unstable();
    println!(
        "{name:28} p50 {:6} µs   p99 {:6} µs",
        d[n / 2],
        d[n * 99 / 100]
    );
    Ok(())
}

/// How many rows `sql` gives with `p`.
fn rows(c: &Connection, sql: &str, p: impl duckdb::Params) -> duckdb::Result<usize> {
    Ok(c.prepare_cached(sql)?.query_map(p, |_| Ok(()))?.count())
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: thread_query PATH/events.duckdb")?;
    let c = Connection::open(path)?;
    c.execute_batch(
        "SET threads = 2; SET memory_limit = '96MB'; SET dynamic_or_filter_threshold = 256;",
    )?;
    let ids: Vec<u64> = c
        .prepare(
            "SELECT id FROM events WHERE kind = 0 USING SAMPLE reservoir(300 ROWS) REPEATABLE (1)",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Err("no posts".into());
    }
    // Each sampled post's group and its `seq` span, and the group's rowids.
    let mut groups = Vec::with_capacity(ids.len());
    for id in &ids {
        let (g, lo, hi): (u64, i64, i64) = c.query_row(
            "SELECT root, min(seq), max(seq) FROM events WHERE kind = 0 \
             AND root = (SELECT root FROM events WHERE id = ?) GROUP BY root",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let rows: Vec<(i64, u64)> = c
            .prepare("SELECT rowid, id FROM events WHERE kind = 0 AND root = ?")?
            .query_map([g], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u64>(1)?)))?
            .collect::<Result<_, _>>()?;
        let lo_id = rows.iter().map(|r| r.1).min().unwrap_or(0);
        let hi_id = rows.iter().map(|r| r.1).max().unwrap_or(0);
        let list: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
        groups.push((g, lo, hi, list.join(","), lo_id, hi_id));
    }
    let n = ids.len();
    for _ in 0..2 {
        time("group by id, then root", n, |i| {
            let sql = group_query!(
                "WHERE e.kind = 0 AND e.root = (SELECT root FROM events WHERE id = ? AND kind = 0)"
            );
            rows(&c, sql, [ids[i]])
        })?;
        time("group by seq span and root", n, |i| {
            let (g, lo, hi, ..) = &groups[i];
            let sql = group_query!("WHERE e.seq >= ? AND e.seq <= ? AND e.kind = 0 AND e.root = ?");
            rows(&c, sql, params![lo, hi, g])
        })?;
        time("content rows by rowid", n, |i| {
            rows(
                &c,
                "SELECT q.r, c.id, c.content, c.tags, c.mentions, c.embedding \
                 FROM (SELECT unnest(string_split(?, ','))::BIGINT AS r) q \
                 JOIN event_content c ON c.rowid = q.r",
                [&groups[i].3],
            )
        })?;
        time("get: events and content", n, |i| {
            rows(
                &c,
                "SELECT e.id, c.content FROM events e JOIN event_content c ON c.rowid = e.rowid \
                 WHERE e.id = ?1",
                params![ids[i]],
            )
        })?;
        time("get: and c.id", n, |i| {
            rows(
                &c,
                "SELECT e.id, c.content FROM events e JOIN event_content c ON c.rowid = e.rowid \
                 WHERE e.id = ?1 AND c.id = ?1",
                params![ids[i]],
            )
        })?;
        time("content rows by rowid, id range", n, |i| {
            rows(
                &c,
                "SELECT q.r, c.id, c.content, c.tags, c.mentions, c.embedding \
                 FROM (SELECT unnest(string_split(?, ','))::BIGINT AS r) q \
                 JOIN event_content c ON c.rowid = q.r WHERE c.id BETWEEN ? AND ?",
                params![&groups[i].3, groups[i].4, groups[i].5],
            )
        })?;
    }
    Ok(())
}
