"""Likely mislabelled images, found by out-of-sample scores.

An image whose out-of-sample predicted
probability of its own label is low is a candidate (confident learning):
validation images are scored by the current model, which never trained on them;
training images only by models retrained without them
(:func:`out_of_fold_probabilities`, k folds). :func:`rank_label_doubts` says for
each candidate which of the two scored it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import numpy as np

from ..errors import Cancelled, UserError
from ..tasks import TaskState

VALIDATION, KFOLD = "validation", "k-fold"


#: how a doubt was scored: a few words for a table column, and a sentence
SCORED_BY = {VALIDATION: "validation, current model", KFOLD: "training, k-fold retrain"}


SCORED_BY_SENTENCE = {VALIDATION: "A validation image, scored by the current model (which never trained on it).",
                      KFOLD: "A training image, scored by a retrain that left it out (k-fold)."}


@dataclass(frozen=True)
class LabelDoubt:
    """An image whose label the out-of-sample prediction disagrees with."""

    row: int  # of the dataset
    given: int  # its label (folder)
    predicted: int
    given_probability: float  # out-of-sample probability of ``given``: the lower, the likelier a wrong label
    confidence: float  # probability of ``predicted``
    scored_by: str  # VALIDATION or KFOLD


@dataclass
class LabelScores:
    """Out-of-sample class probabilities of some rows of a dataset, and which way each row was scored."""

    rows: np.ndarray  # (M,) dataset rows
    probabilities: np.ndarray  # (M, classes)
    scored_by: np.ndarray  # (M,) VALIDATION or KFOLD
    notes: list[str] = field(default_factory=list)  # sentences: what was scored how, what was not

    def doubts(self, labels: np.ndarray, limit: int | None = None) -> list["LabelDoubt"]:
        return rank_label_doubts(self.probabilities, self.rows, labels, self.scored_by, limit)

    def merged(self, other: "LabelScores") -> "LabelScores":
        return LabelScores(np.concatenate([self.rows, other.rows]),
                           np.concatenate([self.probabilities, other.probabilities]),
                           np.concatenate([self.scored_by, other.scored_by]), self.notes + other.notes)


def rank_label_doubts(probabilities: np.ndarray, rows: np.ndarray, labels: np.ndarray, scored_by,
                      limit: int | None = None) -> list[LabelDoubt]:
    """The rows whose predicted class differs from their label, least probable label first.

    Args:
        probabilities: (M, classes) out-of-sample probabilities of ``rows``.
        rows: the dataset rows they belong to.
        labels: the label of every dataset row.
        scored_by: one string for all, or one per row.
        limit: keep this many at most.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    given = np.asarray(labels)[rows]
    how = np.broadcast_to(np.asarray(scored_by, dtype=object), rows.shape)
    if not len(rows):
        return []
    predicted = probabilities.argmax(axis=1)
    p_given = probabilities[np.arange(len(rows)), given]
    order = [k for k in np.argsort(p_given, kind="stable") if predicted[k] != given[k]]
    doubts = [LabelDoubt(int(rows[k]), int(given[k]), int(predicted[k]), float(p_given[k]),
                         float(probabilities[k, predicted[k]]), str(how[k])) for k in order]
    return doubts[:limit] if limit is not None else doubts


def stratified_folds(rows: np.ndarray, labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``rows`` dealt into ``k`` folds, each class spread evenly over them (seeded)."""
    if k < 2:
        raise UserError("Scoring training images needs at least 2 folds.")
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=np.int64)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(np.asarray(labels)[rows]):
        members = rows[np.asarray(labels)[rows] == c]
        rng.shuffle(members)
        for n, r in enumerate(members.tolist()):
            folds[(n + offset) % k].append(r)
        offset += len(members)
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


def out_of_fold_probabilities(data, layers, settings, folds: int = 3, epochs: int | None = None,
                              state: TaskState | None = None) -> LabelScores:
    """Score every training image with a model trained on the other folds only (needs TensorFlow).

    Each of ``folds`` retrains uses the given layers and settings (``epochs``
    epochs when given, else the settings' own), without validation or early
    stopping, and predicts the fold it did not see. Fewer epochs score worse:
    on the planted set of ``benchmarks/data_quality.py`` retrains of 3 epochs
    got 61 % of their held-out images right against 83 % with 8, and ranked
    fewer wrong labels first (``docs/data-quality.md``).

    ``state`` hears which retrain runs (``set_status``: "Retrain 2 of 3") and how far all of them are
    (``set_progress_value``).

    Raises:
        Cancelled: ``state`` asked to stop (between batches).
    """
    # here, not at the top: these import Keras, which the window must not load before the engine does
    from ..model.inspection import predict_in_chunks
    from ..training.fitting import train
    from ..training.progress import TrainingListener

    parts = stratified_folds(data.train_index, data.labels, folds, settings.seed)
    # exactly the epochs measured for scoring (docs/data-quality.md): no minimum of steps for these retrains
    retrain = dataclasses.replace(settings, epochs=max(1, epochs or settings.epochs), restore_best=False, min_steps=0)
    probs = np.zeros((len(data.labels), data.num_classes), np.float32)

    state = state or TaskState()

    class Progress(TrainingListener):
        fold = 0

        def on_batch(self, report):
            done = (report.epoch - 1 + report.batch / report.steps) / report.epochs
            state.set_progress_value(100.0 * (self.fold + done) / folds)

    listener = Progress()
    for f, held_out in enumerate(parts):
        listener.fold = f
        state.set_status(f"Retrain {f + 1} of {folds}")
        rest = np.sort(np.concatenate([p for g, p in enumerate(parts) if g != f]))
        fold_data = dataclasses.replace(data, train_index=rest, val_index=np.zeros(0, np.int64))
        result = train(fold_data, layers, retrain, listener, state)
        if result.cancelled:
            raise Cancelled()
        # the held-out fold a chunk at a time (an on-disk one is never read whole, nor all of it as float32)
        probs[held_out] = predict_in_chunks(lambda x: _predict(result.model, x, settings.batch_size),
                                            data.rows(held_out), data.num_classes)
    rows = np.sort(np.concatenate(parts))
    note = (f"{len(rows)} training images scored by {folds} retrains ({retrain.epochs} epoch(s) each) "
            "that did not see them")
    return LabelScores(rows, probs[rows], np.full(len(rows), KFOLD, dtype=object), [note])


def _predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities of uint8 images from a cnndesk model (softmax output, pixel scaling inside)."""
    out = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float32)
