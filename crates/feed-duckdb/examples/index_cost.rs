//! What keys and ART indexes cost at ingest: appends `N` (default
//! 1,000,000) event-shaped rows in transactions of 10,000 through the
//! Appender into tables that differ only in their keys and indexes, and
//! prints rows/s and the file size of each.
//!
//! `cargo run --release -p feed-duckdb --example index_cost [N]`

use std::time::Instant;

use duckdb::{params, Config, Connection};

const VARIANTS: [(&str, &str); 4] = [
    ("no key, no index", ""),
    ("PRIMARY KEY (id)", "ALTER TABLE ev ADD PRIMARY KEY (id);"),
    ("ART on id", "CREATE INDEX ev_id ON ev(id);"),
    (
        "ART on id, parent, root (as feed-duckdb)",
        "CREATE INDEX ev_id ON ev(id); CREATE INDEX ev_parent ON ev(parent); \
         CREATE INDEX ev_root ON ev(root);",
    ),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 1_000_000,
    };
    println!("{n} rows, transactions of 10,000");
    for (name, ddl) in VARIANTS {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("x.duckdb");
        let c = Connection::open_with_flags(&path, Config::default().threads(2)?)?;
        c.execute_batch(
            "CREATE TABLE ev (seq BIGINT, id UBIGINT, kind UTINYINT, author INTEGER, \
             ts BIGINT, parent UBIGINT, root UBIGINT)",
        )?;
        c.execute_batch(ddl)?;
        let t = Instant::now();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut i = 0u64;
        while i < n {
            c.execute_batch("BEGIN")?;
            {
                let mut app = c.appender("ev")?;
                for _ in 0..10_000.min(n - i) {
                    // Snowflake-like ids: time in the high bits, noise below.
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = ((1_700_000_000_000 + i) << 22) | (x & 0x3f_ffff);
                    let parent = (x % 3 == 0).then(|| id.wrapping_sub((x % 1_000_000) << 22));
                    app.append_row(params![
                        i as i64,
                        id,
                        (x % 7) as u8,
                        (x % 20_000) as i32,
                        i as i64,
                        parent,
                        parent.unwrap_or(id)
                    ])?;
                    i += 1;
                }
            }
            c.execute_batch("COMMIT")?;
        }
        c.execute_batch("CHECKPOINT")?;
        let secs = t.elapsed().as_secs_f64();
        drop(c);
        let size = std::fs::metadata(&path)?.len();
        println!(
            "{name:<42} {:>9.0} rows/s  {:>6.1} MiB on disk",
            n as f64 / secs,
            size as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
