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

With probe images, each member records them epoch by epoch as a single training
does (``core.training.probes``): its own recording, its frames reported as they come.

Each member is recorded as a run of its own by the caller, and an ensemble as one
more run naming them (``core.training.repeat_runs.group_runs``, which the window
imports without Keras; this module trains, so it loads Keras).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..data.dataset import DatasetConfig, LoadedDataset, resplit
from ..intervals import Spread, with_interval
from ..model.architecture import LayerSpec, TrainingSettings
from ..model.ensemble import build_ensemble
from ..model.inspection import predict_in_chunks
from ..tasks import TaskState
from .fitting import train
from .probes import Probe, ProbeRecorder, ProbeRecording
from .progress import TaskReports, TrainingListener, TrainResult
from .repeat_runs import check_request, member_seeds, MemberStarted

#: what is said of the best member kept: its validation figure chose it
FLATTERS = ("Kept the best of {count} models by validation accuracy ({accuracy:.3f}, seed {seed}); that figure "
            "flatters it, since it was used to choose it: expect less on new images (the group's mean, "
            "{mean:.3f}, is the fairer guess).")


@dataclass
class Member:
    """One model of a Train ×N: its seed, what ``train`` gave back, the dataset split it trained on and its
    probe recording (None without probe images)."""

    seed: int
    result: TrainResult
    data: LoadedDataset
    config: DatasetConfig
    settings: TrainingSettings
    recording: ProbeRecording | None = None

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


def train_repeats(data: LoadedDataset, layers: list[LayerSpec], settings: TrainingSettings, config: DatasetConfig,
                  count: int, *, keep: str = "best", resplit_each: bool = False,
                  listener: TrainingListener | None = None, state: TaskState | None = None,
                  fit: Callable[..., TrainResult] = train,
                  on_member: Callable[[int, Member], None] | None = None, excluded_rows=(),
                  probes: Sequence[Probe] = (), probe_every_batches: int = 0) -> Repeats:
    """Train ``count`` models like one training would, with seeds ``settings.seed``, ``+1``, …; keep one of them.

    Args:
        data: the dataset with its split (the first member's; with ``resplit_each`` the others split it again
            with their seed, leaving ``excluded_rows`` out as the first split did).
        config: the dataset's settings (its split and augmentation).
        listener: gets every member's reports, and a :class:`MemberStarted` sentence before each
            (``TaskReports(state)`` by default: ``state.report`` gets the ``MemberStarted`` itself).
        state: Stop: its interruption request stops the member training now and trains no more. Its ``report``
            gets each probe frame as it is recorded (``core.training.probes.ProbeFrame``), as a single training's.
        fit: ``fitting.train``'s stand-in (tests); called as it is.
        on_member: called with (index from 0, member) when each member ends (the app keeps its weights then).
        probes: probe images each member records (``Member.recording``) after every epoch, and every
            ``probe_every_batches`` batches when above 0.

    Raises:
        UserError: see ``repeat_runs.check_request``.
    """
    check_request(count, keep)
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
        recorder = (ProbeRecorder(ProbeRecording(probes, member_data.class_names), member_data.preprocessing,
                                  every_batches=probe_every_batches,
                                  on_frame=state.report if state is not None else None) if probes else None)
        result = fit(member_data, layers, member_settings, listener, state, augment=config.augment,
                     class_weights=config.class_weights, callbacks=(recorder.callback(),) if recorder else ())
        if recorder is not None and recorder.recording.note:
            listener.on_message(recorder.recording.note)  # why the recording stopped, for the run's log
        member = Member(seed, result, member_data, member_config, member_settings,
                        recorder.recording if recorder else None)
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
        return Repeats(members, keep, "ensemble", model, None, spread, history, cancelled, message)
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
                   cancelled, message)


def ensemble_figures(model, data: LoadedDataset, validation: bool = True) -> dict:
    """The ensemble's one row of figures: loss (cross-entropy) and accuracy on the training split and, when
    ``validation``, on the validation split with its number of images (its interval's), as a history row of
    epoch 1; without, the validation figures are None."""
    row = {"epoch": 1}
    splits = (("", data.train_index), ("val_", data.val_index if validation else data.val_index[:0]))
    for prefix, index in splits:
        loss, acc = _loss_and_accuracy(model, data, index)
        row[f"{prefix}loss"], row[f"{prefix}accuracy"] = loss, acc
    if row["val_accuracy"] is not None:
        row["val_images"] = len(data.val_index)
    return row


def _loss_and_accuracy(model, data: LoadedDataset, index) -> tuple[float | None, float | None]:
    if len(index) == 0:
        return None, None

    def predict(images):
        x = np.asarray(data.preprocessing.pixel_values(np.asarray(images, np.float32)), np.float32)
        return np.asarray(model(x, training=False))

    probs = predict_in_chunks(predict, data.rows(index), data.num_classes)
    labels = np.asarray(data.labels)[index]
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(axis=1) == labels).mean())
