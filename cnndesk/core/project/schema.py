"""The project file's content: the ``Project`` record, its JSON schema and the migration of older schemas.

Where the files of a project folder go, and how a save commits them, is
:mod:`.store`; ``docs/projects.md`` describes the format.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..model.architecture import LayerSpec, preset, TrainingSettings
from ..data.dataset import DatasetConfig
from ..errors import ProjectError
from ..training.runs import finite_pairs, history_rows, legacy_run, Run, RUN_ID

SCHEMA_VERSION = 2
PROJECT_FILE = "project.json"
MODEL_FILE = "model.keras"  # inside a version folder (schema 2), or beside project.json (schema 1)
VERSIONS_DIR = "versions"


@dataclass
class Project:
    """Everything a session needs besides the model weights.

    ``run`` names the training run the project's model came from (None when the
    project has no model, or was saved by a cnndesk that did not record runs).
    ``batch_loss`` is the run's loss per batch as ``[epoch position, loss]`` pairs
    (thinned by the session to a few thousand), so a reopened chart draws the same
    line; ``viewer_images`` are the image files the viewer showed; ``excluded_files``
    the dataset's image files the user excluded from training and validation (the
    files stay where they are); ``viewer_tab`` the viewer's tab that was shown (a
    ``ViewerPanel.TABS`` key). All four are optional: older projects open without them.
    ``model_file`` is the name of the file the project's model was opened from (a model the
    user brought, whose outputs they may name and whose pixel mode they may choose), None for
    a model cnndesk trained.

    ``runs`` are the project's training runs (``core.runs``), oldest first; ``run`` is the
    current model's. A project saved before runs were kept opens with one run made from
    its model.

    ``dataset.preprocessing`` is how the model is fed its images, including its pixel
    mode (``Preprocessing.pixels``, e.g. "caffe" for a ResNet the user brought). Projects
    written before pixel modes stored a ``scale`` instead and open with the mode it meant
    (``Preprocessing.from_json``): 1 is "0-255" (cnndesk's own models, which rescale
    inside), 1/255 is "0-1".
    """

    dataset_path: str | None = None
    class_names: list[str] = field(default_factory=list)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    preset: str = "seed"
    layers: list[LayerSpec] = field(default_factory=lambda: preset("seed"))
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    saved_at: float | None = None
    run: str | None = None
    batch_loss: list[list[float]] = field(default_factory=list)
    viewer_images: list[str] = field(default_factory=list)
    model_file: str | None = None
    runs: list[Run] = field(default_factory=list)
    excluded_files: list[str] = field(default_factory=list)
    viewer_tab: str | None = None

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
            "run": self.run,
            "batch_loss": [[round(float(x), 4), float(f"{loss:.5g}")] for x, loss in self.batch_loss],
            "viewer_images": list(self.viewer_images),
            "model_file": self.model_file,
            "runs": [r.to_json() for r in self.runs],
            "excluded_files": list(self.excluded_files),
            "viewer_tab": self.viewer_tab,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Project":
        d = migrate(d)
        run = d.get("run")
        project = cls(
            dataset_path=d.get("dataset_path"),
            class_names=list(d.get("class_names", [])),
            dataset=DatasetConfig.from_json(d["dataset"]),
            preset=d.get("preset", "custom"),
            layers=[LayerSpec.from_json(l) for l in d["layers"]],
            settings=TrainingSettings.from_json(d.get("settings", {})),
            history=history_rows(d.get("history")),
            best_epoch=d.get("best_epoch"),
            saved_at=d.get("saved_at"),
            run=None if run is None else str(run),
            batch_loss=[list(p) for p in finite_pairs(d.get("batch_loss"))],
            viewer_images=[str(p) for p in d.get("viewer_images") or [] if isinstance(p, str)],
            model_file=d.get("model_file") if isinstance(d.get("model_file"), str) else None,
            excluded_files=[str(p) for p in d.get("excluded_files") or [] if isinstance(p, str)],
            viewer_tab=d.get("viewer_tab") if isinstance(d.get("viewer_tab"), str) else None,
        )
        project.runs = _runs(d, project)
        return project


def _runs(d: dict, project: Project) -> list[Run]:
    """The runs ``project.json`` lists; for a project saved before runs, one run made from its model."""
    if isinstance(d.get("runs"), list):
        return [Run.from_json(r) for r in d["runs"] if isinstance(r, dict)]
    ref = d.get("model")
    if not isinstance(ref, dict) or not isinstance(ref.get("file"), str):
        return []  # saved before any training: no run yet
    if project.run is None or not RUN_ID.match(project.run):  # its id names a folder: one of ours
        project.run = new_run_id()
    return [legacy_run(project, ref["file"])]


def new_run_id() -> str:
    """A name for a training run, unique enough to tell runs apart: ``20261130-024512-3f9a``."""
    return time.strftime("%Y%m%d-%H%M%S", time.localtime()) + "-" + os.urandom(2).hex()


def migrate(d: dict) -> dict:
    """Bring a ``project.json`` of any earlier schema to the current one (a new dict).

    Schema 1 kept the model as ``model.keras`` beside ``project.json`` and had no
    ``model`` entry or run id; schema 2 names the model file (and its size and
    SHA-256) in ``model``.

    Raises:
        ProjectError: a newer schema, or not a cnndesk project.
    """
    if not isinstance(d, dict) or "schema_version" not in d:
        raise ProjectError("project.json is not a cnndesk project file (no schema_version).")
    version = d["schema_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProjectError(f"project.json has an invalid schema_version {version!r}.")
    if version > SCHEMA_VERSION:
        raise ProjectError(f"This project was saved by a newer cnndesk (schema {version}; this version reads up to "
                           f"{SCHEMA_VERSION}). Update cnndesk to open it.")
    d = dict(d)
    if version == 1:  # 1 -> 2: the model, if any, is model.keras beside project.json
        d["model"] = {"file": MODEL_FILE, "optional": True}
        d.setdefault("run", None)
        d["schema_version"] = version = 2
    return d
