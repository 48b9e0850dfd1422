"""Scan a class-folder tree without decoding; name what was skipped and why.

The layout is the one of ``keras.utils.image_dataset_from_directory``::

    root/<class name>/<image files>

Everything here is TensorFlow-free, so a GUI worker thread may scan while
another thread owns TensorFlow.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import Cancelled, DatasetError
from .images import IMAGE_EXTENSIONS
from ..tasks import TaskState

#: skipped files listed one by one on a terminal; the rest are counted
SKIPPED_SHOWN = 5


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder that was not read, and why (a sentence a person understands)."""

    path: str
    reason: str

    @property
    def kind(self) -> str:
        """The reason without its details, to count skipped files by: "damaged image", "not an image file type"."""
        cut = len(self.reason)
        for mark in (":", " ("):
            i = self.reason.find(mark)
            if i > 0:
                cut = min(cut, i)
        return self.reason[:cut]


def count_skipped(skipped: Sequence[SkippedFile]) -> dict[str, int]:
    """How many files were skipped for each kind of reason, most first."""
    return dict(Counter(s.kind for s in skipped).most_common())


def describe_skipped(skipped: Sequence[SkippedFile], shown: int = SKIPPED_SHOWN) -> list[str]:
    """A few lines for a terminal: the counts by reason, the first ``shown`` files, how many more.

    Tens of thousands of skipped files still make at most ``shown + 2`` lines.
    """
    if not skipped:
        return []
    counts = ", ".join(f"{n:,} {kind}" for kind, n in count_skipped(skipped).items())
    lines = [f"skipped {len(skipped):,} file{'s' if len(skipped) != 1 else ''}: {counts}"]
    lines += [f"  {printable(s.path)}: {printable(s.reason)}" for s in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  … and {len(skipped) - shown:,} more (the full list: --json, or the app's dataset panel)")
    return lines


def printable(name: str) -> str:
    """A file or class name as it can be shown: newlines, control characters and
    undecodable bytes (kept by Python as surrogates) escaped, e.g. ``cat\\nmeow``, ``caf\\xe9``.

    Names are kept as they are everywhere else (so files are found and projects
    reopen with the same names); only what is shown is escaped.
    """
    if name.isprintable():
        return name
    try:
        text = os.fsencode(name).decode("utf-8", "backslashreplace")
    except (UnicodeError, TypeError, ValueError):
        text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass
class DatasetScan:
    """The files of a dataset folder, before decoding."""

    root: Path
    class_names: list[str]
    files: list[tuple[Path, int]]
    skipped: list[SkippedFile]
    not_followed: list[SkippedFile] = field(default_factory=list)  # links out of the dataset folder


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def scan_dataset(root: str | os.PathLike, state: TaskState | None = None,
                 follow_outside_links: bool = False) -> DatasetScan:
    """List the class folders and image files of ``root`` without decoding.

    Hidden files and folders are skipped; files with other extensions are
    listed as skipped. Links (to folders or files) inside the dataset folder
    are followed once: a link back to the dataset folder, one of its parents,
    another class folder or a folder already read is listed as skipped and not
    followed. Links that lead out of the dataset folder (say to ``/usr/share``)
    are not followed unless ``follow_outside_links``: they are listed in
    ``not_followed`` and as skipped.

    Raises:
        DatasetError: the folder is missing, is a file, or has no class folders.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"The folder {root} does not exist. Choose a folder that holds one subfolder per class.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder. Choose the folder that holds one subfolder per class.")
    not_followed: list[SkippedFile] = []
    allowed = links_inside(root, follow_outside_links, not_followed)
    try:
        class_dirs = sorted(
            (p for p in root.iterdir() if p.is_dir() and not _is_hidden(p.name) and allowed(p)), key=lambda p: p.name
        )
    except PermissionError:
        raise DatasetError(f"cnndesk may not read the folder {root}. Check its permissions.") from None
    if not class_dirs:
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = " It holds images directly: put each class's images in a subfolder named after the class." if loose else ""
        links = (f" {len(not_followed)} class folder link(s) lead out of the dataset folder and were not followed."
                 if not_followed else "")
        raise DatasetError(f"{root} has no class subfolders.{hint}{links} The expected layout is "
                           f"{root.name}/<class>/<images>.")

    files: list[tuple[Path, int]] = []
    skipped: list[SkippedFile] = []
    # a folder link must not lead back to the dataset folder, one of its parents,
    # or another class folder: that would loop, or file one class's images under another
    outside = folder_keys([root, *root.resolve().parents])
    for label, class_dir in enumerate(class_dirs):
        if state is not None and state.is_interruption_requested():
            raise Cancelled()
        others = folder_keys(d for d in class_dirs if d != class_dir)
        for path in walk_files(class_dir, skipped, outside | others, allowed):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((path, label))
            else:
                skipped.append(SkippedFile(str(path), f"not an image file type cnndesk reads ({path.suffix or 'no extension'})"))
    return DatasetScan(root, [p.name for p in class_dirs], files, not_followed + skipped, not_followed)


def links_inside(root: Path, follow_outside_links: bool, not_followed: list[SkippedFile], where: str = "dataset"):
    """A test of a path under ``root``: False (and noted in ``not_followed``) for a link out of ``root``, unless
    such links are followed."""
    real_root = root.resolve()

    def allowed(p: Path) -> bool:
        if follow_outside_links or not p.is_symlink():
            return True
        target = p.resolve()
        if target == real_root or real_root in target.parents:
            return True
        what = "folder" if p.is_dir() else "file"
        not_followed.append(SkippedFile(str(p), f"link outside the {where} folder (a {what} link to "
                                                f"{printable(str(target))}); not followed"))
        return False

    return allowed


def folder_keys(folders: Iterable[Path]) -> set[tuple[int, int]]:
    keys = set()
    for d in folders:
        try:
            st = d.stat()
        except OSError:
            continue
        keys.add((st.st_dev, st.st_ino))
    return keys


def walk_files(folder: Path, skipped: list[SkippedFile], excluded: set[tuple[int, int]] = frozenset(),
                allowed=lambda p: True) -> Iterable[Path]:
    """Files under ``folder`` in sorted order, skipping hidden entries, loops and entries not ``allowed``.

    A folder (reached through a link) that was already read, or whose key is in
    ``excluded``, is listed as skipped and not entered.
    """
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    out: list[Path] = []
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError as e:
            skipped.append(SkippedFile(str(d), f"cannot read folder: {e.strerror}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen or key in excluded:
            skipped.append(SkippedFile(str(d), "folder link leads back to the dataset, one of its parents or a "
                                               "folder already read; not followed"))
            continue
        seen.add(key)
        try:
            entries = sorted(d.iterdir(), key=lambda p: p.name)
        except OSError as e:
            skipped.append(SkippedFile(str(d), f"cannot read folder: {e.strerror}"))
            continue
        subdirs = []
        for e in entries:
            if _is_hidden(e.name) or not allowed(e):
                continue
            if e.is_dir():
                subdirs.append(e)
            elif e.is_file():
                out.append(e)
        stack.extend(reversed(subdirs))
    return sorted(out)
