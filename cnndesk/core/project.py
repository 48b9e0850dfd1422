"""Project folders: ``project.json`` + ``model.keras``, written atomically.

A project folder holds everything needed to reopen a session: the dataset
path and settings, class names, preprocessing, the layer stack, training
settings and history, and the trained model. Every file is written to a
temporary file in the same folder and moved into place with ``os.replace``,
so a crash or a full disk never leaves a half-written project.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .architecture import LayerSpec, TrainingSettings, preset
from .dataset import DatasetConfig
from .errors import ModelFileError, ProjectError
from .model_file import check_model_path, describe_unknown, unknown_classes

SCHEMA_VERSION = 1
PROJECT_FILE = "project.json"
MODEL_FILE = "model.keras"


@dataclass
class Project:
    """Everything a session needs besides the model weights."""

    dataset_path: str | None = None
    class_names: list[str] = field(default_factory=list)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    preset: str = "seed"
    layers: list[LayerSpec] = field(default_factory=lambda: preset("seed"))
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    saved_at: float | None = None

    @property
    def preprocessing(self):
        return self.dataset.preprocessing

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "app": "cnndesk",
            "dataset_path": self.dataset_path,
            "class_names": list(self.class_names),
            "dataset": self.dataset.to_json(),
            "preset": self.preset,
            "layers": [l.to_json() for l in self.layers],
            "settings": self.settings.to_json(),
            "history": self.history,
            "best_epoch": self.best_epoch,
            "saved_at": self.saved_at,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Project":
        d = migrate(d)
        return cls(
            dataset_path=d.get("dataset_path"),
            class_names=list(d.get("class_names", [])),
            dataset=DatasetConfig.from_json(d["dataset"]),
            preset=d.get("preset", "custom"),
            layers=[LayerSpec.from_json(l) for l in d["layers"]],
            settings=TrainingSettings.from_json(d.get("settings", {})),
            history=list(d.get("history", [])),
            best_epoch=d.get("best_epoch"),
            saved_at=d.get("saved_at"),
        )


def migrate(d: dict) -> dict:
    """Bring a ``project.json`` of any earlier schema to the current one.

    Raises:
        ProjectError: a newer schema, or not a cnndesk project.
    """
    if not isinstance(d, dict) or "schema_version" not in d:
        raise ProjectError("project.json is not a cnndesk project file (no schema_version).")
    version = d["schema_version"]
    if not isinstance(version, int) or version < 1:
        raise ProjectError(f"project.json has an invalid schema_version {version!r}.")
    if version > SCHEMA_VERSION:
        raise ProjectError(f"This project was saved by a newer cnndesk (schema {version}; this version reads up to "
                           f"{SCHEMA_VERSION}). Update cnndesk to open it.")
    # version 1 is the first schema; later versions add steps here, one per version.
    return d


def _umask() -> int:
    """The process umask, read without changing it where the system allows (os.umask is process-wide)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_temp(target: Path, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``target``, flushed to disk; return its path.

    The temporary file is removed again if ``write`` fails.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; saved files get the usual permissions
    except BaseException:
        _remove_quietly(tmp)
        raise
    return Path(tmp)


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _atomic_write(target: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file beside ``target``, then move it into place."""
    tmp = _write_temp(target, write)
    try:
        os.replace(tmp, target)
    except BaseException:
        _remove_quietly(tmp)
        raise


def save_project(folder: str | os.PathLike, project: Project, model=None) -> Path:
    """Write ``project`` (and ``model``, if given) into ``folder``.

    Both files are written to temporary files first; only when both are
    complete are they moved into place, so a failure leaves the previous
    project as it was.

    Raises:
        ProjectError: the folder cannot be written (permissions, disk full, …).
    """
    folder = Path(folder).expanduser()
    staged: list[tuple[Path, Path]] = []  # (complete temporary file, its final name)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        project.saved_at = time.time()
        text = json.dumps(project.to_json(), indent=2, allow_nan=True)
        if model is not None:
            staged.append((_write_temp(folder / MODEL_FILE, lambda p: model.save(p)), folder / MODEL_FILE))
        staged.append((_write_temp(folder / PROJECT_FILE, lambda p: p.write_text(text, encoding="utf-8")),
                       folder / PROJECT_FILE))
        for tmp, target in staged:
            os.replace(tmp, target)
    except OSError as e:
        reason = "the disk is full" if getattr(e, "errno", None) == 28 else (e.strerror or str(e))
        raise ProjectError(f"Could not save the project in {folder}: {reason}. The previous save is unchanged.") from None
    finally:
        for tmp, _ in staged:  # left over only when a later step failed
            if tmp.exists():
                _remove_quietly(tmp)
    return folder


def is_project(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / PROJECT_FILE).is_file() or (p.name == PROJECT_FILE and p.is_file())


def open_project(path: str | os.PathLike, load_model: bool = True):
    """Read a project folder (or its ``project.json``).

    Returns:
        (Project, model or None when the project has no trained model yet).

    Raises:
        ProjectError: missing, damaged or too new.
        ModelFileError: the model file is damaged.
    """
    path = Path(path).expanduser()
    folder = path.parent if path.name == PROJECT_FILE else path
    pj = folder / PROJECT_FILE
    if not pj.is_file():
        raise ProjectError(f"{folder} is not a cnndesk project (it has no {PROJECT_FILE}).")
    try:
        d = json.loads(pj.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProjectError(f"{pj} is damaged and cannot be read ({e}).") from None
    try:
        project = Project.from_json(d)
    except ProjectError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProjectError(f"{pj} is damaged: {type(e).__name__}: {e}.") from None
    model = None
    if load_model and (folder / MODEL_FILE).exists():
        model = load_keras_model(folder / MODEL_FILE)
    return project, model


def load_keras_model(path: str | os.PathLike):
    """Open a ``.keras`` file in Keras' safe mode (no code from the file runs).

    Raises:
        ModelFileError: one message for every way the file can be wrong.
    """
    path = Path(path).expanduser()
    config = check_model_path(path)  # refuses damaged and hostile archives before Keras reads them
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many unrelated types for damaged files
        unknown = unknown_classes(config, lambda name: keras.saving.get_registered_object(name) is not None)
        if unknown:
            raise ModelFileError(f"{path.name}: {describe_unknown(unknown)}.") from None
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "unsafe" in msg.lower() or "lambda" in msg.lower() or "safe_mode" in msg.lower():
            raise ModelFileError(f"{path.name} contains code (e.g. a Lambda layer) that cnndesk will not run "
                                 "from a file it did not make.") from None
        raise ModelFileError(f"{path.name} is not a readable .keras model: {msg[:300]}") from None
    if not isinstance(model, keras.Model):
        raise ModelFileError(f"{path.name} does not hold a Keras model.")
    return model
