"""File tools confined to a workspace folder. The model names paths; none may leave the root."""

from __future__ import annotations

import os
from pathlib import Path

import regex

MAX_READ_BYTES = 256 * 1024
MAX_WRITE_BYTES = 1024 * 1024
MAX_LISTED = 500
MAX_MATCHES = 200
MAX_CHOICES = 64  # paths offered to the model as an enum; a bigger workspace leaves them free
SEARCH_TIMEOUT = 2.0  # seconds for each file's regex search, against catastrophic backtracking


class WorkspaceError(ValueError):
    pass


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def resolve(self, path: str) -> Path:
        """The real location of `path` inside the root; refuses anything that would leave it."""
        if "\x00" in path:
            raise WorkspaceError("paths must not contain NUL characters")
        given = Path(path)
        if given.is_absolute() or path.startswith("~"):
            raise WorkspaceError(f"'{path}' is absolute; use a path relative to the workspace")
        if ".." in given.parts:
            raise WorkspaceError(f"'{path}' steps outside the workspace with '..'")
        target = (self.root / given).resolve()  # follows symlinks
        if target != self.root and self.root not in target.parents:
            raise WorkspaceError(f"'{path}' leads outside the workspace (through a symlink)")
        return target

    def display(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def paths(self, limit: int = MAX_CHOICES) -> tuple[list[str], list[str]] | None:
        """Every folder and every file in the workspace, or None when they number more than `limit`.

        Offered to a model as the only values a path may take, so the list is complete or absent:
        a symlinked folder (whose contents are reachable under a second name) also gives None.
        """
        folders, files = ["."], []
        for dirpath, dirnames, filenames in os.walk(self.root):
            if len(folders) + len(dirnames) + len(files) + len(filenames) > limit:
                return None  # before resolving a big folder's every name, on every schema request
            dirnames.sort()
            for name in dirnames:
                if (Path(dirpath) / name).is_symlink():
                    return None
                folders.append(self.display(Path(dirpath) / name))
            for name in sorted(filenames):
                path = self.display(Path(dirpath) / name)
                try:
                    self.resolve(path)
                except WorkspaceError:
                    continue  # a symlink that points outside cannot be read
                files.append(path)
        return folders, files


def _is_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def file_tools(workspace: Workspace) -> list:
    """list_files, read_file, search_files and write_file on `workspace`, as plain functions."""
    def list_files(path: str = ".") -> str:
        """List the files and folders at a path in the workspace.

        Args:
            path: A folder relative to the workspace root.
        """
        folder = workspace.resolve(path)
        if not folder.is_dir():
            raise WorkspaceError(f"'{path}' is not a folder")
        lines = []
        for entry in sorted(folder.iterdir(), key=lambda p: (not p.is_dir(), p.name))[:MAX_LISTED]:
            try:
                workspace.resolve(workspace.display(entry))
            except WorkspaceError:
                continue  # a symlink that points outside is not shown
            # names only: a small model takes a listing's sizes for facts about the task
            lines.append(f"{workspace.display(entry)}{'/' if entry.is_dir() else ''}")
        return "\n".join(lines) or "(empty folder)"

    def read_file(path: str) -> str:
        """Read a text file from the workspace.

        Args:
            path: A file relative to the workspace root.
        """
        target = workspace.resolve(path)
        if not target.exists():
            raise WorkspaceError(f"'{path}' does not exist")
        if not target.is_file():
            raise WorkspaceError(f"'{path}' is not a file")
        size = target.stat().st_size
        with target.open("rb") as f:
            data = f.read(MAX_READ_BYTES)
        if _is_binary(data):
            raise WorkspaceError(f"'{path}' is a binary file")
        text = data.decode("utf-8", errors="replace")
        if size > MAX_READ_BYTES:
            text += f"\n... [file is {size} bytes; only the first {MAX_READ_BYTES} were read]"
        return text

    def search_files(pattern: str, path: str = ".") -> str:
        """Search the workspace's text files for lines matching a regular expression.

        Args:
            pattern: A regular expression.
            path: A folder relative to the workspace root.
        """
        try:
            compiled = regex.compile(pattern)
        except regex.error as exc:
            raise WorkspaceError(f"invalid regular expression: {exc}") from None
        folder = workspace.resolve(path)
        matches: list[str] = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                file = Path(dirpath) / name
                try:
                    workspace.resolve(workspace.display(file))
                    data = file.read_bytes()[:MAX_READ_BYTES]
                except (WorkspaceError, OSError):
                    continue
                if _is_binary(data):
                    continue
                for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
                    try:
                        found = compiled.search(line[:2000], timeout=SEARCH_TIMEOUT)
                    except TimeoutError:
                        raise WorkspaceError("the pattern is too slow (catastrophic backtracking?); simplify it") from None
                    if found:
                        matches.append(f"{workspace.display(file)}:{number}: {line.strip()[:200]}")
                        if len(matches) >= MAX_MATCHES:
                            return "\n".join(matches) + f"\n... [stopped at {MAX_MATCHES} matches]"
        return "\n".join(matches) or "no matches"

    def write_file(path: str, content: str) -> str:
        """Write a text file in the workspace, creating folders as needed. Replaces an existing file.

        Args:
            path: A file relative to the workspace root.
            content: The full text to write.
        """
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise WorkspaceError(f"content is {len(data)} bytes; the limit is {MAX_WRITE_BYTES}")
        target = workspace.resolve(path)
        if target.is_dir():
            raise WorkspaceError(f"'{path}' is a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tokentrail-tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)  # a crash never leaves half a file
        return f"wrote {len(data)} bytes to {workspace.display(target)}"

    return [list_files, read_file, search_files, write_file]
