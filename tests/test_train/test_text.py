"""Domain tuning on plain text: packed blocks, held-out perplexity before and after, and the inputs it refuses."""

import json
import os

import pytest
from click.testing import CliRunner

from backends import load_backend
from cli import main
from tests.test_train.test_sft import tiny
from train.text import TextConfig, TextError, read_texts, train_text

FACTS = ["the sky is blue.", "the grass is green.", "snow is white and cold.", "coal is black.", "a lemon is yellow."]


def corpus(folder, repeat=40):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "colours.md").write_text(" ".join(FACTS * repeat), encoding="utf-8")
    (folder / "nested").mkdir(exist_ok=True)
    (folder / "nested" / "more.txt").write_text("\n".join(reversed(FACTS * (repeat // 2))), encoding="utf-8")
    return folder


def test_held_out_perplexity_of_a_tiny_model_drops_on_a_toy_corpus(tmp_path):
    docs = corpus(tmp_path / "docs")
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (docs / ".git").mkdir()
    (docs / ".git" / "HEAD").write_text("ref: refs/heads/main")
    backend = load_backend("local", model=str(tiny(tmp_path)), precision="exact")
    result = train_text(backend, [docs], tmp_path / "adapter", TextConfig(block=32, epochs=3, lr=1e-2, accumulate=2))
    assert result.files == 2 and result.tokens >= 2 * 32
    assert result.held_out_perplexity_after < 0.5 * result.held_out_perplexity_before
    assert result.held_out_examples >= 1 and result.trained_examples > result.held_out_examples
    assert len(result.skipped) == 1 and "logo.png: binary" in result.skipped[0]
    assert json.loads((tmp_path / "adapter" / "training.json").read_text())["kind"] == "text"
    tuned = load_backend("local", model=str(tiny(tmp_path)), precision="fast", adapter=str(tmp_path / "adapter"))
    assert tuned.model_name.endswith("+adapter")


def test_what_cannot_be_trained_on_is_named_before_training(tmp_path):
    binaries = tmp_path / "images"
    binaries.mkdir()
    (binaries / "a.bin").write_bytes(bytes(range(256)))
    with pytest.raises(TextError, match=r"no text files in .*images.*a\.bin: binary"):
        read_texts([binaries])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextError, match="no text files"):
        read_texts([tmp_path / "empty"])
    (tmp_path / "short.txt").write_text("the sky is blue.")
    backend = load_backend("local", model=str(tiny(tmp_path)), precision="exact")
    with pytest.raises(TextError, match=r"shorter than two blocks of 512 .* smaller --block"):
        train_text(backend, [tmp_path / "short.txt"], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    if hasattr(os, "symlink"):
        os.symlink(tmp_path / "short.txt", binaries / "link.txt")
        _, skipped = read_texts([binaries, tmp_path / "short.txt"])
        assert any("link.txt: a symbolic link" in s for s in skipped)


def test_the_command_line_reports_perplexity_and_refuses_a_folder_without_text(tmp_path):
    model, docs = tiny(tmp_path), corpus(tmp_path / "docs", repeat=20)
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "text", str(docs), "-o", str(tmp_path / "ad"), "--model", str(model),
                                   "--block", "32", "--lr", "0.01", "--epochs", "2"])
    assert trained.exit_code == 0, trained.output
    assert "held-out perplexity" in trained.output and "2 files" in trained.output and "blocks" in trained.output
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "x.dat").write_bytes(b"\0\1\2")
    refused = runner.invoke(main, ["train", "text", str(tmp_path / "bin"), "-o", str(tmp_path / "ad2"), "--model", str(model)])
    assert refused.exit_code == 1 and "no text files" in refused.output and "x.dat: binary" in refused.output
    assert not (tmp_path / "ad2").exists()
