//! Snowflake ids (SPEC §2): `(unix_millis << 22) | (node << 12) | sequence`.

use std::sync::{Arc, Mutex};

use crate::model::EventId;

/// Bits of sequence per millisecond.
pub const SEQUENCE_BITS: u32 = 12;
/// Bits of node id.
pub const NODE_BITS: u32 = 10;
/// Largest node id.
pub const MAX_NODE: u16 = (1 << NODE_BITS) - 1;
const MAX_SEQ: u64 = (1 << SEQUENCE_BITS) - 1;
const MAX_MILLIS: u64 = (1 << 42) - 1;

/// A source of Unix milliseconds; injectable so tests can step it back.
pub type MillisClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Hands out unique, increasing ids for one node; thread-safe. When the
/// wall clock steps back it keeps counting from the last millisecond it
/// used; when a millisecond's 4096 sequence numbers run out it moves on to
/// the next millisecond.
pub struct SnowflakeGenerator {
    node: u64,
    clock: MillisClock,
    // (last millisecond used, last sequence used in it)
    state: Mutex<Option<(u64, u64)>>,
}

impl std::fmt::Debug for SnowflakeGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnowflakeGenerator")
            .field("node", &self.node)
            .finish()
    }
}

/// Unix milliseconds from the system clock.
pub fn system_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SnowflakeGenerator {
    /// A generator for `node` (masked to 10 bits) on the system clock.
    pub fn new(node: u16) -> SnowflakeGenerator {
        SnowflakeGenerator::with_clock(node, Arc::new(system_millis))
    }

    /// A generator for `node` on a given clock.
    pub fn with_clock(node: u16, clock: MillisClock) -> SnowflakeGenerator {
        SnowflakeGenerator {
            node: (node & MAX_NODE) as u64,
            clock,
            state: Mutex::new(None),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> EventId {
        let now = (self.clock)().min(MAX_MILLIS);
        // A poisoned lock only means another thread panicked between two
        // plain integer writes; the state is still consistent.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (ms, seq) = match *state {
            Some((last_ms, last_seq)) if now <= last_ms => {
                if last_seq < MAX_SEQ {
                    (last_ms, last_seq + 1)
                } else {
                    (last_ms + 1, 0)
                }
            }
            _ => (now, 0),
        };
        *state = Some((ms, seq));
        EventId(compose(ms, self.node, seq))
    }
}

/// Builds an id from its parts.
pub fn compose(millis: u64, node: u64, seq: u64) -> u64 {
    (millis << (NODE_BITS + SEQUENCE_BITS))
        | ((node & MAX_NODE as u64) << SEQUENCE_BITS)
        | (seq & MAX_SEQ)
}

/// The Unix milliseconds of an id.
pub fn millis_of(id: EventId) -> u64 {
    id.0 >> (NODE_BITS + SEQUENCE_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn parts_round_trip() {
        let id = compose(1_700_000_000_000, 5, 7);
        assert_eq!(millis_of(EventId(id)), 1_700_000_000_000);
        assert_eq!((id >> 12) & 0x3ff, 5);
        assert_eq!(id & 0xfff, 7);
    }

    #[test]
    fn sequence_overflow_moves_to_next_millisecond() {
        let g = SnowflakeGenerator::with_clock(1, Arc::new(|| 1000));
        let ids: Vec<u64> = (0..5000).map(|_| g.next_id().0).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(millis_of(EventId(ids[4095])), 1000);
        assert_eq!(millis_of(EventId(ids[4096])), 1001);
    }

    /// 1,000,000 ids from two threads on one generator whose clock steps
    /// back by 5 s partway: unique overall, increasing per thread.
    #[test]
    fn million_ids_two_threads_with_clock_step_back() {
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let clock: MillisClock = Arc::new(move || {
            let n = c.fetch_add(1, Ordering::Relaxed);
            let base = 1_700_000_000_000 + n / 3;
            if (300_000..600_000).contains(&n) {
                base - 5_000
            } else {
                base
            }
        });
        let g = Arc::new(SnowflakeGenerator::with_clock(42, clock));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || (0..500_000).map(|_| g.next_id().0).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::with_capacity(1_000_000);
        for h in handles {
            let ids = h.join().expect("generator thread");
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids went backwards");
            assert!(ids.iter().all(|id| (id >> 12) & 0x3ff == 42));
            all.extend(ids);
        }
        assert!(
            calls.load(Ordering::Relaxed) > 600_000,
            "clock step-back was exercised"
        );
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1_000_000);
    }
}
