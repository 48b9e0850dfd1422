"""Train ×N: the same training on the same dataset with N seeds (and splits, if asked), and what is kept of them.

On a folder of a few dozen images per class one training is one draw of a
lottery: the seed alone moves the validation accuracy by tenths. ``train_repeats``
trains ``count`` models with the seeds ``seed, seed + 1, …`` (with ``resplit`` each
on its own train/validation split of the same seed), reports "model 2 of 5"
before each, and gives back every member with the spread of their validation
accuracies (``core.intervals.Spread``). It keeps one model of them:

- ``best``: the member with the highest validation accuracy. That figure flatters
  it: it was used to choose it (:data:`FLATTERS`).
- ``ensemble``: one Keras model averaging the members' probabilities
  (``core.model.ensemble``), measured on the first member's validation images
  (not with ``resplit``: the other members trained on some of them).

The kept model's confidences are calibrated as one training's are
(``core.work.trust.measure_trust``), on the split :func:`trust_split` names: an
ensemble's temperature is fitted on the logarithm of its averaged
probabilities over the shared validation split; with ``resplit`` no image is
unseen by every member, so an ensemble is left uncalibrated and says so.

Each member is recorded as a run of its own by the caller (``core.training.runs.new_run``
with the group's id), and an ensemble as one more run naming them (:func:`group_runs`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..data.dataset import DatasetConfig, LoadedDataset, resplit
from ..errors import UserError
from ..intervals import Spread, with_interval
from ..model.architecture import LayerSpec, TrainingSettings
from ..model.ensemble import build_ensemble
from ..tasks import TaskState
from .runs import new_run

if TYPE_CHECKING:  # progress and fitting load Keras: imported when a training starts
    from .progress import TrainingListener, TrainResult

#: what a Train ×N keeps
KEEP = ("best", "ensemble")
#: the most models one Train ×N trains
MOST = 20
#: what is said when an ensemble of members trained on different splits cannot be calibrated
UNCALIBRATED_RESPLIT = ("Confidences not calibrated: each model had its own split, so every validation image was a "
                        "training image of another model; they are shown as the ensemble gives them.")
#: what is said of the best member kept: its validation figure chose it
FLATTERS = ("Kept the best of {count} models by validation accuracy ({accuracy:.3f}, seed {seed}); that figure "
            "flatters it, since it was used to choose it: expect less on new images (the group's mean, "
            "{mean:.3f}, is the fairer guess).")


@dataclass(frozen=True)
class MemberStarted:
    """Reported before each member trains: "Model 2 of 5 (seed 1338)"."""

    index: int  # 1-based
    count: int
    seed: int

    def __str__(self) -> str:
        return f"Model {self.index} of {self.count} (seed {self.seed})"


@dataclass
class Member:
    """One model of a Train ×N: its seed, what ``train`` gave back and the dataset split it trained on."""

    seed: int
    result: TrainResult
    data: LoadedDataset
    config: DatasetConfig
    settings: TrainingSettings

    @property
    def val_accuracy(self) -> float | None:
        return self.result.final_val_accuracy


@dataclass
class Repeats:
    """What a Train ×N made: its members, their spread and the model it keeps.

    Attributes:
        members: every member trained, in order (a stopped run's last one included; it is not chosen from).
        keep: "best" or "ensemble", as asked; ``kept`` is what it came to ("best" when fewer than two members
            finished, or no member has a validation figure).
        model: the model kept (the best member's, or the ensemble).
        best: the index of the member kept (None for an ensemble).
        spread: the members' validation accuracies (of those that finished).
        history: for an ensemble, its one row of figures (training and validation loss and accuracy, the
            validation ones None with ``resplit``); for the best member, its history.
        cancelled: Stop was pressed.
        message: the sentence that says what was kept and how far to trust its figure.
        resplit: each member trained on its own split.
    """

    members: list[Member]
    keep: str
    kept: str
    model: object
    best: int | None
    spread: Spread
    history: list[dict] = field(default_factory=list)
    cancelled: bool = False
    message: str = ""
    resplit: bool = False

    @property
    def finished(self) -> list[Member]:
        return [m for m in self.members if not m.result.cancelled]

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.members]

    def lines(self) -> list[str]:
        """The sentences the log and the CLI end a Train ×N with: the spread, then what was kept."""
        return [s for s in (self.spread.describe().capitalize() + "." if self.spread.values else "",
                            self.message) if s]

    def to_json(self) -> dict:
        return {"repeats": len(self.members), "seeds": self.seeds, "keep": self.kept,
                "spread": self.spread.to_json(), "kept_member": None if self.best is None else self.best + 1,
                "members": [{"seed": m.seed, "val_accuracy": m.val_accuracy, "best_epoch": m.result.best_epoch,
                             "stopped": m.result.cancelled} for m in self.members],
                "val_accuracy": self.history[-1].get("val_accuracy") if self.history else None,
                "message": self.message, "cancelled": self.cancelled}


def member_seeds(seed: int, count: int) -> list[int]:
    """The seeds of a Train ×``count`` from ``seed``: the first is the seed a single training would use."""
    return [seed + i for i in range(count)]


def check_request(count: int, keep: str) -> None:
    """Refuse a Train ×N that cannot be: too few or too many models, or an unknown thing to keep."""
    if not 2 <= count <= MOST:
        raise UserError(f"Train ×N trains between 2 and {MOST} models (asked for {count}).")
    if keep not in KEEP:
        raise UserError(f"Keep {keep!r}? Choose {' or '.join(KEEP)}.")


def train_repeats(data: LoadedDataset, layers: list[LayerSpec], settings: TrainingSettings, config: DatasetConfig,
                  count: int, *, keep: str = "best", resplit_each: bool = False,
                  listener: TrainingListener | None = None, state: TaskState | None = None,
                  fit: Callable[..., TrainResult] | None = None,
                  on_member: Callable[[int, Member], None] | None = None, excluded_rows=()) -> Repeats:
    """Train ``count`` models like one training would, with seeds ``settings.seed``, ``+1``, …; keep one of them.

    Args:
        data: the dataset with its split (the first member's; with ``resplit_each`` the others split it again
            with their seed, leaving ``excluded_rows`` out as the first split did).
        config: the dataset's settings (its split and augmentation).
        listener: gets every member's reports, and a :class:`MemberStarted` sentence before each
            (``TaskReports(state)`` by default: ``state.report`` gets the ``MemberStarted`` itself).
        state: Stop: its interruption request stops the member training now and trains no more.
        fit: ``fitting.train``'s stand-in (tests); called as it is.
        on_member: called with (index from 0, member) when each member ends (the app keeps its weights then).

    Raises:
        UserError: see :func:`check_request`.
    """
    check_request(count, keep)
    from .progress import TaskReports

    if fit is None:
        from .fitting import train as fit
    listener = listener or TaskReports(state)
    members: list[Member] = []
    for i, seed in enumerate(member_seeds(settings.seed, count)):
        member_config = dataclasses.replace(config, seed=seed) if resplit_each else config
        member_data = resplit(data, member_config, excluded_rows) if resplit_each and i else data
        member_settings = dataclasses.replace(settings, seed=seed)
        started = MemberStarted(i + 1, count, seed)
        if isinstance(listener, TaskReports):
            listener.state.report(started)
        else:
            listener.on_message(str(started))
        result = fit(member_data, layers, member_settings, listener, state, augment=config.augment,
                     class_weights=config.class_weights)
        member = Member(seed, result, member_data, member_config, member_settings)
        members.append(member)
        if on_member is not None:
            on_member(i, member)
        if result.cancelled or (state is not None and state.is_interruption_requested()):
            break
    return _kept(data, members, keep, resplit_each, cancelled=len(members) < count or members[-1].result.cancelled)


def _kept(data: LoadedDataset, members: list[Member], keep: str, resplit_each: bool, cancelled: bool) -> Repeats:
    finished = [m for m in members if not m.result.cancelled] or members[:1]
    measured = [m.val_accuracy for m in finished if m.val_accuracy is not None]
    spread = Spread(tuple(float(v) for v in measured), len(data.val_index) if not resplit_each else
                    len(finished[0].data.val_index))
    if keep == "ensemble" and len(finished) >= 2:
        model = build_ensemble([m.result.model for m in finished])
        history = [ensemble_figures(model, data, validation=not resplit_each)]
        acc = history[0]["val_accuracy"]
        seeds = [m.seed for m in finished]
        figure = (f"validation accuracy {with_interval(acc, len(data.val_index))} on the first model's validation "
                  "images" if acc is not None else
                  "no validation figure: with a new split for each model, its validation images were training "
                  "images of the other models")
        message = (f"Kept an ensemble of {len(finished)} models (seeds {seeds[0]}–{seeds[-1]}) that averages their "
                   f"probabilities; {figure}.")
        return Repeats(members, keep, "ensemble", model, None, spread, history, cancelled, message, resplit_each)
    scored = [(m.val_accuracy if m.val_accuracy is not None else -1.0, -i) for i, m in enumerate(finished)]
    best = -max(scored)[1]
    chosen = finished[best]
    index = members.index(chosen)
    if len(finished) < 2 or chosen.val_accuracy is None:
        message = (f"Kept model {index + 1} (seed {chosen.seed}): "
                   + ("no other model finished." if len(finished) < 2 else "no model had validation images."))
    else:
        message = FLATTERS.format(count=len(finished), accuracy=chosen.val_accuracy, seed=chosen.seed,
                                  mean=spread.mean)
    return Repeats(members, keep, "best", chosen.result.model, index, spread, list(chosen.result.history),
                   cancelled, message, resplit_each)


def trust_split(repeats: Repeats) -> LoadedDataset | None:
    """The dataset, with its split, on which the kept model's trust is measured (``core.work.trust.measure_trust``):
    the best member's own; for an ensemble the split all its members shared; None for an ensemble of members
    trained on splits of their own (:data:`UNCALIBRATED_RESPLIT`)."""
    if repeats.kept == "best":
        return repeats.members[repeats.best].data if repeats.best is not None else None
    return None if repeats.resplit else repeats.finished[0].data


def ensemble_figures(model, data: LoadedDataset, validation: bool = True) -> dict:
    """The ensemble's one row of figures: loss (cross-entropy) and accuracy on the training split and, when
    ``validation``, on the validation split (None otherwise), as a history row of epoch 1."""
    row = {"epoch": 1}
    splits = (("", data.train_index), ("val_", data.val_index if validation else data.val_index[:0]))
    for prefix, index in splits:
        loss, acc = _loss_and_accuracy(model, data, index)
        row[f"{prefix}loss"], row[f"{prefix}accuracy"] = loss, acc
    return row


def _loss_and_accuracy(model, data: LoadedDataset, index) -> tuple[float | None, float | None]:
    from ..model.inspection import predict_in_chunks

    if len(index) == 0:
        return None, None

    def predict(images):
        x = np.asarray(data.preprocessing.pixel_values(np.asarray(images, np.float32)), np.float32)
        return np.asarray(model(x, training=False))

    probs = predict_in_chunks(predict, data.rows(index), data.num_classes)
    labels = np.asarray(data.labels)[index]
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(axis=1) == labels).mean())



def group_runs(runs, repeats: Repeats, run_ids, *, ensemble_id: str | None, class_names, dataset_path, preset: str,
               layers, batch_losses=None) -> list:
    """The runs a Train ×N adds after ``runs``: one per member (ids ``run_ids``), and the ensemble's (``ensemble_id``)
    when one was kept; all in one group (the first member's id), each with the group's spread. The member kept as
    the best says so in its kept sentence. Their weights are not kept yet (``Run.file`` is None), as ``new_run``'s.

    Args:
        batch_losses: each member's batch-loss line (``Run.batch_loss``), when drawn.
    """
    group, spread = run_ids[0], repeats.spread.to_json()
    out = []
    for i, (member, run_id) in enumerate(zip(repeats.members, run_ids)):
        kept = member.result.kept_message
        if repeats.best == i:
            kept = f"{kept} {repeats.message}".strip()
        out.append(new_run([*runs, *out], run_id, class_names=class_names, dataset=member.config,
                           dataset_path=dataset_path, preset=preset, layers=layers, settings=member.settings,
                           history=member.result.history, best_epoch=member.result.best_epoch, kept_message=kept,
                           batch_loss=batch_losses[i] if batch_losses else (), group=group, spread=spread))
    if repeats.kept == "ensemble":
        if ensemble_id is None:
            raise ValueError("an ensemble's run needs an id")
        first = repeats.finished[0]
        out.append(new_run([*runs, *out], ensemble_id, class_names=class_names, dataset=first.config,
                           dataset_path=dataset_path, preset=preset, layers=layers, settings=first.settings,
                           history=repeats.history, best_epoch=None, kept_message=repeats.message, group=group,
                           members=[run_ids[repeats.members.index(m)] for m in repeats.finished], spread=spread))
    return out


def kept_run_id(repeats: Repeats, run_ids, ensemble_id: str | None) -> str:
    """The id of the run whose model a Train ×N keeps: the ensemble's, or the best member's."""
    return ensemble_id if repeats.kept == "ensemble" else run_ids[repeats.best]
