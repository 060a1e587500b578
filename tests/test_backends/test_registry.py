import sys
import textwrap

import pytest

from backends import BackendError, UnknownBackendError, available_backends, load_backend


def install_plugin(tmp_path, monkeypatch, module_source, target):
    """A tiny distribution on sys.path whose entry point registers a backend."""
    (tmp_path / "tiny_backend.py").write_text(textwrap.dedent(module_source))
    dist = tmp_path / "tiny_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[tokentrail.backends]\ntiny = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tiny_backend", raising=False)


PLUGIN = """
from backends.scripted import ScriptedBackend

class TinyBackend(ScriptedBackend):
    name = "tiny"

    def __init__(self, greeting="hello from tiny"):
        super().__init__(replies=[greeting])
"""


def test_entry_point_backend_is_found(tmp_path, monkeypatch):
    from backends import GenerationRequest, Message

    install_plugin(tmp_path, monkeypatch, PLUGIN, "tiny_backend:TinyBackend")
    assert "tiny" in available_backends()
    backend = load_backend("tiny", greeting="hi there")
    assert backend.name == "tiny"
    reply = backend.generate(GenerationRequest(messages=[Message(role="user", content="?")]))
    assert reply.text == "hi there"


def test_unknown_backend_lists_known_ones():
    with pytest.raises(UnknownBackendError, match="known backends: .*local.*scripted"):
        load_backend("no-such-backend")


def test_broken_plugin_says_so(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "raise ImportError('missing dep')", "tiny_backend:TinyBackend")
    with pytest.raises(BackendError, match="'tiny'.*failed to import: missing dep"):
        load_backend("tiny")


def test_plugin_that_is_not_a_backend(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "class NotABackend:\n    pass\n", "tiny_backend:NotABackend")
    with pytest.raises(BackendError, match="lacks the Backend methods"):
        load_backend("tiny")


def test_bad_options_are_named():
    with pytest.raises(BackendError, match="rejected its options \\['colour'\\]"):
        load_backend("scripted", colour="blue")
