"""Project folders, saved so that a save becomes visible whole or not at all.

A project folder holds everything needed to reopen a session: the dataset
path and settings, class names, preprocessing, the layer stack, training
settings and history, and the trained model. Layout (schema 2, see
``docs/projects.md``)::

    project.json              the commit point: the whole project, naming its model file
    versions/<n>/model.keras  the model of save n (and of the save before it, kept for readers)
    runs/<id>/model.keras     each training run's weights, written once (``core.runs``)
    .cnndesk-lock             only while a save runs: the lock (and .cnndesk-lock.json: the writer's pid and host)

A save writes the model into a new ``versions/<n>`` folder, flushes it to disk,
then replaces ``project.json`` the way :mod:`.fsutil` writes every file (a
temporary name, flushed, ``os.replace``): that one rename is the moment the new
save becomes visible. A reader that follows
``project.json`` therefore sees the old project or the new one, whole. Saves
into one folder are serialized by an OS lock on the lock file (released by the
OS when the writer dies, so a stale lock is simply taken over). A save, and an
open, remove what interrupted saves left behind.

Schema 1 folders (``project.json`` + ``model.keras`` side by side) still open;
they are migrated to schema 2 the next time they are saved.

This module is the public face of projects (``__all__``): what ``project.json``
holds is defined in :mod:`.schema`, the lock in :mod:`.lock`,
and both are used through here; opening a model file (a project's, or one
brought from elsewhere) is :mod:`..model.loading`. Saving, tidying and opening
projects stay together in this module: they share the commit protocol (which
version folders a committed ``project.json`` still needs), and splitting them
would spread it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .. import fsutil
from ..errors import ModelFileError, ProjectError, UserError
from ..model.loading import load_keras_model
from .lock import HOLDER_FILE, LOCK_FILE, ProjectLock
from .schema import migrate, MODEL_FILE, new_run_id, Project, PROJECT_FILE, SCHEMA_VERSION, VERSIONS_DIR
from ..training.probes import ProbeRecording, recording_summary
from ..training.runs import located, probe_name, RUN_ID, RUNS_DIR, weights_name

__all__ = [
    "HOLDER_FILE", "LOCK_FILE", "MODEL_FILE", "PROJECT_FILE", "SCHEMA_VERSION", "VERSIONS_DIR", "Project", "ProjectLock",
    "check_destination", "clean_project", "estimate_model_bytes", "is_project", "migrate", "new_run_id",
    "open_probes", "open_project", "save_project",
]

#: how many committed saves before the current one keep their model on disk: a reader that read the
#: previous project.json just before a save replaced it still finds that project's model
KEEP_PREVIOUS = 1
#: how long a save waits for another writer (or an open tidying up) to finish before it gives up
LOCK_WAIT = 1.0

_VERSION_NAME = re.compile(r"^[0-9]{1,12}$")
_MODEL_REF = re.compile(r"^versions/([0-9]{1,12})/model\.keras$")
_TEMP_NAMES = (re.compile(r"^\.project-.*\.json$"), re.compile(r"^\.model-.*\.keras$"))  # of cnndesk 0.x saves


def _is_temporary(name: str) -> bool:
    """A temporary file or folder of an interrupted save (``fsutil``'s, or an older cnndesk's)."""
    return fsutil.is_temporary(name) or any(p.match(name) for p in _TEMP_NAMES)


def _step(name: str) -> None:
    """Called between the steps of a save; does nothing.

    The fault test replaces it, in a child process, to kill the process at
    each step in turn (``tests/fault_save.py``).
    """


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- saving ----------------------------------------------------------------------------------------

def _read_raw(folder: Path) -> tuple[bytes, dict] | None:
    """The bytes and JSON of ``folder/project.json``; None when it is missing or unreadable."""
    try:
        data = (folder / PROJECT_FILE).read_bytes()
        d = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return (data, d) if isinstance(d, dict) else None


def _version_of(ref) -> str | None:
    """The version folder name a schema-2 model reference points into, or None."""
    if isinstance(ref, dict) and isinstance(ref.get("file"), str):
        m = _MODEL_REF.match(ref["file"])
        if m:
            return m.group(1)
    return None


def _kept_versions(d: dict | None) -> set[str]:
    """The version folders a committed project.json still needs: its model's and the previous ones."""
    if not isinstance(d, dict) or d.get("schema_version") != SCHEMA_VERSION:
        return set()
    keep = {_version_of(d.get("model"))}
    previous = d.get("previous_versions")
    if isinstance(previous, list):
        keep.update(str(v) for v in previous if isinstance(v, str) and _VERSION_NAME.match(v))
    keep.discard(None)
    return keep


def _kept_runs(d: dict | None) -> set[str]:
    """The run folders a committed project.json names."""
    if not isinstance(d, dict) or d.get("schema_version") != SCHEMA_VERSION or not isinstance(d.get("runs"), list):
        return set()
    return {r["id"] for r in d["runs"]
            if isinstance(r, dict) and isinstance(r.get("id"), str) and RUN_ID.match(r["id"])}


def _stale_runs(folder: Path, committed: dict | None) -> list[str]:
    """Folders in ``runs/`` that ``committed`` does not name: written by an interrupted save, or deleted runs."""
    try:
        entries = os.listdir(folder / RUNS_DIR)
    except OSError:
        return []
    keep = _kept_runs(committed)
    return [n for n in entries if n not in keep and (RUN_ID.match(n) or n.startswith("."))]


def _remove(path: Path) -> bool:
    """Remove a leftover folder (a link is unlinked, never followed) or file; False when it could not be."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:
        return False
    return True


def _clean(folder: Path, committed: dict | None) -> list[str]:
    """Remove what interrupted saves left in ``folder``; the caller holds the lock.

    Removed: temporary files of saves, version folders that ``committed`` (the
    project.json on disk) does not need, and the schema-1 ``model.keras`` once
    the folder has been saved in schema 2. Never raises; returns what it removed.
    """
    removed = []
    keep = _kept_versions(committed)
    for name in _stale_runs(folder, committed):
        _step("clean")
        if _remove(folder / RUNS_DIR / name):
            removed.append(f"{RUNS_DIR}/{name}")
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if _is_temporary(name) or (name == MODEL_FILE and committed is not None
                                   and committed.get("schema_version") == SCHEMA_VERSION):
            _step("clean")
            if _remove(folder / name):
                removed.append(name)
    versions = folder / VERSIONS_DIR
    try:
        entries = os.listdir(versions)
    except OSError:
        return removed
    for name in entries:
        if name in keep or not (_VERSION_NAME.match(name) or name.startswith(".")):
            continue  # ours to keep, or not ours at all
        _step("clean")
        if _remove(versions / name):
            removed.append(f"{VERSIONS_DIR}/{name}")
    return removed


def _has_debris(folder: Path, committed: dict | None) -> bool:
    """Whether ``_clean`` would find something to remove (a quick look, without the lock)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    if _stale_runs(folder, committed):
        return True
    if any(_is_temporary(n) for n in names):
        return True
    if MODEL_FILE in names and isinstance(committed, dict) and committed.get("schema_version") == SCHEMA_VERSION:
        return True
    try:
        entries = os.listdir(folder / VERSIONS_DIR)
    except OSError:
        return False
    keep = _kept_versions(committed)
    return any(n not in keep and (_VERSION_NAME.match(n) or n.startswith(".")) for n in entries)


def _next_version(folder: Path, committed: dict | None) -> int:
    numbers = [int(v) for v in _kept_versions(committed)]
    try:
        numbers += [int(n) for n in os.listdir(folder / VERSIONS_DIR) if _VERSION_NAME.match(n)]
    except OSError:
        pass
    return max(numbers, default=0) + 1


def _reason(e: OSError) -> str:
    if getattr(e, "errno", None) == errno.ENOSPC:
        return "the disk is full"
    if getattr(e, "errno", None) == errno.EROFS:
        return "the disk is read-only"
    return e.strerror or str(e)


def save_project(folder: str | os.PathLike, project: Project, model=None, probes=None) -> Path:
    """Write ``project`` (and ``model``, if given) into ``folder`` as one atomic save.

    The model goes into a new ``versions/<n>`` folder; ``project.json`` (naming
    that model) is written to a temporary file and moved over the old one last,
    so a failure or a kill at any moment leaves the previous save as it was. The
    folder is locked for the length of the save. Without ``model`` the project
    is saved without one (an untrained project). ``probes`` (a ``ProbeRecording``
    of the model's training) goes into the same version folder, so it is committed
    with the model (``open_probes`` reads it).

    Raises:
        ProjectError: the folder cannot be written (permissions, disk full, …), or
            another process is saving into it.
    """
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = ProjectLock(folder).acquire(timeout=LOCK_WAIT)
    except OSError as e:
        after = "The previous save is unchanged." if is_project(folder) else "Nothing was saved."
        raise ProjectError(f"Could not save the project in {folder}: {_reason(e)}. {after}") from None
    try:
        _step("locked")
        old = _read_raw(folder)
        committed = old[1] if old else None
        _clean(folder, committed)
        had_previous = (folder / PROJECT_FILE).is_file()
        version_dir = None
        new_runs: list[Path] = []  # run folders this save wrote, removed again if it fails
        try:
            project.saved_at = time.time()
            d = project.to_json()
            d["model"] = None
            if model is not None:
                version = _next_version(folder, committed)
                (folder / VERSIONS_DIR).mkdir(exist_ok=True)
                version_dir = folder / VERSIONS_DIR / str(version)
                _step("version folder")
                version_dir.mkdir()
                target = version_dir / MODEL_FILE
                _step("model")
                model.save(target)  # into a new folder that no project.json names yet: no temporary name needed
                _step("model written")
                fsutil.fsync_file(target)
                os.chmod(target, fsutil.file_mode())
                fsutil.fsync_folder(version_dir)
                fsutil.fsync_folder(folder / VERSIONS_DIR)
                d["model"] = {"file": f"{VERSIONS_DIR}/{version}/{MODEL_FILE}", "bytes": target.stat().st_size,
                              "sha256": _sha256(target)}
                if probes is not None:
                    d["probes"] = _write_probes(version_dir, probes)
            d["runs"] = _write_runs(folder, project, committed, version_dir, new_runs)
            previous = sorted(_kept_versions(committed), key=int, reverse=True)[:KEEP_PREVIOUS]
            d["previous_versions"] = [v for v in previous if version_dir is None or v != version_dir.name]
            text = json.dumps(json_safe(d), indent=2, allow_nan=False)  # JSON every reader takes
            _step("project.json")
            with fsutil.replacing(folder / PROJECT_FILE) as tmp:  # its rename at the end is the commit point
                tmp.write_text(text, encoding="utf-8")
                _step("commit")
            version_dir = None  # committed: nothing below may undo it
            new_runs = []
            _step("committed")
        except OSError as e:
            _undo(folder, version_dir, new_runs)
            after = "The previous save is unchanged." if had_previous else "Nothing was saved."
            raise ProjectError(f"Could not save the project in {folder}: {_reason(e)}. {after}") from None
        except BaseException:
            _undo(folder, version_dir, new_runs)
            raise
        _clean(folder, d)
        _step("cleaned")
    finally:
        lock.release()
    return folder


def json_safe(value):
    """``value`` with every NaN or infinite number (a diverged run's loss) as None: ``project.json`` and the CLI's
    ``--json`` lines are strict JSON, which has no such numbers (``runs.history_rows`` reads a history's losses
    back as NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _write_runs(folder: Path, project: Project, committed: dict | None, version_dir: Path | None,
                written: list[Path]) -> list[dict]:
    """The ``runs`` entries of the new project.json, after writing the run folders it names that are new.

    A run the committed project.json already names keeps its folder and entry (weights are written
    once per run). A new run's weights come from its ``file`` (a session's scratch copy, another
    project's folder, or an older project's model file), or, for the current model's run, from the
    model this save just wrote; they are hard-linked where the disk allows (the bytes are stored
    once) and copied where not. Each folder written is added to ``written`` as soon as it exists.
    """
    listed = committed.get("runs") if isinstance(committed, dict) else None
    before = {r.get("id"): r for r in listed if isinstance(r, dict)} if isinstance(listed, list) else {}
    kept = _kept_runs(committed)
    entries = []
    for run in project.runs:
        entry = run.to_json()
        old = before.get(run.id) if run.id in kept else None
        if old is not None and old.get("weights") is not None and (folder / weights_name(run.id)).is_file():
            entry["weights"], entry["probe_files"] = old.get("weights"), old.get("probe_files")
            probes = _run_probes_source(run, project, version_dir) if run.id == project.run else None
            if entry["probe_files"] is None and probes is not None:  # saved before runs kept recordings
                target = folder / probe_name(run.id)
                shutil.rmtree(target, ignore_errors=True)  # a leftover: the committed project.json names none
                written.append(target)
                _write_run_probes(probes, folder, run.id, entry)
                fsutil.fsync_folder(target.parent)
            entries.append(entry)
            continue
        source = Path(run.file) if run.file and Path(run.file).is_file() else None
        if source is None and run.id == project.run and version_dir is not None:
            source = version_dir / MODEL_FILE
        entry["weights"] = entry["probe_files"] = None
        probes = _run_probes_source(run, project, version_dir)
        if source is not None or probes is not None:
            run_dir = folder / RUNS_DIR / run.id
            _step("run folder")
            run_dir.mkdir(parents=True, exist_ok=True)
            written.append(run_dir)
            if source is not None:
                target = folder / weights_name(run.id)
                _step("run weights")
                _place(source, target)
                entry["weights"] = {"file": weights_name(run.id), "bytes": target.stat().st_size,
                                    "sha256": _sha256(target)}
            if probes is not None:
                _write_run_probes(probes, folder, run.id, entry)
            fsutil.fsync_folder(run_dir)
            fsutil.fsync_folder(folder / RUNS_DIR)
        entries.append(entry)
    return entries


def _write_run_probes(source: Path, folder: Path, run_id: str, entry: dict) -> None:
    """Put the recording in ``source`` into the folder of run ``run_id``; ``entry`` (its ``runs`` entry) names it,
    and gets its summary when it had none (a run from before recordings were kept with runs)."""
    _step("run probes")
    target = folder / probe_name(run_id)
    _copy_folder(source, target)
    entry["probe_files"] = probe_name(run_id)
    if entry.get("probes") is None:
        try:
            entry["probes"] = recording_summary(ProbeRecording.load(target))
        except UserError:
            entry["probes"] = None  # listed without a frame count; opening it later says what is wrong


def _run_probes_source(run, project: Project, version_dir: Path | None) -> Path | None:
    """The folder whose probe recording a new run's folder gets: for the current model's run, the recording
    this save just wrote beside the model (the same frames, linked rather than stored twice); for any other
    run, its own ``probe_dir``."""
    if run.id == project.run and version_dir is not None and (version_dir / PROBES_DIR).is_dir():
        return version_dir / PROBES_DIR
    if run.probe_dir and Path(run.probe_dir).is_dir():
        return Path(run.probe_dir)
    return None


def _place(source: Path, target: Path) -> None:
    """Put ``source``'s bytes at ``target``: a hard link (no second copy) where the disk allows, else a copy.

    Sharing the bytes is safe because cnndesk never writes into a model file once it is complete: every
    save writes new files.
    """
    _link_or_copy(source, target)
    fsutil.fsync_file(target)


def _copy_folder(source: Path, target: Path) -> None:
    """Copy a folder of files (a run's probe recordings; hard links where the disk allows, as ``_place``), each
    flushed to disk."""
    shutil.copytree(source, target, copy_function=_link_or_copy)
    fsutil.fsync_tree(target)


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
        os.chmod(target, fsutil.file_mode())


def _undo(folder: Path, version_dir: Path | None, run_dirs=()) -> None:
    """Remove what a failed save wrote (its version and run folders, and ``versions/`` if that is empty now)."""
    for path in run_dirs:
        shutil.rmtree(path, ignore_errors=True)
    if version_dir is not None:
        shutil.rmtree(version_dir, ignore_errors=True)
    try:
        os.rmdir(folder / VERSIONS_DIR)
    except OSError:
        pass


def clean_project(folder: str | os.PathLike) -> list[str]:
    """Remove what interrupted saves left in a project folder, unless a save is running there.

    Returns what was removed (empty when nothing was, or the folder is busy or read-only).
    """
    folder = Path(folder).expanduser()
    old = _read_raw(folder)
    if old is None or not _has_debris(folder, old[1]):
        return []  # nothing to do: no lock taken, nothing written
    try:
        lock = ProjectLock(folder).acquire()
    except (OSError, ProjectError):
        return []
    try:
        old = _read_raw(folder)
        return _clean(folder, old[1]) if old else []
    finally:
        lock.release()


# -- checking a destination ----------------------------------------------------------------------

def estimate_model_bytes(params: int, optimizer_slots: int = 2) -> int:
    """About how many bytes a ``.keras`` file of a model with ``params`` float32 parameters takes.

    The file holds the weights and the optimizer's state (Adam: two slots per
    weight), plus a little config and zip overhead.
    """
    return int(params) * 4 * (1 + optimizer_slots) + 256 * 1024


def check_destination(folder: str | os.PathLike, model_bytes: int = 0) -> None:
    """Check, before any work, that a project can be saved into ``folder``.

    The nearest existing folder on the path must be a folder, writable (a file is
    created and removed there) and have room for ``model_bytes`` and a margin.

    Raises:
        ProjectError: one sentence saying why not.
    """
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ProjectError(f"Cannot save the project in {folder}: {existing} is a file, not a folder.")
    try:
        fd, probe = tempfile.mkstemp(prefix=".project-", suffix=".json", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ProjectError(f"Cannot save the project in {folder}: {_reason(e)} "
                           f"({'the folder' if existing == folder else existing} cannot be written).") from None
    if model_bytes:
        need = int(model_bytes * 1.2) + (1 << 20)
        try:
            free = shutil.disk_usage(existing).free
        except OSError:
            return
        if free < need:
            raise ProjectError(f"Cannot save the project in {folder}: the disk has {_mb(free)} free and the model "
                               f"needs about {_mb(need)}.")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.1f} GB"


# -- opening ---------------------------------------------------------------------------------------

def is_project(path: str | os.PathLike) -> bool:
    """True for a cnndesk project folder (any schema) or its ``project.json``."""
    p = Path(path)
    return (p / PROJECT_FILE).is_file() or (p.name == PROJECT_FILE and p.is_file())


def _model_path(folder: Path, d: dict, pj: Path, must_exist: bool) -> Path | None:
    """The model file a migrated project.json names (checked to stay inside the folder), or None."""
    ref = d.get("model")
    if ref is None:
        return None
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        raise ProjectError(f"{pj} is damaged: its model entry is not a file name.")
    name = ref["file"]
    if name != MODEL_FILE and not _MODEL_REF.match(name):
        raise ProjectError(f"{pj} is damaged: it names the model file {name[:100]!r}, which is not one of "
                           "cnndesk's own.")
    path = folder / name
    if not path.is_file():
        if ref.get("optional") or not must_exist:
            return None
        raise ProjectError(f"The project {folder} is damaged: its model file {name} is missing.")
    return path


def open_project(path: str | os.PathLike, load_model: bool = True):
    """Read a project folder (or its ``project.json``), of any schema.

    The project and its model are read as one: if a save replaces the project
    while it is being read, the read starts again on the new one. Leftovers of
    interrupted saves are removed when the folder is writable and not being saved.

    Returns:
        (Project, model or None when the project has no trained model yet).

    Raises:
        ProjectError: missing, damaged or too new.
        ModelFileError: the model file is damaged.
    """
    path = Path(path).expanduser()
    folder = path.parent if path.name == PROJECT_FILE else path
    pj = folder / PROJECT_FILE
    for attempt in range(10):
        if not pj.is_file():
            raise ProjectError(f"{folder} is not a cnndesk project (it has no {PROJECT_FILE}).")
        try:
            data = pj.read_bytes()
            d = json.loads(data.decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ProjectError(f"{pj} is damaged and cannot be read ({e}).") from None
        try:
            project = Project.from_json(d)
            model_path = _model_path(folder, migrate(d), pj, must_exist=load_model)
        except ProjectError:
            now = _read_raw(folder)
            if now is not None and now[0] != data:
                continue  # the model it named went with a later save (its clean-up): read the new one
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ProjectError(f"{pj} is damaged: {type(e).__name__}: {e}.") from None
        project.runs = located(project.runs, folder)
        if attempt == 0:
            clean_project(folder)
        if not load_model or model_path is None:
            return project, None
        try:
            _check_model_file(model_path, d.get("model"), folder)
            return project, load_keras_model(model_path)
        except (ModelFileError, ProjectError):
            now = _read_raw(folder)
            if now is not None and now[0] != data:
                continue  # a save replaced the project while it was read: read the new one
            raise
    raise ProjectError(f"{folder} changed again and again while it was being read; try again later.")


def _check_model_file(path: Path, ref: dict, folder: Path) -> None:
    """The model file is the one project.json was saved with (size and SHA-256, where recorded)."""
    if not isinstance(ref, dict):
        return
    size, digest = ref.get("bytes"), ref.get("sha256")
    try:
        if isinstance(size, int) and path.stat().st_size != size or isinstance(digest, str) and _sha256(path) != digest:
            raise ModelFileError(f"The project {folder} is damaged: its model file {ref.get('file')} is not the one "
                                 "its project.json was saved with.")
    except OSError as e:
        raise ProjectError(f"The project {folder} is damaged: its model file cannot be read ({_reason(e)}).") from None


#: the folder of a version that holds the probe recording of its model's training
PROBES_DIR = "probes"
_PROBES_REF = re.compile(r"^versions/([0-9]{1,12})/probes$")


def _write_probes(version_dir: Path, probes) -> str:
    """Save ``probes`` into ``version_dir``, flushed to disk; return the name ``project.json`` gives it."""
    _step("probes")
    probes.save(version_dir / PROBES_DIR)  # its files written through fsutil: flushed, the usual permissions
    fsutil.fsync_folder(version_dir)
    return f"{VERSIONS_DIR}/{version_dir.name}/{PROBES_DIR}"


def open_probes(path: str | os.PathLike):
    """The probe recording saved with a project's model (a ``ProbeRecording``), or None when it has none.

    Raises:
        ProjectError: the project names a recording that is missing or damaged.
    """
    path = Path(path).expanduser()
    folder = path.parent if path.name == PROJECT_FILE else path
    raw = _read_raw(folder)
    ref = raw[1].get("probes") if raw is not None and isinstance(raw[1], dict) else None
    if not isinstance(ref, str) or not _PROBES_REF.match(ref):
        return None
    try:
        return ProbeRecording.load(folder / ref)
    except UserError as e:
        raise ProjectError(f"The project {folder} is damaged: {e}") from None
