"""What the course's scripts that rewrite notebooks share, so that none of them destroys a learner's work.

* :func:`unsaved_work` names the notebooks whose content is in no commit: modified, staged, untracked or
  git-ignored (``git status --porcelain --ignored``). Outside a git repository nothing counts.
* :func:`forced` is true for ``--force`` or ``FORCE=1`` in the environment (``make notebooks FORCE=1``).
* :func:`write_notebook` and :func:`atomic_write` replace a file atomically (a temporary file in the same
  folder, then ``os.replace``), so an interrupted run leaves the old file or the new one, never half of one.
* :func:`create_new` writes a file only where none exists (``make workspace``).

Standard library only (``nbformat`` is imported when a notebook is written).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

FORCE_VALUES = {"1", "true", "yes", "on"}


def forced(flag: bool = False) -> bool:
    """True when told to overwrite uncommitted work: ``--force`` or ``FORCE=1`` (or true/yes/on)."""
    return flag or os.environ.get("FORCE", "").strip().lower() in FORCE_VALUES


def _in_a_checkout(path: Path) -> bool:
    folder = path.resolve().parent
    return any((p / ".git").exists() for p in (folder, *folder.parents))


def unsaved_work(paths: Iterable[str | Path]) -> list[str]:
    """One line per notebook whose current content is not committed: ``"PATH (git status: M)"``.

    Untracked and git-ignored files count (their content is in no commit). A notebook outside any git
    repository does not. When git cannot tell (git missing inside a checkout, or an error such as
    "dubious ownership"), the notebook counts, with git's message, so the caller refuses to guess.
    """
    lines = []
    for path in map(Path, paths):
        folder = path.parent if str(path.parent) else Path(".")
        try:
            res = subprocess.run(["git", "status", "--porcelain", "--ignored", "--", path.name],
                                 cwd=folder, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:  # no git on this machine
            if _in_a_checkout(path):
                lines.append(f"{path} (inside a git checkout, but git is not installed to check it)")
            continue
        if res.returncode != 0:
            if "not a git repository" in res.stderr:
                continue
            message = (res.stderr.strip().splitlines() or ["no message"])[0]
            lines.append(f"{path} (git could not check it: {message})")
        elif res.stdout.strip():
            codes = sorted({line[:2].strip() for line in res.stdout.splitlines() if line.strip()})
            lines.append(f"{path} (git status: {', '.join(codes)})")
    return lines


def refusal(lines: list[str], force_hint: str) -> str:
    """The message for notebooks that :func:`unsaved_work` found."""
    listing = "\n".join(f"  {line}" for line in lines)
    return (f"refusing to overwrite {len(lines)} notebook(s) with changes that are in no git commit "
            f"(your answers to the exercises?):\n{listing}\n"
            f"Nothing was changed. Commit or copy your work first (`make workspace` keeps your own copies "
            f"in workspace/), or overwrite anyway: {force_hint}")


def atomic_write(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically; keep the file's permissions."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_notebook(nb, path: str | Path) -> None:
    """``nbformat.write(nb, path)``, atomically."""
    import nbformat

    text = nbformat.writes(nb)
    atomic_write(path, text if text.endswith("\n") else text + "\n")


def create_new(path: str | Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` only if no file is there (atomically); False if one was there."""
    path = Path(path)
    if path.exists():
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        try:
            os.link(tmp, path)  # fails if a file appeared meanwhile: never replaces one
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
