"""DPO on tiny random-weight models: the loss as the paper writes it, and preferences learnt."""

import json
import math

import pytest
import torch

from backends import load_backend
from tests.test_train.test_sft import examples, tiny
from train.data import encode
from train.dpo import DPOConfig, dpo, dpo_loss, sequence_logprob
from train.sft import SFTConfig, sft

PAIRS = [("sky", "blue", "green"), ("grass", "green", "blue"), ("snow", "white", "black"), ("coal", "black", "white")]


def test_the_loss_equals_a_hand_computed_value():
    loss, margin, accuracy = dpo_loss(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0]),
                                      torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0]), beta=0.1)
    # pair 1: 0.1 * ((-1 + 1.5) - (-2 + 1.5)) = 0.1; pair 2: 0.1 * ((-3 + 2) - (-1 + 2)) = -0.2
    expected = (math.log1p(math.exp(-0.1)) + math.log1p(math.exp(0.2))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert margin == pytest.approx(-0.05) and accuracy == 0.5


def write_pairs(path, pairs=PAIRS, repeat=3):
    rows = [{"prompt": [{"role": "user", "content": f"color of {thing}?"}], "chosen": good, "rejected": bad}
            for thing, good, bad in pairs * repeat]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def margins(backend):
    from backends import Message

    out = []
    for thing, good, bad in PAIRS:
        prompt = [Message(role="user", content=f"color of {thing}?")]
        chosen = encode(backend, prompt + [Message(role="assistant", content=good)], 0, 256, replies_from=1)
        rejected = encode(backend, prompt + [Message(role="assistant", content=bad)], 0, 256, replies_from=1)
        with torch.no_grad():
            out.append(float(sequence_logprob(backend.loaded.model, chosen) - sequence_logprob(backend.loaded.model, rejected)))
    return out


def test_dpo_raises_the_chosen_over_rejected_margin(tmp_path):
    backend = load_backend("local", model=str(tiny(tmp_path)), precision="exact")
    before = margins(backend)
    result = dpo(backend, write_pairs(tmp_path / "pairs.jsonl"), tmp_path / "dpo",
                 DPOConfig(epochs=10, lr=5e-3, beta=0.5, holdout=0.0))
    after = margins(backend)
    assert all(a > b for a, b in zip(after, before)), (before, after)
    assert result.steps[-1].metrics["accuracy"] == 1.0 and result.steps[-1].metrics["reward_margin"] > 0
    assert result.steps[-1].loss < result.steps[0].loss


def test_dpo_from_an_sft_adapter_makes_one_self_contained_adapter(tmp_path):
    model = tiny(tmp_path)
    sft(load_backend("local", model=str(model), precision="exact"), examples(tmp_path / "sft.jsonl"), tmp_path / "sft",
        SFTConfig(epochs=5, lr=1e-2, holdout=0.0, rank=4))
    started = load_backend("local", model=str(model), precision="exact", adapter=str(tmp_path / "sft"))
    reference = margins(started)
    dpo(started, write_pairs(tmp_path / "pairs.jsonl"), tmp_path / "dpo", DPOConfig(epochs=5, lr=5e-3, beta=0.5, holdout=0.0))
    alone = load_backend("local", model=str(model), precision="exact", adapter=str(tmp_path / "dpo"))
    assert json.loads((tmp_path / "dpo" / "adapter_config.json").read_text())["rank"] == 4  # the SFT adapter, continued
    assert sum(margins(alone)) > sum(reference)


def test_bad_pairs_are_reported_with_their_line_numbers(tmp_path):
    good = {"prompt": "color of sky?", "chosen": "blue", "rejected": "green"}
    lines = [json.dumps(good), json.dumps({**good, "rejected": "blue"}), json.dumps({"prompt": "x", "chosen": "y"}),
             "[1, 2", json.dumps({**good, "prompt": [{"role": "assistant", "content": "hi"}]})]
    (tmp_path / "p.jsonl").write_text("\n".join(lines))
    result = dpo(load_backend("local", model=str(tiny(tmp_path)), precision="exact"), tmp_path / "p.jsonl", tmp_path / "a",
                 DPOConfig(holdout=0.0))
    problems = "\n".join(result.skipped)
    assert result.trained_examples == 1
    for needle in ("line 2: the chosen reply equals the rejected one", 'line 3: needs "prompt", "chosen" and "rejected"',
                   "line 4: not JSON", "line 5: an assistant message cannot follow the start"):
        assert needle in problems, (needle, problems)


def test_the_command_line_runs_dpo(tmp_path):
    from click.testing import CliRunner

    from cli import main

    result = CliRunner().invoke(main, ["train", "dpo", str(write_pairs(tmp_path / "p.jsonl")), "-o", str(tmp_path / "a"),
                                       "--model", str(tiny(tmp_path)), "--epochs", "3", "--lr", "0.005", "--beta", "0.5"])
    assert result.exit_code == 0, result.output
    assert "reward_margin" in result.output and "accuracy" in result.output and (tmp_path / "a" / "adapter.safetensors").exists()
