"""Classify a whole folder: stream its images through the model, write a CSV, sort them into class folders.

:func:`collect_images` lists the image files of folders (recursively, with the
rules and readers of datasets: :mod:`.scanning`, :func:`.images.decode_image`)
and files given one by one. :func:`classify_files` decodes them in threads a
batch ahead of the model, so decoding and prediction overlap, and yields one
:class:`FolderRow` per file: the top classes with calibrated probabilities
(``Trust.temperature``) and the flags "not sure" (the calibrated confidence is
under ``not_sure_below``) and "unlike training" (``Trust.novelty``). Only two
batches are held at a time, so memory stays flat for any number of files.
:class:`CsvRows` writes the rows as they come; :func:`sort_row` copies (or
moves) a file into ``<destination>/<class>/`` and notes it in a
:class:`.quality.ChangeLog`, so each change can be undone (:func:`undo_all`);
the changes are also listed in the destination (:data:`SORT_LOG`,
:func:`add_to_sort_log`), so that a later command or session undoes a sort
(:func:`undo_sort`: ``cnndesk-cli undo-sort DIR``).

The window keeps a folder being classified in the session state as a
:class:`FolderResult`, whose rows are kept as columns (:class:`RowColumns`: a
few dozen bytes a row besides its path, no thumbnail), so that 100,000 files
cost megabytes, not a gigabyte; :class:`RowsView` reads them back as
:class:`FolderRow`s. The engine job reports its rows a batch at a time
(:class:`RowsClassified`) and answers with :class:`FolderDone`; writing a CSV
answers with :class:`CsvWritten` and sorting with :class:`Sorted`.

TensorFlow-free: the model is reached through ``heads``, a
:class:`.trust.ModelHeads` (or anything that maps prepared uint8 images to
``(features, logits)`` and has the ``preprocessing`` they are prepared with).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence as SequenceABC
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .. import fsutil
from ..model.calibration import softmax
from ..data.images import decode_or_reason
from ..errors import Cancelled, DatasetError, UserError
from ..data.images import IMAGE_EXTENSIONS
from ..data.fixes import Change, ChangeLog, COPY, copy_to_class, MOVE, move_to_class
from ..data.scanning import folder_keys, links_inside, SkippedFile, walk_files
from ..tasks import TaskState

#: the flags a row may carry
NOT_SURE, UNLIKE = "not sure", "unlike training"
#: a calibrated confidence under this is "not sure": the model is then likelier wrong than right
NOT_SURE_BELOW = 0.5
#: images decoded and predicted at a time
BATCH = 64


@dataclass
class FolderRow:
    """What the model says about one file, or why it could not be read (``error``)."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, calibrated probability), best first
    flags: tuple[str, ...] = ()
    unlikeness: float | None = None  # NoveltyStats.scores: -ln p of its least likely signal; None without statistics
    error: str | None = None

    @property
    def predicted(self) -> str | None:
        return self.top[0][0] if self.top else None

    @property
    def confidence(self) -> float | None:
        return self.top[0][1] if self.top else None

    @property
    def second(self) -> tuple[str, float] | None:
        return self.top[1] if len(self.top) > 1 else None

    def to_json(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top],
                "flags": list(self.flags)}


def list_image_files(folder: str | os.PathLike, follow_outside_links: bool = False,
                     left_out: Iterable[str | os.PathLike] = ()) -> tuple[list[Path], list[SkippedFile]]:
    """Every image file under ``folder`` (recursively, sorted), by the rules of :func:`.scanning.scan_dataset`.

    Hidden files and folders are skipped; files of other types, loops and
    links out of ``folder`` (unless ``follow_outside_links``) are listed as
    skipped. The folders ``left_out`` (where the images are sorted into, say)
    are not entered.

    Raises:
        DatasetError: the folder is missing or is a file.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"The folder {root} does not exist." if not root.exists() else f"{root} is not a folder.")
    skipped: list[SkippedFile] = []
    allowed = links_inside(root, follow_outside_links, skipped, "chosen")
    excluded = folder_keys(Path(p) for p in left_out)
    files = []
    for path in walk_files(root, skipped, folder_keys(root.resolve().parents) | excluded, allowed):
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(path)
        else:
            kind = path.suffix or "no extension"
            skipped.append(SkippedFile(str(path), f"not an image file type cnndesk reads ({kind})"))
    left = {Path(p).resolve() for p in left_out}
    return files, [s for s in skipped if Path(s.path).resolve() not in left]


def collect_images(sources: Sequence[str | os.PathLike], follow_outside_links: bool = False,
                   left_out: Iterable[str | os.PathLike] = ()) -> tuple[list[Path], list[SkippedFile]]:
    """The files to classify: each folder's image files (:func:`list_image_files`), each file as given."""
    files: list[Path] = []
    skipped: list[SkippedFile] = []
    for source in sources:
        p = Path(source).expanduser()
        if p.is_dir():
            found, passed = list_image_files(p, follow_outside_links, left_out)
            files += found
            skipped += passed
        else:
            files.append(p)  # a file named on its own is read whatever its type; a missing one gives an error row
    return files, skipped


def thumbnail_of(image: np.ndarray, side: int) -> np.ndarray:
    """A prepared image (H, W, C) shrunk by taking every n-th pixel until it is at most ``side`` on each edge (a
    copy, so that the whole image is not kept alive by it)."""
    step = max(1, -(-max(image.shape[0], image.shape[1]) // side))
    return np.ascontiguousarray(image[::step, ::step])


def decoding_threads() -> int:
    """How many threads decode images a batch ahead of the model: one fewer than the cores this process may use
    (at least 1, at most 8), so that decoding does not crowd out the model's own threads and the window's. On 2
    cores, 2 decoding threads made the window's longest stall 53-90 ms against 30-45 ms with 1, for 1.02x
    against 0.93x the images/s of a plain predict loop (benchmarks/folder_window.py, docs/performance.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 2
    return min(8, max(1, cores - 1))


def classify_files(files: Sequence[str | os.PathLike], heads, class_names: Sequence[str], trust=None, k: int = 3,
                   batch_size: int = BATCH, state: TaskState | None = None, not_sure_below: float = NOT_SURE_BELOW,
                   workers: int | None = None) -> Iterator[FolderRow]:
    """One :class:`FolderRow` per file, in order, decoded ``batch_size`` at a time a batch ahead of the model.

    Args:
        heads: prepared uint8 images (n, H, W, C) -> (signals, logits), as ``trust.ModelHeads`` gives them; has
            ``preprocessing``.
        trust: a :class:`.trust.Trust` (temperature, novelty statistics), or None: probabilities as the model
            gives them, no "unlike training" flag.
        k: classes kept per row (at least 2, so every row has a second class).

    Raises:
        Cancelled: ``state`` asked to stop; the rows yielded before stay valid.
    """
    names = list(class_names)
    k = max(2, min(int(k), len(names)))
    temperature = getattr(trust, "temperature", 1.0) or 1.0
    novelty = getattr(trust, "novelty", None)
    pre = heads.preprocessing
    total = len(files)
    workers = workers or decoding_threads()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        def submit(start: int):
            return [pool.submit(decode_or_reason, Path(f), pre) for f in files[start:start + batch_size]]

        pending = submit(0)
        for start in range(0, total, batch_size):
            if state is not None and state.is_interruption_requested():
                for f in pending:
                    f.cancel()
                raise Cancelled()
            decoded = [f.result() for f in pending]
            pending = submit(start + batch_size)  # decoded while the model works on this batch
            good = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
            rows = [FolderRow(str(files[start + i]), error=d) if isinstance(d, str) else None
                    for i, d in enumerate(decoded)]
            if good:
                features, logits = heads(np.stack([decoded[i] for i in good]))
                probs = softmax(logits, temperature)
                scores = novelty.scores(features) if novelty is not None else None
                order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
                for j, i in enumerate(good):
                    top = [(names[c], float(probs[j, c])) for c in order[j]]
                    flags = []
                    if top[0][1] < not_sure_below:
                        flags.append(NOT_SURE)
                    if scores is not None and scores[j] > novelty.threshold:
                        flags.append(UNLIKE)
                    rows[i] = FolderRow(str(files[start + i]), top, tuple(flags),
                                        None if scores is None else float(scores[j]))
            yield from rows
            if state is not None:
                state.set_progress_value(100.0 * min(start + batch_size, total) / max(total, 1))


# ---------------------------------------------------------------------------
# CSV

class CsvRows:
    """Rows written to a CSV file as they come; the file appears whole when the block ends without an error.

    Columns: ``path, class, confidence, class_2, confidence_2, … class_k,
    confidence_k, flags, unlikeness, error``; flags are joined by "; ". Used as
    a context manager; an exception (Cancelled, say) leaves an earlier file at
    the path as it was and no partial one.
    """

    def __init__(self, path: str | os.PathLike, k: int = 3):
        self.path, self.k = Path(path).expanduser(), max(2, int(k))
        self.count = 0

    def __enter__(self) -> "CsvRows":
        self._writing = fsutil.open_replacing(self.path, "w", newline="", encoding="utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = csv.writer(self._writing.__enter__())
        except OSError as e:
            raise UserError(f"Cannot write {self.path}: {fsutil.why_not_written(e)}.") from None
        header = ["path", "class", "confidence"]
        for i in range(2, self.k + 1):
            header += [f"class_{i}", f"confidence_{i}"]
        self._writer.writerow(header + ["flags", "unlikeness", "error"])
        return self

    def write(self, row: FolderRow) -> None:
        """Write one row.

        Raises:
            UserError: the file cannot take it (a full disk, say); leaving the block then leaves no partial file.
        """
        cells = [row.path]
        for i in range(self.k):
            c, p = row.top[i] if i < len(row.top) else ("", None)
            cells += [c, "" if p is None else f"{p:.6f}"]
        cells += ["; ".join(row.flags), "" if row.unlikeness is None else f"{row.unlikeness:.6g}", row.error or ""]
        try:
            self._writer.writerow(cells)
        except OSError as e:
            raise UserError(f"Cannot write {self.path}: {fsutil.why_not_written(e)}.") from None
        self.count += 1

    def __exit__(self, kind, value, tb) -> None:
        try:
            self._writing.__exit__(kind, value, tb)  # the file replaces an earlier one only when all went well
        except OSError as e:
            if kind is not None and kind is not UserError:
                raise  # the block's own error, passed on
            raise UserError(f"Cannot write {self.path}: {fsutil.why_not_written(e)}.") from None


def write_csv(path: str | os.PathLike, rows: Sequence[FolderRow], k: int = 3,
              state: TaskState | None = None) -> int:
    """Write ``rows`` to the CSV file ``path`` (:class:`CsvRows`), whole or not at all; returns how many.

    Raises:
        UserError: the file cannot be written (why: a full disk, a folder that cannot be made).
        Cancelled: ``state`` asked to stop; an earlier file at ``path`` stays as it was, and no partial one.
    """
    total = len(rows)
    with CsvRows(path, k) as table:
        for i, row in enumerate(rows):
            if i % 1024 == 0 and state is not None:
                if state.is_interruption_requested():
                    raise Cancelled()
                state.set_progress_value(100.0 * i / max(total, 1))
            table.write(row)
    return total


# ---------------------------------------------------------------------------
# sorting into folders

def folder_name(class_name: str) -> str:
    """A class name as one folder name: path separators become "_", and "", "." and ".." become "_"."""
    name = str(class_name).replace("/", "_").replace(os.sep, "_")
    return "_" if name in ("", ".", "..") else name


def sort_target(row: FolderRow, flag_folders: bool = False) -> str | None:
    """The folder (under the destination) a row's file goes to: its class, or with ``flag_folders`` "unlike
    training" or "not sure" for a flagged one; None for a file that could not be read."""
    if row.error is not None or not row.top:
        return None
    if flag_folders:
        for flag in (UNLIKE, NOT_SURE):
            if flag in row.flags:
                return flag
    return folder_name(row.predicted)


def sort_row(row: FolderRow, destination: str | os.PathLike, log: ChangeLog, move: bool = False,
             flag_folders: bool = False) -> Change | None:
    """Copy (or ``move``) the row's file into ``destination/<class>/`` (see :func:`sort_target`), never over
    another file, and note it in ``log``; None for a file that could not be read.

    Raises:
        UserError: the file could not be copied or moved (with the reason).
    """
    target = sort_target(row, flag_folders)
    if target is None:
        return None
    placed = (move_to_class if move else copy_to_class)(row.path, destination, target)
    change = Change(MOVE if move else COPY, row.path, str(placed), "", target)
    log.add(change)
    return change


def undo_all(log: ChangeLog) -> list[str]:
    """Undo every change of ``log``, newest first; returns a sentence for each that could not be undone (kept in
    the log)."""
    problems = []
    for change in reversed(list(log.changes)):
        try:
            log.undo(change, set())
        except UserError as e:
            problems.append(str(e))
    return problems


# ---------------------------------------------------------------------------
# the list of a sort's changes, kept in its destination

#: the file in a destination folder that lists the copies and moves sorted into it (hidden: never read as an image)
SORT_LOG = ".cnndesk-sorted.json"


def read_sort_log(destination: str | os.PathLike) -> list[Change]:
    """The changes listed in ``destination``'s :data:`SORT_LOG`, oldest first (none when there is no list).

    Raises:
        UserError: the list is there but cannot be read.
    """
    path = Path(destination).expanduser() / SORT_LOG
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["changes"]
        return [Change(str(e["kind"]), str(e["path"]), str(e["moved_to"]), str(e.get("from_class", "")),
                       str(e.get("to_class", ""))) for e in entries if e["kind"] in (COPY, MOVE)]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UserError(f"Cannot read {path}: {e.strerror or e}.") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path} is not a list of sorted files cnndesk wrote.") from None


def _write_sort_log(destination: Path, changes: list[Change]) -> None:
    path = destination / SORT_LOG
    try:
        if not changes:
            path.unlink(missing_ok=True)
            return
        fsutil.write_text(path, json.dumps({"changes": [dataclasses.asdict(c) for c in changes]}, indent=1))
    except OSError as e:
        raise UserError(f"Cannot write {path}: {e.strerror or e}.") from None


def add_to_sort_log(destination: str | os.PathLike, changes: Sequence[Change]) -> None:
    """List ``changes`` in ``destination``'s :data:`SORT_LOG`, after those of earlier sorts into it."""
    if changes:
        dest = Path(destination).expanduser()
        _write_sort_log(dest, read_sort_log(dest) + list(changes))


def remove_from_sort_log(destination: str | os.PathLike, changes: Sequence[Change]) -> None:
    """Take ``changes`` (undone) off ``destination``'s list; the list goes when it is empty."""
    dest = Path(destination).expanduser()
    gone = set(changes)
    _write_sort_log(dest, [c for c in read_sort_log(dest) if c not in gone])


def sort_destination(change: Change) -> Path:
    """The folder a sorted file was copied or moved into (``<destination>/<folder>/<file>``)."""
    return Path(change.moved_to).parent.parent


def undo_sort(destination: str | os.PathLike) -> tuple[int, list[str]]:
    """Undo every sort into ``destination`` that its :data:`SORT_LOG` lists, newest first: copies deleted, moved files
    put back. Returns how many changes were undone and a sentence for each that could not be (kept in the list).

    Raises:
        UserError: ``destination`` lists no sort.
    """
    dest = Path(destination).expanduser()
    changes = read_sort_log(dest)
    if not changes:
        raise UserError(f"{dest} holds no list of sorted files ({SORT_LOG}): nothing to undo.")
    log = ChangeLog()
    for c in changes:
        log.add(c)
    problems = undo_all(log)
    _write_sort_log(dest, log.changes)
    for folder in {Path(c.moved_to).parent for c in changes} - {Path(c.moved_to).parent for c in log.changes}:
        try:
            folder.rmdir()  # a class folder the sort made, now empty
        except OSError:
            pass  # not empty, or gone: left as it is
    return len(changes) - len(log.changes), problems


# ---------------------------------------------------------------------------
# a folder classified in the window (kept in the session state)

RUNNING, DONE, CANCELLED, FAILED = "running", "done", "cancelled", "failed"


#: a row's flags as bits of :attr:`RowColumns.flags`; ``FAILED_BIT``: its file could not be read
FLAG_BITS = {NOT_SURE: 1, UNLIKE: 2}
FAILED_BIT = 4


class RowColumns:
    """The rows of a folder classified, kept as columns: for row ``i`` its path, the indices (into
    ``class_names``) and calibrated probabilities of its top ``k`` classes (``top[i]``, ``probs[i]``), its flags
    (bits of :data:`FLAG_BITS`, and :data:`FAILED_BIT`) and its unlikeness (NaN: none), and why its file could not
    be read (``errors``). About 50 bytes a row besides its path, and a handful of objects in all, whatever the
    number of rows (no thumbnails: a table decodes those of the rows it shows).

    Append-only (:meth:`append`): the arrays grow by doubling, and only their first :attr:`count` rows hold;
    a reader that took ``count`` rows keeps reading the same rows while more are appended.
    """

    def __init__(self, class_names: Sequence[str], k: int = 3):
        self.class_names = tuple(class_names)
        self.k = max(1, min(int(k), len(self.class_names))) if self.class_names else max(1, int(k))
        self._index = {name: i for i, name in enumerate(self.class_names)}
        self.paths: list[str] = []
        self.top = np.zeros((0, self.k), np.int32)
        self.probs = np.zeros((0, self.k), np.float64)
        self.flags = np.zeros(0, np.uint8)
        self.unlikeness = np.zeros(0, np.float32)
        self.errors: dict[int, str] = {}
        self.count = 0

    def append(self, rows: Sequence[FolderRow]) -> None:
        n, m = self.count, len(rows)
        if n + m > len(self.flags):
            size = max(256, 2 * (n + m))
            self.top = _grown(self.top, size)
            self.probs = _grown(self.probs, size)
            self.flags = _grown(self.flags, size)
            self.unlikeness = _grown(self.unlikeness, size)
        for j, row in enumerate(rows):
            i = n + j
            self.paths.append(row.path)
            if row.error is not None:
                self.errors[i] = row.error
                self.flags[i] = FAILED_BIT
                self.top[i] = -1
                self.probs[i] = np.nan
                self.unlikeness[i] = np.nan
                continue
            top = row.top[:self.k]
            self.top[i] = [self._index[c] for c, _ in top] + [-1] * (self.k - len(top))
            self.probs[i] = [p for _, p in top] + [np.nan] * (self.k - len(top))
            self.flags[i] = sum(FLAG_BITS[f] for f in row.flags)
            self.unlikeness[i] = np.nan if row.unlikeness is None else row.unlikeness
        self.count = n + m

    def row(self, i: int) -> FolderRow:
        """Row ``i`` as a :class:`FolderRow`."""
        if not 0 <= i < self.count:
            raise IndexError(i)
        error = self.errors.get(i)
        if error is not None:
            return FolderRow(self.paths[i], error=error)
        top = [(self.class_names[c], float(p)) for c, p in zip(self.top[i], self.probs[i]) if c >= 0]
        bits = int(self.flags[i])
        unlike = float(self.unlikeness[i])
        return FolderRow(self.paths[i], top, tuple(f for f, b in FLAG_BITS.items() if bits & b),
                         None if np.isnan(unlike) else unlike)


def _grown(a: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size,) + a.shape[1:], a.dtype)
    out[:len(a)] = a
    return out


class RowsView(SequenceABC):
    """Rows of a :class:`RowColumns`, read as :class:`FolderRow`s made when asked for: its first ``count`` rows,
    or those of ``indices`` (in that order)."""

    def __init__(self, columns: RowColumns | None, count: int = 0, indices: np.ndarray | None = None):
        self.columns = columns
        self.indices = np.arange(count) if indices is None else np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return RowsView(self.columns, indices=self.indices[i])
        return self.columns.row(int(self.indices[i]))

    def __iter__(self) -> Iterator[FolderRow]:
        for i in self.indices:
            yield self.columns.row(int(i))

    def __bool__(self) -> bool:
        return len(self.indices) > 0


@dataclass(frozen=True)
class RowsClassified:
    """What the engine job reports as it goes: the rows of the last batch, and how many files there are in all."""

    rows: tuple[FolderRow, ...]
    total: int
    skipped: tuple[SkippedFile, ...] = ()


@dataclass(frozen=True)
class FolderDone:
    """The classification's answer: how many rows it made, and whether it was cancelled before the end."""

    count: int
    cancelled: bool = False


@dataclass(frozen=True)
class CsvWritten:
    """An export's answer: the CSV file written whole, and how many rows it holds."""

    path: str
    count: int


@dataclass(frozen=True)
class Sorted:
    """A sort's answer: the changes made (in order), and why it stopped early (None: every row was sorted)."""

    destination: str
    changes: tuple[Change, ...]
    problem: str | None = None


@dataclass(frozen=True, eq=False)
class FolderResult:
    """A folder classified in the window: its rows so far, how far it went and whether it still holds.

    Equal only to itself, so that each new batch of rows is a change of the session state. Its rows are the
    first ``count`` of ``columns``, which the results that follow it (more rows, ended, stale) share: a batch
    costs only its own rows.

    Attributes:
        sources: the folders (or files) classified.
        model: the ``ModelInfo`` of the model that classified them.
        columns: the rows (:class:`RowColumns`), in the order the files were listed; ``count``: how many hold.
        rows: the same, read as ``FolderRow``s (:class:`RowsView`).
        total: how many files there are (None while they are listed).
        status: RUNNING, DONE, CANCELLED or FAILED (``message`` says why).
        stale: why the rows no longer hold ("" while they do): another model, another dataset.
        started: ``time.perf_counter()`` when it started; ``seconds``: how long it ran, once it ended.
    """

    sources: tuple[str, ...]
    model: Any = None
    columns: RowColumns | None = None
    count: int = 0
    total: int | None = None
    skipped: tuple[SkippedFile, ...] = ()
    status: str = RUNNING
    message: str = ""
    stale: str = ""
    started: float = 0.0
    seconds: float | None = None
    not_sure: int = 0  # rows flagged "not sure"
    unlike: int = 0  # rows flagged "unlike training"
    unreadable: int = 0  # rows of files that could not be read

    @classmethod
    def start(cls, sources: Sequence[str], model, k: int, started: float) -> "FolderResult":
        """A folder about to be classified by ``model`` (a ``ModelInfo``), keeping ``k`` classes a row."""
        return cls(tuple(str(s) for s in sources), model, RowColumns(model.class_names, k), started=started)

    @property
    def rows(self) -> RowsView:
        return RowsView(self.columns, self.count)

    def with_rows(self, report: RowsClassified) -> "FolderResult":
        """The result with a batch's rows added (counted as they come, so that a long run costs no more a batch).

        Only the newest result of a run takes rows: the rows are appended to the columns it shares."""
        rows = report.rows
        columns = self.columns if self.columns is not None else RowColumns(
            self.model.class_names if self.model is not None else (), 3)
        if columns.count != self.count:
            raise ValueError("rows added to a result that is not its run's newest")
        columns.append(rows)
        return dataclasses.replace(self, columns=columns, count=columns.count, total=report.total,
                                   skipped=self.skipped + tuple(report.skipped),
                                   not_sure=self.not_sure + sum(NOT_SURE in r.flags for r in rows),
                                   unlike=self.unlike + sum(UNLIKE in r.flags for r in rows),
                                   unreadable=self.unreadable + sum(r.error is not None for r in rows))

    def ended(self, status: str, seconds: float, message: str = "") -> "FolderResult":
        return dataclasses.replace(self, status=status, seconds=seconds, message=message)

    def made_stale(self, why: str) -> "FolderResult":
        return dataclasses.replace(self, stale=why)
