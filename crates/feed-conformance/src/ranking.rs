//! Comparing ranked search results with a brute-force reference, allowing
//! for float noise: equal up to reordering among near-ties.

use feed_core::EventId;

/// Two scores closer than this are treated as a tie.
pub const SCORE_TOLERANCE: f32 = 1e-5;

/// Checks that `got` is a correct top-`k` of `all` (every candidate with its
/// reference cosine, unsorted): `min(k, |all|)` distinct hits, each scored
/// like the reference, at each rank an id whose reference score is within
/// tolerance of the reference's score at that rank, and exact score ties
/// ordered by ascending id.
pub fn compare_ranked(
    all: &[(EventId, f32)],
    got: &[(EventId, f32)],
    k: usize,
) -> Result<(), String> {
    let mut want = all.to_vec();
    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(k);
    if got.len() != want.len() {
        return Err(format!(
            "{} hits, want {}\n  want: {want:?}\n  got:  {got:?}",
            got.len(),
            want.len()
        ));
    }
    for (rank, ((gid, gscore), (_, wscore))) in got.iter().zip(&want).enumerate() {
        let Some((_, ref_score)) = all.iter().find(|(id, _)| id == gid) else {
            return Err(format!(
                "rank {rank}: {gid} is not a candidate\n  want: {want:?}\n  got:  {got:?}"
            ));
        };
        if (gscore - ref_score).abs() > SCORE_TOLERANCE {
            return Err(format!(
                "rank {rank}: {gid} scored {gscore}, reference {ref_score}"
            ));
        }
        if (ref_score - wscore).abs() > SCORE_TOLERANCE {
            return Err(format!("rank {rank}: {gid} (score {ref_score}) where the reference has score {wscore}\n  want: {want:?}\n  got:  {got:?}"));
        }
    }
    for (i, w) in got.windows(2).enumerate() {
        if w[0].0 == w[1].0 || got[i + 1..].iter().any(|(id, _)| *id == w[0].0) {
            return Err(format!("{} appears twice", w[0].0));
        }
        if w[0].1 < w[1].1 - SCORE_TOLERANCE || (w[0].1 == w[1].1 && w[0].0 > w[1].0) {
            return Err(format!("ranks {i} and {} are out of order: {got:?}", i + 1));
        }
    }
    Ok(())
}

/// Recall@k of `got` against the exact top-k `want` (ids).
pub fn recall(want: &[EventId], got: &[EventId]) -> f64 {
    if want.is_empty() {
        return 1.0;
    }
    want.iter().filter(|id| got.contains(id)).count() as f64 / want.len() as f64
}
