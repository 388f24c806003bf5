//! Flat segments of 1-bit codes, scanned in full: the lite vector index's
//! small-memory alternative to a usearch graph.
//!
//! A record is a key (`u64`, little-endian) followed by the 48-byte code of
//! the vector. [`FlatBase`] is a file of such records in key order, read
//! with `pread` in chunks of [`CHUNK_RECORDS`] (the page cache holds it, not
//! the process: nothing is mapped); [`FlatDelta`] keeps records in memory in
//! arrival order. A search ranks every record by Hamming distance to the
//! query's code and keeps the `want` nearest.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use feed_core::EMBEDDING_DIM;

/// Bytes of one packed 1-bit code.
pub(crate) const CODE_BYTES: usize = EMBEDDING_DIM / 8;

/// Bytes of one record: key, then code.
const RECORD: usize = 8 + CODE_BYTES;

/// The first bytes of a base file; then the record count (`u64`, LE).
const MAGIC: &[u8; 8] = b"FEEDBIT1";

const HEADER: usize = MAGIC.len() + 8;

/// Records read per `pread` (56 KiB).
pub(crate) const CHUNK_RECORDS: usize = 1024;

/// Why a base file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FlatError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a complete base file.
    #[error("not a flat code file: {0}")]
    Format(&'static str),
}

/// A record kept by a search: Hamming distance, key, code.
pub(crate) type Candidate = (u32, u64, [u8; CODE_BYTES]);

/// The `want` nearest records seen so far, ties broken by the lower key.
///
/// The heap holds `(distance, key, slot)`; each code sits in `codes[slot]`,
/// so sifting moves 16 bytes rather than 64, and a newcomer takes the slot
/// of the record it pushes out (one sift, through `PeekMut`).
pub(crate) struct Nearest {
    want: usize,
    heap: BinaryHeap<(u32, u64, u32)>,
    codes: Vec<[u8; CODE_BYTES]>,
    /// The largest distance that can still get in: the worst kept once
    /// `want` are kept (a tie then needs a lower key), else any.
    bound: u32,
}

impl Nearest {
    /// Keeps at most `want` records.
    pub(crate) fn new(want: usize) -> Nearest {
        Nearest {
            want,
            // Grown as needed beyond this: `want` comes from the caller's `k`.
            heap: BinaryHeap::with_capacity(want.min(4_096)),
            codes: Vec::with_capacity(want.min(4_096)),
            bound: if want == 0 { 0 } else { u32::MAX },
        }
    }

    #[inline(always)]
    fn offer(&mut self, dist: u32, key: u64, code: &[u8]) {
        let mut c = [0u8; CODE_BYTES];
        c.copy_from_slice(code);
        if self.heap.len() < self.want {
            let slot = self.codes.len() as u32;
            self.codes.push(c);
            self.heap.push((dist, key, slot));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if (dist, key) >= (worst.0, worst.1) {
                return;
            }
            let slot = worst.2;
            *worst = (dist, key, slot);
            self.codes[slot as usize] = c;
        } else {
            return;
        }
        if self.heap.len() == self.want {
            self.bound = self.heap.peek().map_or(u32::MAX, |w| w.0);
        }
    }

    /// The records kept, in no particular order.
    pub(crate) fn into_vec(self) -> Vec<Candidate> {
        let codes = self.codes;
        self.heap
            .into_iter()
            .map(|(d, k, slot)| (d, k, codes[slot as usize]))
            .collect()
    }
}

/// Scores codes against a query's own values: the dot product of the query
/// with each code's ±1 vector (`+1` where the bit is set), which ranks
/// candidates closer to the exact order than Hamming distance does.
pub(crate) struct Asymmetric {
    /// For byte `j` and its value `b`: the sum of ±q over its 8 components.
    table: Box<[[f32; 256]; CODE_BYTES]>,
}

impl Asymmetric {
    /// The lookup table of `q` (one entry per byte position and value).
    pub(crate) fn new(q: &[f32]) -> Asymmetric {
        let mut table = Box::new([[0f32; 256]; CODE_BYTES]);
        for (t, part) in table.iter_mut().zip(q.chunks_exact(8)) {
            t[0] = -part.iter().sum::<f32>();
            for b in 1..256usize {
                let low = b.trailing_zeros() as usize;
                t[b] = t[b & (b - 1)] + 2.0 * part[low];
            }
        }
        Asymmetric { table }
    }

    /// The score of `code`; higher is nearer.
    #[inline(always)]
    // Indexed, not zipped: opt-level "z" leaves `zip` a call.
    #[allow(clippy::needless_range_loop)]
    pub(crate) fn score(&self, code: &[u8; CODE_BYTES]) -> f32 {
        let mut s = 0f32;
        for j in 0..CODE_BYTES {
            s += self.table[j][code[j] as usize];
        }
        s
    }
}

/// Which keys a filtered search may return: ascending, looked up with a
/// cursor that moves forward while records arrive in key order (a base)
/// and falls back to a binary search when they do not (a delta).
pub(crate) struct Allowed<'a> {
    keys: &'a [u64],
    at: usize,
    last: u64,
}

impl<'a> Allowed<'a> {
    /// `keys` must be ascending.
    pub(crate) fn new(keys: &'a [u64]) -> Allowed<'a> {
        Allowed {
            keys,
            at: 0,
            last: 0,
        }
    }

    #[inline(always)]
    fn contains(&mut self, key: u64) -> bool {
        if key < self.last {
            self.at = self.keys.partition_point(|k| *k < key);
        } else {
            while self.at < self.keys.len() && self.keys[self.at] < key {
                self.at += 1;
            }
        }
        self.last = key;
        self.keys.get(self.at) == Some(&key)
    }
}

/// A query's code as six words.
pub(crate) fn words(code: &[u8; CODE_BYTES]) -> [u64; CODE_BYTES / 8] {
    let mut w = [0u64; CODE_BYTES / 8];
    for (x, c) in w.iter_mut().zip(code.chunks_exact(8)) {
        *x = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    }
    w
}

/// The little-endian word at `at` of a record.
#[inline(always)]
fn word_at(r: &[u8; RECORD], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&r[at..at + 8]);
    u64::from_le_bytes(w)
}

// Written without iterator adaptors: the size-optimised build (opt-level
// "z") does not inline them, and this loop runs once per stored vector.
#[inline(always)]
fn scan_body(
    records: &[u8],
    q: &[u64; CODE_BYTES / 8],
    mut allowed: Option<&mut Allowed<'_>>,
    out: &mut Nearest,
) {
    let mut rest = records;
    while let Some((r, tail)) = rest.split_first_chunk::<RECORD>() {
        rest = tail;
        let dist = (q[0] ^ word_at(r, 8)).count_ones()
            + (q[1] ^ word_at(r, 16)).count_ones()
            + (q[2] ^ word_at(r, 24)).count_ones()
            + (q[3] ^ word_at(r, 32)).count_ones()
            + (q[4] ^ word_at(r, 40)).count_ones()
            + (q[5] ^ word_at(r, 48)).count_ones();
        // Most records lose here, before their key is even read.
        if dist > out.bound {
            continue;
        }
        let key = word_at(r, 0);
        if let Some(a) = allowed.as_deref_mut() {
            if !a.contains(key) {
                continue;
            }
        }
        out.offer(dist, key, &r[8..]);
    }
}

/// `scan_body` compiled for CPUs with the `popcnt` instruction.
///
/// # Safety
/// The CPU must support `popcnt`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn scan_popcnt(
    records: &[u8],
    q: &[u64; CODE_BYTES / 8],
    allowed: Option<&mut Allowed<'_>>,
    out: &mut Nearest,
) {
    scan_body(records, q, allowed, out)
}

/// Offers every record in `records` (whole records only) to `out`.
pub(crate) fn scan(
    records: &[u8],
    q: &[u64; CODE_BYTES / 8],
    allowed: Option<&mut Allowed<'_>>,
    out: &mut Nearest,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU was just found to support `popcnt`.
        unsafe { scan_popcnt(records, q, allowed, out) };
        return;
    }
    scan_body(records, q, allowed, out)
}

/// Records held in memory, in arrival order; a key written twice keeps both
/// codes (the search ranks a key at its nearest code and rescoring reads
/// the current vector, so a stale code costs at most a candidate slot).
#[derive(Default)]
pub(crate) struct FlatDelta {
    records: Vec<u8>,
}

impl FlatDelta {
    /// Appends a record.
    pub(crate) fn push(&mut self, key: u64, code: &[u8; CODE_BYTES]) {
        self.records.extend_from_slice(&key.to_le_bytes());
        self.records.extend_from_slice(code);
    }

    /// Records held, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.records.len() / RECORD
    }

    /// Offers every record to `out`.
    pub(crate) fn search(
        &self,
        q: &[u64; CODE_BYTES / 8],
        allowed: Option<&mut Allowed<'_>>,
        out: &mut Nearest,
    ) {
        scan(&self.records, q, allowed, out)
    }
}

/// An immutable base file of records in key order, read with `pread`.
pub(crate) struct FlatBase {
    file: File,
    len: usize,
}

impl FlatBase {
    /// Opens a base file, checking its header and length.
    pub(crate) fn open(path: &Path) -> Result<FlatBase, FlatError> {
        let file = File::open(path)?;
        let mut head = [0u8; HEADER];
        read_at(&file, &mut head, 0)?;
        if &head[..MAGIC.len()] != MAGIC {
            return Err(FlatError::Format("bad magic"));
        }
        let n = u64::from_le_bytes(head[MAGIC.len()..].try_into().unwrap_or([0; 8]));
        let size = file.metadata()?.len();
        let want = n
            .checked_mul(RECORD as u64)
            .and_then(|b| b.checked_add(HEADER as u64));
        if want != Some(size) {
            return Err(FlatError::Format("length does not match the record count"));
        }
        let len = usize::try_from(n).map_err(|_| FlatError::Format("too many records"))?;
        Ok(FlatBase { file, len })
    }

    /// Records in the file.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Offers every record to `out`, reading the file chunk by chunk.
    pub(crate) fn search(
        &self,
        q: &[u64; CODE_BYTES / 8],
        mut allowed: Option<&mut Allowed<'_>>,
        out: &mut Nearest,
    ) -> Result<(), FlatError> {
        let mut buf = vec![0u8; CHUNK_RECORDS.min(self.len.max(1)) * RECORD];
        let mut done = 0;
        while done < self.len {
            let n = CHUNK_RECORDS.min(self.len - done);
            let chunk = &mut buf[..n * RECORD];
            read_at(&self.file, chunk, (HEADER + done * RECORD) as u64)?;
            scan(chunk, q, allowed.as_deref_mut(), out);
            done += n;
        }
        Ok(())
    }
}

/// Writes a base file of `(key, code)` records, which must come in
/// ascending key order, to `path`, fsynced. Returns the record count.
pub(crate) fn write_base<I, E>(path: &Path, records: I) -> Result<usize, E>
where
    I: IntoIterator<Item = Result<(u64, [u8; CODE_BYTES]), E>>,
    E: From<FlatError>,
{
    let file = File::create(path).map_err(FlatError::from)?;
    let mut w = std::io::BufWriter::with_capacity(CHUNK_RECORDS * RECORD, file);
    let io = |e: std::io::Error| E::from(FlatError::Io(e));
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&0u64.to_le_bytes()).map_err(io)?;
    let mut n = 0u64;
    let mut last = None;
    for r in records {
        let (key, code) = r?;
        if last.is_some_and(|l| l >= key) {
            return Err(E::from(FlatError::Format("records out of key order")));
        }
        last = Some(key);
        w.write_all(&key.to_le_bytes()).map_err(io)?;
        w.write_all(&code).map_err(io)?;
        n += 1;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    write_at(&file, &n.to_le_bytes(), MAGIC.len() as u64).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(n as usize)
}

#[cfg(unix)]
fn read_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(unix)]
fn write_at(f: &File, buf: &[u8], off: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, off)
}

#[cfg(windows)]
fn read_at(f: &File, mut buf: &mut [u8], mut off: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match f.seek_read(buf, off)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                off += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(windows)]
fn write_at(f: &File, mut buf: &[u8], mut off: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = f.seek_write(buf, off)?;
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(seed: u64) -> [u8; CODE_BYTES] {
        let mut c = [0u8; CODE_BYTES];
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for b in c.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        c
    }

    fn hamming(a: &[u8; CODE_BYTES], b: &[u8; CODE_BYTES]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    /// The `want` nearest by brute force: (distance, key), sorted.
    fn brute(
        recs: &[(u64, [u8; CODE_BYTES])],
        q: &[u8; CODE_BYTES],
        want: usize,
        keep: impl Fn(u64) -> bool,
    ) -> Vec<(u32, u64)> {
        let mut all: Vec<(u32, u64)> = recs
            .iter()
            .filter(|(k, _)| keep(*k))
            .map(|(k, c)| (hamming(c, q), *k))
            .collect();
        all.sort_unstable();
        all.truncate(want);
        all
    }

    fn sorted(n: Nearest) -> Vec<(u32, u64)> {
        let mut v: Vec<(u32, u64)> = n.into_vec().into_iter().map(|(d, k, _)| (d, k)).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn base_and_delta_find_the_nearest_codes_filtered_or_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("base.bits");
        // More records than one chunk, so the scan crosses chunk borders.
        let recs: Vec<(u64, [u8; CODE_BYTES])> = (0..(2 * CHUNK_RECORDS as u64 + 37))
            .map(|i| (i * 3 + 1, code(i)))
            .collect();
        let n = write_base::<_, FlatError>(&path, recs.iter().map(|r| Ok(*r))).expect("write");
        assert_eq!(n, recs.len());
        let base = FlatBase::open(&path).expect("open");
        assert_eq!(base.len(), recs.len());
        let mut delta = FlatDelta::default();
        // The delta in arrival order, not key order.
        for r in recs.iter().rev() {
            delta.push(r.0, &r.1);
        }
        assert_eq!(delta.len(), recs.len());
        let allowed: Vec<u64> = recs.iter().map(|r| r.0).filter(|k| k % 7 < 3).collect();
        for s in 0..20u64 {
            let qc = code(10_000 + s);
            let q = words(&qc);
            let want = 25;
            let expect = brute(&recs, &qc, want, |_| true);
            let mut out = Nearest::new(want);
            base.search(&q, None, &mut out).expect("search");
            assert_eq!(sorted(out), expect);
            let mut out = Nearest::new(want);
            delta.search(&q, None, &mut out);
            assert_eq!(sorted(out), expect);

            let expect = brute(&recs, &qc, want, |k| allowed.binary_search(&k).is_ok());
            let mut out = Nearest::new(want);
            base.search(&q, Some(&mut Allowed::new(&allowed)), &mut out)
                .expect("search");
            assert_eq!(sorted(out), expect);
            let mut out = Nearest::new(want);
            delta.search(&q, Some(&mut Allowed::new(&allowed)), &mut out);
            assert_eq!(sorted(out), expect);
        }
    }

    #[test]
    fn damaged_or_unordered_base_files_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("base.bits");
        let recs = [(5u64, code(1)), (9, code(2))];
        write_base::<_, FlatError>(&path, recs.iter().map(|r| Ok(*r))).expect("write");
        let full = std::fs::read(&path).expect("read");
        // Cut short.
        std::fs::write(&path, &full[..full.len() - 1]).expect("write");
        assert!(matches!(FlatBase::open(&path), Err(FlatError::Format(_))));
        // Wrong magic.
        let mut bad = full.clone();
        bad[0] ^= 1;
        std::fs::write(&path, &bad).expect("write");
        assert!(matches!(FlatBase::open(&path), Err(FlatError::Format(_))));
        // Keys out of order are refused while writing.
        let unordered = [(9u64, code(1)), (5, code(2))];
        let r = write_base::<_, FlatError>(&path, unordered.iter().map(|r| Ok(*r)));
        assert!(matches!(r, Err(FlatError::Format(_))));
        // An empty base is a valid file.
        write_base::<_, FlatError>(&path, std::iter::empty()).expect("write");
        let base = FlatBase::open(&path).expect("open");
        assert_eq!(base.len(), 0);
        let mut out = Nearest::new(3);
        base.search(&words(&code(3)), None, &mut out)
            .expect("search");
        assert!(out.into_vec().is_empty());
    }

    #[test]
    fn asymmetric_scores_are_the_dot_product_with_the_sign_vector() {
        let q: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0)
            .collect();
        let a = Asymmetric::new(&q);
        for s in 0..10 {
            let c = code(s);
            let want: f32 = q
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    if c[i / 8] >> (i % 8) & 1 == 1 {
                        *x
                    } else {
                        -*x
                    }
                })
                .sum();
            assert!(
                (a.score(&c) - want).abs() < 1e-3,
                "{} vs {want}",
                a.score(&c)
            );
        }
    }
}
