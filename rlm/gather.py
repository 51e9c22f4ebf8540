"""Context locations as a shell user names them: files, folders and globs, to a list of documents.

A folder gives its text files (recursively, in sorted order, hidden entries left out), each named by
its path relative to the folder; a glob (quoted, so the shell left it alone) gives its matches;
binary, empty and (with errors='strict') non-UTF-8 files found in a folder or glob are skipped and
reported, while a file named on its own must be readable text, as before.
"""

from __future__ import annotations

import codecs
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from rlm.errors import ContextError

PROBE = 8192  # bytes read from the start of a file to tell text from binary
GLOB_CHARS = frozenset("*?[")


@dataclass
class Gathered:
    """The files to read as documents, with their names, and the files passed over with why."""

    files: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: Path, name: str) -> None:
        self.files.append(path)
        self.names.append(name)


def not_text(path: Path, errors: str) -> str | None:
    """Why `path` is not a text document ("binary", "empty", "not UTF-8"), or None when it is one."""
    with path.open("rb") as file:
        head = file.read(PROBE)
    if not head:
        return "empty"
    if b"\x00" in head:
        return "binary"
    if errors == "strict":
        try:
            codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut character is fine
        except UnicodeDecodeError:
            return "not UTF-8"
    return None


def _walk(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / name for name in sorted(files) if not name.startswith("."))
    return found


def gather(items: list[str], errors: str = "strict") -> Gathered:
    """Expand files, folders and globs into documents named by file name, or by their path relative
    to the folder they came from; when names collide, each document is named by its full path."""
    out = Gathered()
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            candidates = [(p, p.relative_to(path).as_posix()) for p in _walk(path)]
        elif not path.exists() and GLOB_CHARS & set(item):
            matches = sorted(glob.glob(os.path.expanduser(item), recursive=True))
            candidates = [(Path(m), Path(m).name) for m in matches if Path(m).is_file()]
            if not candidates:
                raise ContextError(f"context pattern {item} matches no files")
        else:
            out.add(path, path.name)  # a file named on its own: read (or refused) as it is
            continue
        for candidate, name in candidates:
            reason = not_text(candidate, errors)
            if reason:
                out.skipped.append((str(candidate), reason))
            else:
                out.add(candidate, name)
        if not candidates:
            raise ContextError(f"context folder {item} has no files")
    if not out.files:
        raise ContextError("no text files to read as context: " + skipped_notice(out.skipped))
    if len(set(out.names)) < len(out.names):
        out.names = [str(p) for p in out.files]
    return out


def skipped_notice(skipped: list[tuple[str, str]], shown: int = 5) -> str:
    """'skipped 2 files: a.png (binary), b.txt (empty)' with at most `shown` listed."""
    listed = ", ".join(f"{path} ({reason})" for path, reason in skipped[:shown])
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''}: {listed}{more}"
