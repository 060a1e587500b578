"""A killed writer leaves whole documents only; two writers at once both succeed."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memory import Memory

ROOT = Path(__file__).resolve().parents[2]
INGEST = ("import sys; from memory import Memory; "
          "Memory(sys.argv[1], embedder=None, chunk_tokens=50, overlap=10).add_path(sys.argv[2])")


def make_folder(folder: Path, files: int, words: int, tag: str) -> None:
    folder.mkdir(parents=True)
    for i in range(files):
        (folder / f"{tag}{i:04}.txt").write_text(" ".join(f"{tag}{i}w{j}" for j in range(words)))


def run_ingest(db: Path, folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", INGEST, str(db), str(folder)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def committed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_ingest_leaves_only_whole_documents(tmp_path):
    make_folder(tmp_path / "docs", files=400, words=3000, tag="d")
    db = tmp_path / "m.db"
    process = run_ingest(db, tmp_path / "docs")
    deadline = time.time() + 60
    while committed(db) < 5 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')")  # raises if the index is off
    documents = conn.execute("SELECT id, chunk_count FROM documents").fetchall()
    assert 5 <= len(documents) < 400, "the kill should land mid-folder"
    for doc_id, chunk_count in documents:
        assert conn.execute("SELECT count(*) FROM chunks WHERE document_id = ?", [doc_id]).fetchone()[0] == chunk_count
    assert conn.execute("SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)").fetchone()[0] == 0
    conn.close()
    with Memory(db, embedder=None, chunk_tokens=50, overlap=10) as m:  # and it opens and resumes fine
        report = m.add_path(tmp_path / "docs")
        assert len(report.unchanged) == len(documents) and len(report.added) == 400 - len(documents)


def test_two_writers_at_once(tmp_path):
    make_folder(tmp_path / "a", files=60, words=400, tag="a")
    make_folder(tmp_path / "b", files=60, words=400, tag="b")
    db = tmp_path / "m.db"
    Memory(db, embedder=None).close()
    writers = [run_ingest(db, tmp_path / "a"), run_ingest(db, tmp_path / "b")]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
        assert b"locked" not in err
    assert committed(db) == 120


@pytest.mark.parametrize("content", [b"", b"SQLite format 3\x00" + b"\xff" * 200])
def test_truncated_or_damaged_file(tmp_path, content):
    from memory import MemoryStoreError

    path = tmp_path / "m.db"
    path.write_bytes(content)
    if content:
        with pytest.raises(MemoryStoreError, match="m.db"):
            Memory(path, embedder=None)
    else:
        Memory(path, embedder=None).close()  # an empty file is a new database
