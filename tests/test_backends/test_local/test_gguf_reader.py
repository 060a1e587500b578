"""Our GGUF reader reads what the `gguf` package reads, and refuses bytes that lie about their size."""

import struct

import numpy as np
import pytest
from gguf import GGUFReader

from backends.local.config import ModelLoadError
from backends.local.gguf_reader import GGUFFile
from tests.fixtures.tiny_models import GGMLQuantizationType as QT
from tests.fixtures.tiny_models import random_weights, tiny_config, tiny_tokenizer, write_gguf


@pytest.fixture(scope="module")
def mixed_gguf(tmp_path_factory):
    tokenizer = tiny_tokenizer()
    cfg = tiny_config("llama", tokenizer.get_vocab_size(with_added_tokens=True))
    kinds = iter([QT.Q4_0, QT.Q8_0, QT.Q5_1, None, QT.F16])
    path = tmp_path_factory.mktemp("reader") / "mixed.gguf"
    return write_gguf(path, cfg, random_weights(cfg), tokenizer, quant=lambda name: next(kinds, QT.Q4_1))


def test_metadata_and_tensors_match_the_gguf_package(mixed_gguf):
    ours, theirs = GGUFFile(mixed_gguf), GGUFReader(mixed_gguf)
    assert set(ours.fields) == {k for k in theirs.fields if not k.startswith("GGUF.")}
    for key, value in ours.fields.items():
        expected = theirs.get_field(key).contents()
        if isinstance(value, np.ndarray):
            assert value.tolist() == list(expected), key
        else:
            assert value == expected, key
    assert [t.name for t in theirs.tensors] == list(ours.tensors)
    for tensor in theirs.tensors:
        info = ours.tensors[tensor.name]
        assert info.type == tensor.tensor_type and info.shape == tuple(int(d) for d in reversed(tensor.shape))
        assert ours.raw(info).tobytes() == np.asarray(tensor.data).tobytes(), tensor.name


def _header(n_tensors: int, n_fields: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_fields)


def _string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


@pytest.mark.parametrize("body, problem", [
    (_header(0, 1) + struct.pack("<Q", 2**40) + b"key", "truncated or corrupt"),  # a string longer than the file
    (_header(0, 1) + _string("k") + struct.pack("<IIQ", 9, 8, 2**50), "truncated or corrupt"),  # a huge string array
    (_header(0, 1) + _string("k") + struct.pack("<I", 99), "unsupported value type 99"),
    (_header(1, 0) + _string("t") + struct.pack("<I", 9) + b"\0" * 80, "has 9 dimensions"),
    (_header(1, 0) + _string("t") + struct.pack("<IQIQ", 1, 64, 999, 0), "unknown type"),
    (_header(1, 0) + _string("t") + struct.pack("<IQIQ", 1, 2**40, 0, 0), "tensor t's data .* runs past the end"),
    (_header(1, 0) + _string("t") + struct.pack("<IQIQ", 1, 30, 2, 0), "do not fill Q4_0 blocks of 32"),
    (b"GGUF" + struct.pack("<I", 7) + b"\0" * 16, "GGUF version 7 is not supported"),
    (b"", "empty or truncated"),
])
def test_lying_headers_are_clear_errors(tmp_path, body, problem):
    path = tmp_path / "bad.gguf"
    path.write_bytes(body)
    with pytest.raises(ModelLoadError, match=f"bad.gguf: .*{problem}"):
        GGUFFile(path)
