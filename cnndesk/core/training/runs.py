"""Training runs kept in a project: what each run was trained with, what it reached, where its weights are.

Every training (from scratch or continued) makes one ``Run``. A run is
immutable once its training ended, except for its name and note: its model's
weights are written once (``runs/<id>/model.keras`` in the project folder,
see ``docs/projects.md``) and never rewritten. Only the metadata of runs is
held in memory; a run's weights are read from disk when it is restored
(``docs/memory.md``).

``Run.probes`` and ``Run.probe_dir`` are room for probe-image recordings: the
probe recorder fills them, this module and the project save only carry them
(``probes`` is stored in ``project.json`` as it is; the files in
``probe_dir`` are copied into ``runs/<id>/probes/`` with the run).
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..model.architecture import LayerSpec, TrainingSettings
from ..data.dataset import DatasetConfig
from ..errors import UserError
from ..intervals import Spread, interval_json, with_interval

RUNS_DIR = "runs"
RUN_MODEL = "model.keras"
PROBES_DIR = "probes"

#: what a run id may look like: it names a folder, so nothing that could leave ``runs/``
RUN_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}$")


@dataclass(frozen=True)
class Run:
    """One training run.

    Attributes:
        id: unique within the project (``20261130-024512-3f9a``); names its folder.
        name: what the user calls it ("Run 2" until renamed).
        created: when its training ended (seconds since the epoch).
        class_names, dataset, preset, layers, settings: what it was trained on and with (the seed is
            ``settings.seed`` and ``dataset.seed``).
        dataset_path: the dataset folder it was trained on (None: not recorded, a run of an older cnndesk).
        history, best_epoch, batch_loss: what it showed while training, as the session holds them (each epoch's
            row says on how many validation images it was measured, ``val_images``; a run of an older cnndesk's
            rows do not, and its accuracies are shown without an interval).
        kept_message: the sentence its training ended with on which epoch's weights it kept and why, shown
            again with its history ("" when not recorded: the run's history says which epoch it was).
        note: the user's words about it.
        parent: the run it continued from (None for a run from scratch).
        file: where its weights are now (an absolute path: in the project folder, or a session's
            scratch folder before the first save); None when they were not kept.
        probes: probe recordings' data, stored as it is (JSON-able), None when there are none.
        probe_dir: a folder of probe files that travels with the run, or None.
        trust: its temperature, calibration and novelty statistics (``core.work.trust.Trust.to_json``, JSON-able),
            None when they were not measured.
        group: the id of the Train ×N it was one of (``core.training.repeat_runs``), shared by the models it trained
            and the ensemble it kept; None for a single training.
        members: an ensemble's member runs (their ids); empty for a run that trained one model.
        spread: its group's spread of validation accuracy (``core.intervals.Spread.to_json``), None outside a group.
    """

    id: str
    name: str
    created: float = 0.0
    class_names: tuple[str, ...] = ()
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    preset: str = "custom"
    layers: tuple[LayerSpec, ...] = ()
    settings: TrainingSettings = field(default_factory=TrainingSettings)
    history: tuple[dict, ...] = ()
    best_epoch: int | None = None
    batch_loss: tuple = ()
    kept_message: str = ""
    note: str = ""
    parent: str | None = None
    file: str | None = None
    probes: Any = None
    probe_dir: str | None = None
    dataset_path: str | None = None
    trust: Any = None
    group: str | None = None
    members: tuple[str, ...] = ()
    spread: Any = None

    # -- key figures --------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        return len(self.history)

    def best(self, key: str) -> float | None:
        """The best value of ``key`` over the epochs: the highest accuracy, the lowest loss (None: never recorded)."""
        row = self.best_row(key)
        return None if row is None else row[key]

    def best_row(self, key: str) -> dict | None:
        """The epoch's row with the best value of ``key`` (the first of equals; None: never recorded)."""
        rows = [r for r in self.history if _finite(r.get(key))]
        if not rows:
            return None
        return (min if "loss" in key else max)(rows, key=lambda r: r[key])

    @property
    def val_images(self) -> int | None:
        """How many validation images its best validation accuracy was measured on (None: not recorded, a run of an
        older cnndesk, or a run without validation)."""
        row = self.best_row("val_accuracy")
        n = None if row is None else row.get("val_images")
        return n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None

    def best_accuracy_text(self) -> str:
        """Its best validation accuracy with its interval: "0.949 (95 % interval 0.831–0.986, 39 images)"; "0.949
        (number of images unknown)" for a run of an older cnndesk; "–" without validation."""
        return with_interval(self.best("val_accuracy"), self.val_images)

    @property
    def final(self) -> dict:
        """The last epoch's row (empty before any epoch)."""
        return dict(self.history[-1]) if self.history else {}

    def summary(self) -> dict:
        """Its key figures, as the runs list and ``cnndesk-cli runs --json`` give them."""
        final = self.final
        best = self.best("val_accuracy")
        return {"id": self.id, "name": self.name, "created": self.created, "epochs": self.epochs,
                "best_epoch": self.best_epoch, "best_val_accuracy": best,
                "best_val_accuracy_interval": interval_json(best, self.val_images), "val_images": self.val_images,
                "best_val_loss": self.best("val_loss"),
                "final": {**{k: final.get(k) for k in ("loss", "accuracy", "val_loss", "val_accuracy")},
                          "val_accuracy_interval": interval_json(final.get("val_accuracy"), final.get("val_images")),
                          "val_images": final.get("val_images")},
                "note": self.note, "parent": self.parent, "has_weights": self.file is not None,
                "probe_frames": self.probe_frames, "group": self.group, "ensemble_of": list(self.members),
                "spread": self.spread}

    @property
    def is_ensemble(self) -> bool:
        """Whether its model is an ensemble of other runs' models (``core.model.ensemble``)."""
        return bool(self.members)

    def group_text(self, digits: int = 3) -> str:
        """What the runs list says of its group: "ensemble of 5 · mean 0.720, 0.513–0.949" ("" for a single run),
        its figures in ``digits`` decimals."""
        spread = Spread.from_json(self.spread)
        figures = (f"mean {spread.mean:.{digits}f}, {spread.low:.{digits}f}–{spread.high:.{digits}f}"
                   if spread is not None and spread.values else "")
        what = f"ensemble of {len(self.members)}" if self.members else ("one of ×" + str(len(spread.values))
                                                                          if spread is not None and spread.values else "")
        return " · ".join(p for p in (what, figures) if p) if self.group else ""

    @property
    def probe_frames(self) -> int | None:
        """How many frames its probe recording holds (``core.training.probes.recording_summary``); None: it has none."""
        frames = self.probes.get("frames") if isinstance(self.probes, dict) else None
        return frames if isinstance(frames, int) and not isinstance(frames, bool) else None

    def described(self) -> str:
        """"the model of the previous run (12 epochs, validation accuracy 0.917 (95 % interval 0.782–0.971, 36
        images))": what Bring Back Previous Model makes current, by the run's kept epoch."""
        rows = [r for r in self.history if r.get("epoch") == self.best_epoch] or list(self.history[-1:])
        acc = rows[0].get("val_accuracy") if rows else None
        n = len(self.history)
        epochs = f"{n} epoch{'s' if n != 1 else ''}"
        if acc is None:
            return f"the model of the previous run ({epochs})"
        shown = with_interval(acc, rows[0].get("val_images"))
        return f"the model of the previous run ({epochs}, validation accuracy {shown})"

    # -- changing -----------------------------------------------------------------------------
    def renamed(self, name: str) -> "Run":
        return dataclasses.replace(self, name=name)

    def noted(self, note: str) -> "Run":
        return dataclasses.replace(self, note=note)

    def with_probes(self, probes, probe_dir: str | None = None) -> "Run":
        """The same run with probe recordings (``probes`` stored as it is, ``probe_dir`` copied with the run)."""
        return dataclasses.replace(self, probes=probes, probe_dir=probe_dir)

    def at(self, file: str | None, probe_dir: str | None = None) -> "Run":
        """The same run with its weights (and probe files) found elsewhere."""
        return dataclasses.replace(self, file=file, probe_dir=probe_dir if probe_dir is not None else self.probe_dir)

    def kept_at(self, kept: "KeptRun | None") -> "Run":
        """The same run with the weights and probe recording the engine wrote for it (``kept``; None: as it is)."""
        if kept is None:
            return self
        run = self.at(kept.file)
        return run.with_probes(kept.probes, kept.probe_dir) if kept.probe_dir is not None else run

    # -- JSON ---------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """Everything but where its files are (the save adds ``weights`` and ``probe_files``)."""
        return {"id": self.id, "name": self.name, "created": self.created, "class_names": list(self.class_names),
                "dataset": self.dataset.to_json(), "dataset_path": self.dataset_path, "preset": self.preset,
                "layers": [l.to_json() for l in self.layers], "settings": self.settings.to_json(),
                "history": list(self.history), "best_epoch": self.best_epoch,
                "batch_loss": [[round(float(x), 4), float(f"{y:.5g}")] for x, y in self.batch_loss],
                "kept_message": self.kept_message, "note": self.note, "parent": self.parent, "probes": self.probes,
                "trust": self.trust, "group": self.group, "members": list(self.members), "spread": self.spread}

    @classmethod
    def from_json(cls, d: dict) -> "Run":
        """A run from ``project.json``; its ``file`` is the project-relative name the save recorded."""
        run_id = d.get("id")
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise ValueError(f"a run has an invalid id {str(run_id)[:80]!r}")
        weights = d.get("weights")
        file = weights.get("file") if isinstance(weights, dict) else None
        if file is not None and file != weights_name(run_id) and not _legacy_model_name(file):
            raise ValueError(f"run {run_id} names the weights file {str(file)[:100]!r}, which is not one of cnndesk's")
        probe_dir = d.get("probe_files")
        return cls(
            id=run_id, name=str(d.get("name") or run_id), created=float(d.get("created") or 0.0),
            class_names=tuple(str(c) for c in d.get("class_names", [])),
            dataset=DatasetConfig.from_json(d.get("dataset") or {}), preset=str(d.get("preset", "custom")),
            dataset_path=d.get("dataset_path") if isinstance(d.get("dataset_path"), str) else None,
            layers=tuple(LayerSpec.from_json(l) for l in d.get("layers", [])),
            settings=TrainingSettings.from_json(d.get("settings") or {}),
            history=tuple(history_rows(d.get("history"))),
            best_epoch=d.get("best_epoch"), batch_loss=tuple(finite_pairs(d.get("batch_loss"))),
            kept_message=d.get("kept_message") if isinstance(d.get("kept_message"), str) else "",
            note=str(d.get("note") or ""), parent=d.get("parent") if isinstance(d.get("parent"), str) else None,
            file=file, probes=d.get("probes"),
            probe_dir=probe_name(run_id) if probe_dir == probe_name(run_id) else None,
            trust=d.get("trust") if isinstance(d.get("trust"), dict) else None,
            group=d.get("group") if isinstance(d.get("group"), str) else None,
            members=tuple(m for m in d.get("members") or () if isinstance(m, str) and RUN_ID.match(m))
            if isinstance(d.get("members"), list) else (),
            spread=d.get("spread") if Spread.from_json(d.get("spread")) is not None else None,
        )


def weights_name(run_id: str) -> str:
    """Where a run's weights go inside a project folder."""
    return f"{RUNS_DIR}/{run_id}/{RUN_MODEL}"


def probe_name(run_id: str) -> str:
    """Where a run's probe files go inside a project folder."""
    return f"{RUNS_DIR}/{run_id}/{PROBES_DIR}"


def _legacy_model_name(name: str) -> bool:
    """A project model file of the layout before runs: a run made from such a project points at it."""
    return name == "model.keras" or re.match(r"^versions/[0-9]{1,12}/model\.keras$", name) is not None


def located(runs, folder: str | Path) -> list[Run]:
    """``runs`` with their relative file names (as read from ``project.json``) made absolute in ``folder``.

    A weights file that is not there leaves the run without weights (listed, not restorable).
    """
    folder = Path(folder)
    out = []
    for run in runs:
        file = folder / run.file if run.file is not None else None
        probes = folder / run.probe_dir if run.probe_dir is not None else None
        out.append(dataclasses.replace(run, file=str(file) if file is not None and file.is_file() else None,
                                       probe_dir=str(probes) if probes is not None and probes.is_dir() else None))
    return out


def saved_in(runs, folder: str | Path) -> list[Run]:
    """``runs`` as found after a save into ``folder``: each whose folder the save wrote points there."""
    folder = Path(folder)
    out = []
    for run in runs:
        file = folder / weights_name(run.id)
        probes = folder / probe_name(run.id)
        out.append(run.at(str(file) if file.is_file() else run.file,
                          str(probes) if probes.is_dir() else run.probe_dir))
    return out


def new_run(runs, run_id: str, *, class_names, dataset: DatasetConfig, dataset_path: str | Path | None, preset: str,
            layers, settings: TrainingSettings, history, best_epoch: int | None, kept_message: str = "",
            batch_loss=(), parent: str | None = None, trust: Any = None, probes: Any = None,
            group: str | None = None, members=(), spread: Any = None) -> Run:
    """The run a training that just ended makes, to be listed after ``runs`` (the project's runs so far).

    The one way a run is recorded, in the app (``ui.runs_control``) and by
    ``cnndesk-cli train``: named after ``runs`` ("Run 3"), stamped now, with what
    it was trained on and with, and what it reached, copied into a record that
    later changes do not reach. The dataset folder is kept resolved, so a run
    trained from a relative path still finds it. Its weights are not kept yet
    (``file`` is None): the app's engine or the project save writes them.

    Args:
        run_id: its id (``core.project.schema.new_run_id``; the app chooses it when training starts).
        batch_loss: ``(epoch position, loss)`` pairs (``batch_point``), thinned as the session thins them.
        parent: the run it continued from; None for a training from scratch.
        trust: ``core.work.trust.Trust.to_json()``, when it was measured.
        probes: its probe recording's data (``core.training.probes.recording_summary``), when one was made.
        group, members, spread: for a run of a Train ×N (``core.training.repeats``): its group's id, an
            ensemble's member runs, the group's spread (``Spread.to_json``).
    """
    return Run(id=run_id, name=next_run_name(runs), created=time.time(), class_names=tuple(class_names),
               dataset=dataset, dataset_path=None if dataset_path is None else str(Path(dataset_path).resolve()),
               preset=preset, layers=tuple(layers), settings=settings, history=tuple(dict(r) for r in history),
               best_epoch=best_epoch, batch_loss=tuple(tuple(p) for p in batch_loss), kept_message=kept_message,
               parent=parent, trust=trust, probes=probes, group=group, members=tuple(members), spread=spread)


def batch_point(report) -> tuple[float, float]:
    """A batch's point on its run's batch-loss line (``Run.batch_loss``): (epoch position, loss).

    ``report`` is a ``core.training.progress.BatchReport``; the position of batch ``b`` of
    ``n`` in epoch ``e`` is ``e - 1 + b / n``.
    """
    return report.epoch - 1 + report.batch / report.steps, float(report.loss)


def next_run_name(runs) -> str:
    """"Run N", N one more than the highest number a run is named with (so a deleted number is not reused)."""
    numbers = [int(m.group(1)) for r in runs if (m := re.fullmatch(r"Run (\d{1,6})", r.name))]
    return f"Run {max(numbers, default=len(list(runs))) + 1}"


@dataclass(frozen=True)
class KeptRun:
    """Where a run's weights (and its probe recording) were written until a save puts them into the project.

    Attributes:
        file: the weights.
        probe_dir: the recording's folder, None when its training recorded no probes.
        probes: the recording's summary (``core.training.probes.recording_summary``), None without one.
    """

    file: str
    probe_dir: str | None = None
    probes: Any = None


def run_before(runs, current: str | None, before: str | None = None) -> Run | None:
    """The run Bring Back Previous Model makes current, of ``runs`` whose weights were kept: ``before``, the run
    the current model (of run ``current``) replaced, whose model the engine holds beside it (so that it comes back
    at once, and doing it twice undoes it); else (after a project was opened, or that run was deleted) the latest
    run other than the current one, read from its file."""
    runs = [r for r in runs if r.id != current and r.file is not None]
    return next((r for r in runs if r.id == before), None) or (runs[-1] if runs else None)


def find_run(runs, name: str) -> Run:
    """The run called ``name`` (its name, or its id).

    Raises:
        UserError: no run or several runs have that name.
    """
    runs = list(runs)
    matches = [r for r in runs if r.id == name] or [r for r in runs if r.name == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(repr(r.name) for r in runs) or "none"
        raise UserError(f"The project has no run called {name!r} (its runs: {known}).")
    raise UserError(f"Several runs are called {name!r}; name one by its id "
                    f"({', '.join(r.id for r in matches)}).")


def legacy_run(project, model_file: str | None) -> Run:
    """The one run an older project (saved before runs were kept) is given: its current model's."""
    return Run(id=project.run, name="Run 1", created=float(project.saved_at or time.time()),
               class_names=tuple(project.class_names), dataset=project.dataset, dataset_path=project.dataset_path,
               preset=project.preset, layers=tuple(project.layers), settings=project.settings,
               history=tuple(project.history),
               best_epoch=project.best_epoch, batch_loss=tuple(tuple(p) for p in project.batch_loss),
               file=model_file)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def history_rows(value) -> list[dict]:
    """The epoch rows of a history read from ``project.json``, with the losses the save wrote as null back as NaN.

    ``project.json`` is strict JSON, so a NaN or infinite figure (a diverged run's loss) is saved as null. A
    loss and an accuracy are figures every epoch has: null reads back as NaN. The validation figures are null
    too in a run without validation images; they read back as NaN only when the other one of them is there.
    """
    rows = []
    for row in value if isinstance(value, list) else []:
        if not isinstance(row, dict):
            continue
        row = dict(row)
        for key in ("loss", "accuracy"):
            if key in row and row[key] is None:
                row[key] = math.nan
        for key, other in (("val_loss", "val_accuracy"), ("val_accuracy", "val_loss")):
            if key in row and row[key] is None and row.get(other) is not None:
                row[key] = math.nan
        rows.append(row)
    return rows


def finite_pairs(value) -> list[tuple[float, float]]:
    """``[(x, y), …]`` of finite numbers from ``value``; anything else is left out (a hand-edited file)."""
    out = []
    for item in value if isinstance(value, list) else []:
        try:
            x, y = float(item[0]), float(item[1])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            out.append((x, y))
    return out
