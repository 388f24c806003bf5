//! Synthetic vectors shaped like sentence embeddings, for benchmarks and
//! recall checks; and real short texts ([`fortunes`]) for data sets.

use crate::model::{Embedding, EMBEDDING_DIM};
use crate::rng::Rng;

/// Latent dimensions of [`EmbeddingLike`]'s vectors.
const LATENT: usize = 24;
/// Topic clusters of [`EmbeddingLike`].
const TOPICS: usize = 200;

/// Draws vectors shaped like sentence embeddings: a point near one of 200
/// topic centres in a 24-dimensional latent space, mapped into 384
/// dimensions by a fixed random matrix, plus a little isotropic noise,
/// normalised. (Uniform random 384-d vectors have no neighbourhoods at all
/// — every point is nearly orthogonal to every other — so no approximate
/// index, and no quantisation, can rank them; real embeddings are nothing
/// like that.)
pub struct EmbeddingLike {
    rng: Rng,
    basis: Vec<f32>,
    topics: Vec<[f32; LATENT]>,
}

impl EmbeddingLike {
    /// A fixed-seed source.
    pub fn new(seed: u64) -> EmbeddingLike {
        let mut rng = Rng::new(seed);
        let basis = (0..EMBEDDING_DIM * LATENT).map(|_| rng.unit()).collect();
        let topics = (0..TOPICS)
            .map(|_| std::array::from_fn(|_| rng.unit()))
            .collect();
        EmbeddingLike { rng, basis, topics }
    }

    /// The next vector.
    pub fn next_vector(&mut self) -> Embedding {
        let t = self.topics[self.rng.below(TOPICS)];
        let z: Vec<f32> = t.iter().map(|c| c + 0.5 * self.rng.unit()).collect();
        let mut v: Vec<f32> = self
            .basis
            .chunks_exact(LATENT)
            .map(|row| row.iter().zip(&z).map(|(a, b)| a * b).sum())
            .collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        for x in &mut v {
            *x = *x / norm + 0.02 * self.rng.unit();
        }
        Embedding::new(v).unwrap_or_else(|_| unreachable!("finite, not all zero"))
    }
}

/// Every text of Debian's `fortunes` packages (`/usr/share/games/fortunes`),
/// trimmed, in file order; empty when they are not installed.
pub fn fortunes() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/usr/share/games/fortunes") else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_none())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        out.extend(
            text.split("\n%\n")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        );
    }
    out
}
