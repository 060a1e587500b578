"""Writes the goldens under tests/, with transformers and sentence-transformers as references.

Run once by a developer (CI never runs it):
    .venv/bin/pip install -e ".[goldens]" && .venv/bin/python scripts/make_goldens.py
transformers loads the same GGUF and dequantizes it with the same `gguf` package.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.local.model_cache import pull  # noqa: E402
from tests.fixtures.tiny_models import build  # noqa: E402

TINY_FAMILIES = ["llama", "qwen2", "mistral", "llama3.2", "qwen3", "gemma3", "phi3", "phi3.5", "gemma3-4b"]
TINY_IDS = [5, 17, 100, 3, 250, 42, 7, 300, 1, 2, 64, 128, 9, 77, 201, 33]

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a terse assistant. Answer in one sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
    [
        {"role": "user", "content": "Write a Python function that reverses a string."},
        {"role": "assistant", "content": "def reverse(s):\n    return s[::-1]"},
        {"role": "user", "content": "Now make it handle None, and explain in 2 lines."},
    ],
]

TOKENIZER_CORPUS = [
    "Hello, world!",
    "def f(x):\n    return x ** 2  # square\n\n\n",
    "    leading spaces and\ttabs\t\tand trailing   ",
    "Unicode: naïve café, Straße, Ελληνικά, русский, 日本語のテキスト, 한국어",
    "Emoji: 😀👍🏽👨‍👩‍👧‍👦🇫🇷 and a lone \u200d joiner",
    "Numbers 1234567890 3.14159 -42 1e-5 0x1F",
    "<|im_start|>user\nspecial tokens inline<|im_end|>\n<|endoftext|>",
    "URLs https://example.com/a?b=c&d=e#frag and emails a.b@c.de",
    "Mixed\r\nline\rendings\n\n\n\nand     runs          of spaces",
    "JSON: {\"key\": [1, 2, {\"nested\": null}], \"ok\": true}",
    "",
]
CONTINUATION = 32
COLUMNS = 512


def tiny_goldens(tmp: Path) -> None:
    """Logits of tiny random models (llama3 RoPE scaling, Qwen2 bias + tied head, Mistral head_dim)."""
    out: dict[str, np.ndarray] = {"ids": np.array(TINY_IDS, dtype=np.int64)}
    for family in TINY_FAMILIES:
        folder, _, _ = build(tmp, family)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        with torch.no_grad():
            out[family] = model(torch.tensor([TINY_IDS])).logits[0].numpy().astype(np.float32)
        weights = sum(float(p.double().sum()) for p in model.parameters())
        out[f"{family}_weight_sum"] = np.array(weights)
    target = ROOT / "tests" / "test_backends" / "goldens" / "tiny.npz"
    np.savez_compressed(target, **out)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


EMBEDDING_SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "Straße, naïve café, 日本語のテキスト, emoji 😀👍🏽",
    "SQLite's FTS5 extension ranks matches with BM25.",
    "",
    "word " * 400,  # longer than the 256-token window: truncated the same way
]


def embedding_goldens() -> None:
    """all-MiniLM-L6-v2 through sentence-transformers, the reference for our BERT encoder."""
    from sentence_transformers import SentenceTransformer

    folder = pull("minilm")
    model = SentenceTransformer(str(folder), device="cpu")
    vectors = model.encode(EMBEDDING_SENTENCES, normalize_embeddings=True).astype(np.float32)
    target = ROOT / "tests" / "test_backends" / "goldens" / "minilm.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, vectors=vectors, sentences=np.array(json.dumps(EMBEDDING_SENTENCES)))
    print(f"wrote {target} ({target.stat().st_size} bytes)")


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tiny_goldens(Path(tmp))
    if sys.argv[1:] == ["--tiny"]:  # the tiny models' logits only: no sentence-transformers, no SmolLM2
        return
    embedding_goldens()
    gguf = pull("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    columns = np.random.default_rng(0).choice(model.config.vocab_size, COLUMNS, replace=False)
    out: dict[str, np.ndarray] = {"columns": columns}
    meta = {"conversations": CONVERSATIONS, "corpus": TOKENIZER_CORPUS, "transformers_prompts": []}
    for i, conversation in enumerate(CONVERSATIONS):
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        meta["transformers_prompts"].append(text)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
            generated = model.generate(
                torch.tensor([ids]), max_new_tokens=CONTINUATION, do_sample=False, min_new_tokens=CONTINUATION
            )[0, len(ids):].numpy()
        out[f"prompt{i}_ids"] = np.array(ids, dtype=np.int64)
        out[f"prompt{i}_logits_columns"] = logits[:, columns].astype(np.float32)
        out[f"prompt{i}_logits_last"] = logits[-1].astype(np.float32)
        out[f"prompt{i}_greedy"] = generated.astype(np.int64)
        print(f"prompt {i}: {len(ids)} tokens; greedy: {tokenizer.decode(generated)!r}")
    for i, text in enumerate(TOKENIZER_CORPUS):
        out[f"corpus{i}_ids"] = np.array(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    out["meta"] = np.array(json.dumps(meta))
    target = ROOT / "tests" / "test_backends" / "goldens" / "smollm2.npz"
    np.savez_compressed(target, **out)
    print(f"wrote {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
