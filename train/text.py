"""Domain tuning: a LoRA adapter trained with the next-token loss on plain text (a project's docs, a
field's papers), packed into blocks, with the held-out blocks' perplexity before and after.

Files are read as untrusted: symbolic links and hidden paths are not followed, a file that is not
UTF-8 text (a NUL byte, bytes that do not decode) is named and left out, and one over MAX_FILE_BYTES too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from pydantic import Field

from backends.local import lora
from backends.local.backend import LocalBackend
from train.data import Encoded
from train.loop import Step, TrainConfig, training
from train.sft import TrainResult, check_exact, nll, train_adapter

MAX_FILE_BYTES = 64 * 2**20


class TextConfig(TrainConfig):
    block: int = Field(512, ge=16, description="tokens per training block")


class TextResult(TrainResult):
    files: int
    tokens: int
    held_out_perplexity_before: float
    held_out_perplexity_after: float


class TextError(ValueError):
    """The text cannot be trained on (no text files, too short); says which and what to do."""


def _files(sources: Iterable[Path], skipped: list[str]) -> list[Path]:
    found: list[Path] = []
    for source in sources:
        if source.is_symlink() or not source.exists():
            raise TextError(f"{source}: no such file or folder (symbolic links are not followed)")
        if source.is_file():
            found.append(source)
            continue
        for path in sorted(source.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(source).parts)
            if path.is_symlink():
                skipped.append(f"{path}: a symbolic link, not followed")
            elif path.is_file() and not hidden:
                found.append(path)
    return found


def read_texts(sources: Sequence[Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, text) of every text file under `sources`, and what was left out and why."""
    skipped: list[str] = []
    texts = []
    for path in _files(sources, skipped):
        if path.stat().st_size > MAX_FILE_BYTES:
            skipped.append(f"{path}: over {MAX_FILE_BYTES // 2**20} MiB")
            continue
        data = path.read_bytes()
        try:
            if b"\0" in data:
                raise UnicodeDecodeError("utf-8", data, data.index(b"\0"), data.index(b"\0") + 1, "a NUL byte")
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            skipped.append(f"{path}: binary, not UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        if text.strip():
            texts.append((path, text))
        else:
            skipped.append(f"{path}: empty")
    if not texts:
        left = f" (left out: {'; '.join(skipped[:5])}{' …' if len(skipped) > 5 else ''})" if skipped else ""
        raise TextError(f"no text files in {', '.join(map(str, sources))}{left}; give UTF-8 text files (.txt, .md, …)")
    return texts, skipped


def pack(backend: LocalBackend, texts: Sequence[tuple[Path, str]], block: int) -> tuple[list[Encoded], int]:
    """Blocks of `block` tokens from the texts one after another, each ended by the end-of-text token; the
    last partial block is dropped. Returns (blocks, tokens in all)."""
    tokenizer, ids = backend.tokenizer, []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for _, text in texts:
        ids += tokenizer.encode(text, add_special_tokens=True) + eos
    if len(ids) < 2 * block:
        raise TextError(f"the text is {len(ids)} tokens: shorter than two blocks of {block} (one to train on, one "
                        f"held out); give more text or a smaller --block")
    blocks = [Encoded(ids=ids[i : i + block], trained=[True] * block, line=i // block)
              for i in range(0, len(ids) - block + 1, block)]
    return blocks, len(ids)


def perplexity(model: torch.nn.Module, blocks: Sequence[Encoded]) -> float:
    with torch.no_grad():
        total, count = nll(model, blocks)
    return math.exp(float(total) / max(count, 1))


def train_text(backend: LocalBackend, sources: Sequence[Path], out: Path, config: TextConfig | None = None,
               on_step: Callable[[Step, int], None] | None = None) -> TextResult:
    """Trains a LoRA adapter on the text files in `sources` (files or folders) and saves it in `out`."""
    config = config or TextConfig()
    check_exact(backend)
    texts, skipped = read_texts(sources)
    blocks, tokens = pack(backend, texts, config.block)
    if backend.context_window < config.block:
        raise TextError(f"--block {config.block} is over the model's context window of {backend.context_window}")
    order = random.Random(config.seed).sample(blocks, len(blocks))
    held = order[: max(1, int(len(order) * config.holdout))]
    train = order[len(held):]
    model = backend.loaded.model
    torch.manual_seed(config.seed)
    params = lora.attach(model, config.lora())  # starts as the base model: its update is zero
    with training(model):  # full blocks, without the KV cache
        before = perplexity(model, held)

    def batch_loss(batch: Sequence[Encoded]) -> tuple[torch.Tensor, int, int, dict[str, float]]:
        total, count = nll(model, batch)
        return total / max(count, 1), count, sum(len(b.ids) for b in batch), {}

    def evaluate() -> float:
        total, count = nll(model, held)
        return float(total) / max(count, 1)

    data = ", ".join(map(str, sources))
    result = train_adapter(backend, "text", data, out, config, params, train, held, batch_loss, evaluate, skipped,
                           on_step)
    after = math.exp(result.steps[-1].held_out_loss)
    return TextResult(**result.model_dump(), files=len(texts), tokens=tokens, held_out_perplexity_before=before,
                      held_out_perplexity_after=after)
