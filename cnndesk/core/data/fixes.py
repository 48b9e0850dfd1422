"""Fixes to a dataset's folders that can be undone.

:func:`move_to_class` moves a file into another class folder (never over an
existing file, nothing deleted) and :class:`ChangeLog` lists the moves, copies
and exclusions so that each can be undone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import fsutil
from ..errors import UserError

def move_to_class(path: str | os.PathLike, root: str | os.PathLike, class_name: str) -> Path:
    """Move the image file ``path`` into the class folder ``root/class_name``; returns where it went.

    The folder is made when missing. An existing file is never replaced: the
    moved file then gets ``-1``, ``-2``… before its suffix. Nothing is deleted.

    Raises:
        UserError: the file is gone, or the move failed (with the reason).
    """
    return _place_in_class(path, root, class_name, os.rename, "move")


def copy_to_class(path: str | os.PathLike, root: str | os.PathLike, class_name: str) -> Path:
    """Copy the image file ``path`` into the folder ``root/class_name``, as :func:`move_to_class` moves it; a copy cut
    short (a full disk) leaves no part of it there."""
    return _place_in_class(path, root, class_name, fsutil.copy, "copy")


def _place_in_class(path, root, class_name: str, place, verb: str) -> Path:
    src = Path(path)
    if not src.is_file():
        raise UserError(f"{src} is no longer there; read the dataset again.")
    folder = Path(root) / class_name
    target = folder / src.name
    n = 0
    while target.exists() or target.is_symlink():
        n += 1
        target = folder / f"{src.stem}-{n}{src.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        place(src, target)
    except OSError as e:
        raise UserError(f"Could not {verb} {src.name} to {folder}: {e.strerror or e}.") from e
    return target


def move_back(moved_to: str | os.PathLike, original: str | os.PathLike) -> None:
    """Undo :func:`move_to_class`: put the file back where it was (never over another file).

    Raises:
        UserError: the moved file is gone, or its old place is taken.
    """
    src, dst = Path(moved_to), Path(original)
    if not src.is_file():
        raise UserError(f"{src} is no longer there, so it cannot be moved back.")
    if dst.exists():
        raise UserError(f"{dst} exists again, so {src.name} cannot be moved back over it.")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
    except OSError as e:
        raise UserError(f"Could not move {src.name} back to {dst.parent}: {e.strerror or e}.") from e


def remove_copy(copy: str | os.PathLike) -> None:
    """Undo :func:`copy_to_class`: delete the copy (already gone: nothing to do).

    Raises:
        UserError: it could not be deleted.
    """
    try:
        Path(copy).unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"Could not delete the copy {Path(copy).name}: {e.strerror or e}.") from e


EXCLUDE, MOVE, COPY = "exclude", "move", "copy"


@dataclass(frozen=True)
class Change:
    """One fix: an exclusion (kept in the project), a move on disk (from ``path`` to ``moved_to``) or a copy
    (of ``path``, to ``moved_to``)."""

    kind: str  # EXCLUDE, MOVE or COPY
    path: str
    moved_to: str | None = None
    from_class: str = ""
    to_class: str = ""

    def describe(self) -> str:
        name = Path(self.path).name
        if self.kind == MOVE:
            return f"Moved {name} from {self.from_class} to {self.to_class}"
        if self.kind == COPY:
            return f"Copied {name} to {self.to_class}"
        return f"Excluded {name} ({self.from_class})"


class ChangeLog:
    """The fixes made in this session, oldest first; any of them can be undone."""

    def __init__(self):
        self.changes: list[Change] = []

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def undo(self, change: Change, excluded: set[str]) -> set[str]:
        """Revert ``change`` (a move goes back on disk, a copy is deleted) and forget it; returns the exclusions
        after it.

        Raises:
            UserError: a move that cannot be reverted (the log keeps it).
        """
        if change.kind == MOVE:
            move_back(change.moved_to, change.path)
        elif change.kind == COPY:
            remove_copy(change.moved_to)
        self.changes.remove(change)
        return set(excluded) - {change.path} if change.kind == EXCLUDE else set(excluded)
