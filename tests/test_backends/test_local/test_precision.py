"""Fast mode on the tiny models: weights stay quantized, logits stay close to exact mode."""

import pytest
import torch

from backends import BackendError, GenerationRequest, Message, SamplingParams, load_backend
from backends.local import cpu_kernels, loader
from backends.local.block_linear import BlockInt4Linear, BlockInt5Linear, BlockInt8Linear
from backends.local.loader import load_model
from backends.local.model import PREFILL_CHUNK
from backends.local.quant import int4_kernel_is_fast
from backends.local.quant_layers import DenseLinear, GGUFRows, Int4Linear, Int8Linear, OutputHead
from tests.fixtures.tiny_models import (
    GGMLQuantizationType as QT,
)
from tests.fixtures.tiny_models import (
    random_weights,
    tiny_config,
    tiny_tokenizer,
    write_gguf,
    write_hf_folder,
)

IDS = [5, 17, 100, 3, 250, 42, 7, 9, 11, 13, 200, 64]


def whole_chunks(prompt_tokens: int) -> int:
    """What a prompt met again reuses: its prefill chunks that are whole, never its last token."""
    return (prompt_tokens - 1) // PREFILL_CHUNK * PREFILL_CHUNK


def logits(loaded):
    with torch.inference_mode():
        return loaded.model(torch.tensor([IDS]))[0]


def body_logits(loaded):
    """Logits with every row of the head refined: the rough head only ranks, so this leaves the body's error."""
    if isinstance(loaded.model.output, OutputHead):
        loaded.model.output.k = loaded.config.vocab_size
    return logits(loaded)


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture(params=["torch", "tokentrail"])
def kernels(request, monkeypatch):
    """Runs a test on torch's kernels and on ours; gives the (int4, int8) layer classes fast mode makes."""
    if request.param == "tokentrail" and not cpu_kernels.available():
        pytest.skip("our CPU kernels do not run here")
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", request.param)
    if request.param == "tokentrail":
        return BlockInt4Linear, BlockInt8Linear
    return Int4Linear if int4_kernel_is_fast() else Int8Linear, Int8Linear


def tiny_gguf(tmp_path, family, quant):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config(family, tokenizer.get_vocab_size(with_added_tokens=True))
    return write_gguf(tmp_path / f"{family}.gguf", cfg, random_weights(cfg), tokenizer, quant=quant)


@pytest.mark.parametrize("quant", [QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0])
@pytest.mark.parametrize("family", ["qwen2", "llama", "qwen3", "gemma3", "phi3"])
def test_fast_mode_keeps_weights_quantized_and_logits_close(tmp_path, family, quant, kernels):
    path = tiny_gguf(tmp_path, family, quant)
    exact, fast = load_model(path), load_model(path, precision="fast")
    assert fast.precision == "fast"
    layer = fast.model.layers[0]
    int4, int8 = kernels
    kind = int4 if quant in (QT.Q4_0, QT.Q4_1) else int8
    if int4 is BlockInt4Linear and quant in (QT.Q5_0, QT.Q5_1):
        kind = BlockInt5Linear  # the file's blocks as they are
    for module in (layer.attention.wqkv, layer.attention.wo, layer.feed_forward.w13, layer.feed_forward.w2):
        assert isinstance(module, kind), (module, quant)
    assert isinstance(fast.model.output, OutputHead)  # a rough int4 ranking whatever the type, then exact top rows
    head = int4 if int4 is BlockInt4Linear or fast.config.vocab_size % 16 == 0 else Int8Linear
    assert isinstance(fast.model.output.matmul, head)
    assert isinstance(fast.model.output.exact_rows, GGUFRows)
    assert isinstance(fast.model.tok_embeddings, GGUFRows)  # embeddings as exact as in exact mode
    if fast.config.tie_embeddings:  # one copy of the file's rows serves the lookup and the head
        assert fast.model.tok_embeddings is fast.model.output.exact_rows
    assert logits(fast).argmax(-1).eq(logits(exact).argmax(-1)).float().mean() >= 0.9
    error = relative(body_logits(fast), logits(exact))
    assert error < 0.03, f"{quant.name}: relative logit error {error:.4f}"


def test_our_layers_normalize_as_they_quantize_and_give_the_same_logits(tmp_path, monkeypatch):
    if not cpu_kernels.available():
        pytest.skip("our CPU kernels do not run here")
    monkeypatch.setenv("TOKENTRAIL_CPU_KERNELS", "tokentrail")
    path = tiny_gguf(tmp_path, "qwen2", QT.Q4_0)
    fast = load_model(path, precision="fast")
    assert fast.model.layers[0].attention.wqkv.takes_norm and fast.model.layers[0].feed_forward.w13.takes_norm
    fused = body_logits(fast)
    for kind in (BlockInt4Linear, BlockInt5Linear, BlockInt8Linear):
        monkeypatch.setattr(kind, "takes_norm", False)  # the norm as its own ops, then the matmul
    assert relative(fused, body_logits(fast)) < 1e-4


def test_mixed_types_in_one_fused_projection(tmp_path, kernels):
    def mix(name):  # as llama.cpp's Q4_K_M does: some tensors of a layer at higher precision
        return QT.Q8_0 if name.endswith(("attn_v.weight", "ffn_up.weight")) else QT.Q4_0

    path = tiny_gguf(tmp_path, "qwen2", mix)
    fast = load_model(path, precision="fast")
    int4, int8 = kernels
    wqkv = fast.model.layers[0].attention.wqkv  # q and k (int4, one matmul) beside v (int8)
    assert [type(part) for part in wqkv.parts] == [int4, int8]
    assert [part.out_features for part in wqkv.parts] == [fast.config.dim + fast.config.n_kv_heads * fast.config.head_dim,
                                                          fast.config.n_kv_heads * fast.config.head_dim]
    assert isinstance(fast.model.layers[0].attention.wo, int4)
    assert relative(body_logits(fast), logits(load_model(path))) < 0.03


def test_float_weights_stay_float_unless_quantization_is_asked_for(tiny_models, kernels):
    folder, _, _ = tiny_models["llama"]
    exact = logits(load_model(folder))
    fast = load_model(folder, precision="fast")
    assert isinstance(fast.model.layers[0].feed_forward.w2, DenseLinear)
    assert torch.allclose(logits(fast), exact, atol=1e-5)
    int4, int8 = kernels
    for precision, kind in (("int8", int8), ("int4", int4)):
        loaded = load_model(folder, precision=precision)
        assert isinstance(loaded.model.layers[0].feed_forward.w2, kind)
        assert isinstance(loaded.model.output, OutputHead) and loaded.model.output.exact_rows is None
        assert relative(logits(loaded), exact) < (0.02 if precision == "int8" else 0.2), precision  # 4 bits: ~10%


def test_unknown_precision_lists_the_choices(tiny_models):
    _, gguf, _ = tiny_models["qwen2"]
    with pytest.raises(ValueError, match="precision 'int3' is unknown; choose one of exact, fast, int8, int4"):
        load_model(gguf, precision="int3")
    with pytest.raises(ValueError, match="choose one of exact, fast, int8, int4"):
        load_backend("local", model=str(gguf), precision="half")


def test_a_cpu_without_avx2_runs_exact_with_a_warning(tiny_models, monkeypatch):
    _, gguf, _ = tiny_models["qwen2"]
    monkeypatch.setattr(loader.torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    with pytest.warns(RuntimeWarning, match="needs a CPU with AVX2 or AVX-512 .*DEFAULT.*running exact"):
        loaded = load_model(gguf, precision="fast")
    assert loaded.precision == "exact"
    assert isinstance(loaded.model.layers[0].feed_forward.w2, DenseLinear)


def test_bad_quantized_bytes_are_a_clear_error(tmp_path):
    path = tiny_gguf(tmp_path, "qwen2", QT.Q4_0)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) - 100]))
    with pytest.raises(BackendError, match=r"qwen2.gguf: tensor \S+'s data \(\d+ bytes at \d+\) runs past the end of the file"):
        load_backend("local", model=str(path), precision="fast")


def chat(backend, *turns, max_tokens=4):
    messages = [Message(role="system", content="You are terse. " * 8)]
    for turn in turns:
        messages.append(Message(role="user", content=turn))
    request = GenerationRequest(messages=messages, sampling=SamplingParams(temperature=0, max_tokens=max_tokens))
    return backend.generate(request)


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_a_shared_prefix_is_not_computed_again(tmp_path, precision):
    path = tiny_gguf(tmp_path, "qwen2", QT.Q4_0)
    warm = load_backend("local", model=str(path), precision=precision)
    first = chat(warm, "hello world")
    assert first.usage.cached_prompt_tokens == 0
    second = chat(warm, "hello tokens")  # same system prompt, another question
    assert 10 < second.usage.cached_prompt_tokens < second.usage.prompt_tokens
    cold = load_backend("local", model=str(path), precision=precision)
    assert chat(cold, "hello tokens").token_ids == second.token_ids  # reuse changes nothing
    again = chat(warm, "hello tokens")
    assert again.usage.cached_prompt_tokens == whole_chunks(again.usage.prompt_tokens)
    assert again.token_ids == second.token_ids


def test_beam_search_and_logits_overwrite_the_cache_and_the_prompt_comes_back(tmp_path):
    path = tiny_gguf(tmp_path, "llama", QT.Q8_0)
    backend = load_backend("local", model=str(path))
    reference = load_backend("local", model=str(path))
    chat(backend, "the quick brown fox")
    messages = [Message(role="user", content="the quick brown fox")]
    beam = SamplingParams(temperature=0, max_tokens=5, beam_width=3)
    assert backend.generate(GenerationRequest(messages=messages, sampling=beam)).token_ids == \
        reference.generate(GenerationRequest(messages=messages, sampling=beam)).token_ids
    after_beam = chat(backend, "the quick brown fox")
    # the beams overwrote the cache rows; the chat's keys and values come back from their copy
    assert after_beam.usage.cached_prompt_tokens == whole_chunks(after_beam.usage.prompt_tokens)
    assert after_beam.token_ids == chat(reference, "the quick brown fox").token_ids
    assert torch.allclose(backend.logits(IDS), reference.logits(IDS), atol=1e-5)
    again = chat(backend, "the quick brown fox")  # logits() wrote other tokens over it: back again
    assert again.usage.cached_prompt_tokens == whole_chunks(again.usage.prompt_tokens) and again.token_ids == after_beam.token_ids


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_prompts_taking_turns_each_find_their_prefix_again(tmp_path, precision):
    path = tiny_gguf(tmp_path, "qwen2", QT.Q4_0)
    backend = load_backend("local", model=str(path), precision=precision)
    cold = load_backend("local", model=str(path), precision=precision)
    plan, act = ("Plan the task. " * 5, "Act on the plan. " * 5)  # an agent's alternating prompts
    first_plan, first_act = chat(backend, plan), chat(backend, act)
    assert first_act.usage.cached_prompt_tokens < first_act.usage.prompt_tokens - 50  # only the system prompt is shared
    second_plan, second_act = chat(backend, plan), chat(backend, act)
    for second in (second_plan, second_act):
        assert second.usage.cached_prompt_tokens == whole_chunks(second.usage.prompt_tokens)
    assert second_plan.token_ids == first_plan.token_ids == chat(cold, plan).token_ids
    assert second_act.token_ids == first_act.token_ids


def test_the_copies_of_earlier_prompts_stay_within_their_budget():
    from backends.local.prefix_cache import PrefixSnapshots

    def kv(n):
        return [(torch.zeros(1, 2, n, 4), torch.zeros(1, 2, n, 4))]  # 64 bytes a token

    snapshots = PrefixSnapshots(budget_bytes=64 * 100)
    snapshots.save(list(range(40)), kv(40))
    snapshots.save(list(range(50)), kv(50))  # extends the first: replaces it
    assert [len(e.tokens) for e in snapshots.entries] == [50]
    snapshots.save(list(range(100, 160)), kv(60))  # over budget together: the least recently used goes
    assert [len(e.tokens) for e in snapshots.entries] == [60]
    snapshots.save(list(range(10)), kv(10))  # too short to be worth keeping
    assert snapshots.best(list(range(100, 130)))[1] == 29 and snapshots.best([7, 8, 9]) is None


def test_a_longer_request_grows_the_cache_and_keeps_the_prefix(tmp_path):
    path = tiny_gguf(tmp_path, "qwen2", QT.Q4_1)
    backend, reference = load_backend("local", model=str(path)), load_backend("local", model=str(path))
    chat(backend, "hi", max_tokens=1)
    longer = chat(backend, "hi", "and now a much longer question about foxes and dogs", max_tokens=30)
    assert longer.usage.cached_prompt_tokens > 0
    assert longer.token_ids == chat(reference, "hi", "and now a much longer question about foxes and dogs",
                                    max_tokens=30).token_ids


def test_hf_folder_int8_loads_through_the_backend(tmp_path):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("mistral", tokenizer.get_vocab_size(with_added_tokens=True))
    folder = write_hf_folder(tmp_path / "m", cfg, random_weights(cfg), tokenizer)
    backend = load_backend("local", model=str(folder), precision="int8")
    assert backend.loaded.precision == "int8" and backend.loaded.summary.counts()["int8"] > 0
    assert chat(backend, "hello").finish_reason in ("length", "eos")
