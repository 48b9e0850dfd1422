"""How far a model's answers can be trusted: its temperature, its calibration and its novelty statistics.

:func:`measure_trust` runs after training, on the dataset the model was trained
on: the training split gives the class means and shared covariance of the
novelty signals (:mod:`.novelty`) and, scored out of fold, most of the images
their tails are measured on; the validation split the temperature
(:mod:`.calibration`), the calibration figures before and after it, the rest
of those images, and the threshold above which an image is "unlike training". The result, a
:class:`Trust`, is JSON-able and is kept with the run (``Run.trust``).

:class:`ModelHeads` gives, in one compiled forward pass, the two things both
need from any model cnndesk opens: the novelty signals (the penultimate
features, the channel statistics of a few conv/pool layers and the image's own
pixel statistics) and the logits
(the scores before the softmax or sigmoid). Exports fold the temperature into
the model (:mod:`cnndesk.core.model.temperature`).

Needs TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from ..data.images import Preprocessing
from ..errors import Cancelled
from ..model.calibration import calibration_report, softmax
from ..model.inspection import EVALUATION_CHUNK, activation_name, preprocessing_for_model
from ..model.taps import trace_taps
from ..tasks import TaskState
from .novelty import COVERAGE, CrossFitMoments, fit_novelty, image_signal_names, NoveltyStats

#: the smallest probability whose logarithm stands for a logit, when a model gives probabilities only
_TINY = 1e-37
#: the most conv/pool layers whose channel statistics are novelty signals (spread evenly from the first)
LAYER_SIGNALS = 6


def signal_layers(count: int, most: int = LAYER_SIGNALS) -> list[int]:
    """Which of ``count`` conv/pool layers give novelty signals: all of them up to ``most``, else ``most`` spread
    evenly from the first to the last."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def image_statistics(images):
    """The signals of uint8 images' own pixels (n, H, W, C) as :func:`.novelty.image_signal_names` names and
    describes them: ``pixels`` (n, 2 C + 2), and for colour images ``colour`` (n, 1); float32 tensors.

    Computed in the heads' compiled pass, beside the model's own (in NumPy they cost half as much again as the
    model's forward pass on 64 px colour images).
    """
    x = tf.cast(images, tf.float32) / 255.0
    channels = x.shape[-1]
    mean, variance = tf.nn.moments(x, axes=[1, 2])
    grey = tf.reduce_mean(x, axis=-1)
    grey_variance = tf.math.reduce_variance(grey, axis=[1, 2]) + 1e-4  # a flat image agrees with its neighbours
    across = 1 - tf.reduce_mean(tf.square(grey[:, :, 1:] - grey[:, :, :-1]), axis=[1, 2]) / (2 * grey_variance)
    down = 1 - tf.reduce_mean(tf.square(grey[:, 1:, :] - grey[:, :-1, :]), axis=[1, 2]) / (2 * grey_variance)
    tones = tf.concat([mean, tf.math.log(tf.sqrt(tf.maximum(variance, 0.0)) + 1 / 255), across[:, None],
                       down[:, None]], axis=1)
    if channels != 3:
        return [tones]
    spread = tf.reduce_max(x, axis=-1) - tf.reduce_min(x, axis=-1)
    return [tones, tf.math.log(tf.reduce_mean(spread, axis=[1, 2]) + 2 / 255)[:, None]]


class ModelHeads:
    """The novelty signals and the logits of prepared uint8 images, from one compiled forward pass.

    The logits are the scores the model's last softmax (or sigmoid) is applied
    to: computed from the last Dense layer's input, or that layer's input when
    the last layer is a Softmax or Activation layer, or the output itself when
    the model outputs scores (cnndesk shows those through a softmax). A model
    with one sigmoid unit is a binary classifier: its logits are ``(0, z)``, so
    that ``softmax`` gives ``(1 - p, p)``. A model whose graph does not give the
    last layer's input (a branching model ending in a layer that is not Dense)
    has only its probabilities: their logarithms stand for the logits.

    The signals (:mod:`.novelty`) are a list of (n, dims) float32 arrays: first
    the features, the last layer's input flattened (the logits themselves when
    the graph does not give it), then for up to ``LAYER_SIGNALS`` conv/pool
    layers (``signal_names``) each channel's mean and standard deviation over
    its map, and last the statistics of the prepared image's own pixels
    (:func:`.novelty.image_signal_names`: its tones, and for a colour model its colourfulness).
    """

    def __init__(self, model, preprocessing: Preprocessing | None = None):
        self.preprocessing = preprocessing or preprocessing_for_model(model)
        graph = trace_taps(model)
        last, penultimate = graph.last, graph.penultimate
        self.units = int(model.outputs[0].shape[-1])
        self.classes = max(self.units, 2)
        squashed = activation_name(last) in ("softmax", "sigmoid")
        if squashed and penultimate is not None:
            self.kind = "dense" if isinstance(last, keras.layers.Dense) else "input"
        else:
            self.kind = "probabilities" if squashed else "scores"
        self._last = last
        self.has_features = penultimate is not None
        chosen = signal_layers(len(graph.taps.tensors))
        self.signal_names = ["penultimate"] + [graph.taps.names[i] for i in chosen] + \
            image_signal_names(self.preprocessing.input_shape[-1])
        taps = [graph.taps.tensors[i] for i in chosen]
        outs = [penultimate if penultimate is not None else graph.output, graph.output, *taps]
        self._graph = keras.Model(graph.inputs, outs, name="cnndesk_heads")
        # a partial is a function of its own for TensorFlow's retracing count: a bound method would count every
        # model's ModelHeads as one function retraced, and print TensorFlow's warning by the sixth run
        self._fn = tf.function(functools.partial(self._heads), reduce_retracing=True, autograph=False)

    def _heads(self, x, images):
        features, out, *taps = self._graph(x, training=False)
        if self.kind == "dense":
            z = tf.matmul(features, self._last.kernel)
            if self._last.use_bias:
                z = z + self._last.bias
        elif self.kind == "input":
            z = features
        elif self.kind == "probabilities":
            p = tf.clip_by_value(out, _TINY, 1.0)
            z = tf.math.log(p)
            if self.units == 1:  # the sigmoid's logit
                z = z - tf.math.log(tf.clip_by_value(1.0 - out, _TINY, 1.0))
        else:
            z = out
        if self.units == 1:
            z = tf.concat([tf.zeros_like(z), z], axis=-1)
        if not self.has_features:
            features = z
        stats = []
        for t in taps:
            t = tf.cast(t, tf.float32)
            mean, variance = tf.nn.moments(t, axes=[1, 2])
            stats.append(tf.concat([mean, tf.sqrt(variance)], axis=-1))
        return [tf.reshape(features, (tf.shape(features)[0], -1)), *stats, *image_statistics(images)], z

    def __call__(self, images_uint8: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """(signals: a list of (n, dims) float32 arrays, the penultimate features first; logits (n, classes)
        float32) of prepared uint8 images (n, H, W, C)."""
        images = np.asarray(images_uint8)
        if images.ndim == 3:
            images = images[None]
        signals, logits = self._fn(tf.convert_to_tensor(self.preprocessing.pixel_values(images)),
                                   tf.convert_to_tensor(images, dtype=tf.uint8))
        return [s.numpy() for s in signals], logits.numpy()


@dataclass
class Trust:
    """A model's temperature, its calibration figures and its novelty statistics (JSON-able).

    ``calibration`` is :func:`.calibration.calibration_report` of the validation
    split (None without one); ``novelty`` the statistics that flag an image
    "unlike training" (None when they could not be gathered); ``notes`` sentences
    on what was measured on what.
    """

    temperature: float = 1.0
    calibration: dict | None = None
    novelty: NoveltyStats | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def calibrated(self) -> bool:
        """Whether a temperature was fitted (not declined for too few validation images, nor without a split)."""
        return self.calibration is not None and not self.calibration.get("declined")

    @property
    def uncalibrated_reason(self) -> str:
        """Why the confidences are not calibrated, in words ("only 7 validation images; …"); "" when they are."""
        if self.calibrated:
            return ""
        return self.calibration["declined"] if self.calibration is not None else "no validation split"

    def probabilities(self, logits) -> np.ndarray:
        """The calibrated probabilities: ``softmax(logits / temperature)``."""
        return softmax(logits, self.temperature)

    def to_json(self) -> dict:
        return {"temperature": self.temperature, "calibration": self.calibration,
                "novelty": None if self.novelty is None else self.novelty.to_json(), "notes": list(self.notes)}

    @classmethod
    def from_json(cls, d) -> "Trust | None":
        """:meth:`to_json`'s dict as a Trust; None for None or anything that is not one (a damaged file)."""
        if not isinstance(d, dict):
            return None
        try:
            t = float(d.get("temperature", 1.0))
            novelty = NoveltyStats.from_json(d["novelty"]) if isinstance(d.get("novelty"), dict) else None
        except (TypeError, ValueError):
            return None
        if not t > 0:
            return None
        calibration = d.get("calibration") if isinstance(d.get("calibration"), dict) else None
        return cls(t, calibration, novelty, [str(n) for n in d.get("notes") or [] if isinstance(n, str)])


def _chunks(data, rows: np.ndarray):
    """(images, labels) of the dataset ``rows``, ``EVALUATION_CHUNK`` at a time (an on-disk cache is read chunk by
    chunk)."""
    images = data.rows(rows)
    for start in range(0, len(rows), EVALUATION_CHUNK):
        yield images[start:start + EVALUATION_CHUNK], data.labels[rows[start:start + EVALUATION_CHUNK]]


def measure_trust(model, data, state: TaskState | None = None, coverage: float = COVERAGE,
                  heads: ModelHeads | None = None) -> Trust:
    """The temperature, calibration and novelty statistics of ``model`` on its dataset ``data`` (a ``LoadedDataset``).

    One forward pass over the training split (novelty means and covariance,
    and the training images scored out of fold) and one over the validation
    split (temperature, calibration before and after, novelty threshold at
    ``coverage``), a chunk at a time. Without a validation split the
    temperature stays 1 and the threshold comes from the training images out
    of fold. ``heads``: the model's :class:`ModelHeads` when the caller keeps
    one (it is traced here for every batch size).

    Raises:
        Cancelled: ``state`` asked to stop (between chunks).
    """
    heads = heads or ModelHeads(model, data.preprocessing)
    train, val = np.asarray(data.train_index), np.asarray(data.val_index)
    total, done = max(len(train) + len(val), 1), 0
    cross: CrossFitMoments | None = None

    def step(n):
        nonlocal done
        if state is not None:
            if state.is_interruption_requested():
                raise Cancelled()
            done += n
            state.set_progress_value(100.0 * done / total)

    def gather(signals, labels) -> None:
        nonlocal cross
        if cross is None:
            cross = CrossFitMoments([x.shape[1] for x in signals], heads.classes, len(train) or len(val))
        cross.add(signals, labels)

    if state is not None:
        state.set_status("Measuring how far the model's answers can be trusted…")
    for images, labels in _chunks(data, train):
        gather(heads(images)[0], labels)
        step(len(labels))
    logits, projected, labels_seen = [], [], []
    for images, labels in _chunks(data, val):
        signals, z = heads(images)
        if not len(train):  # no training images: the validation ones describe the classes
            gather(signals, labels)
        logits.append(z)
        projected.append(cross.project(signals))
        labels_seen.append(labels)
        step(len(labels))
    notes = []
    trust = Trust(notes=notes)
    if logits:
        z, y = np.concatenate(logits), np.concatenate(labels_seen)
        trust.calibration = calibration_report(z, y)
        trust.temperature = trust.calibration["temperature"]
        if trust.calibrated:
            notes.append(f"Temperature {trust.temperature:.3g} fitted on {len(y)} validation images: expected "
                         f"calibration error {trust.calibration['ece_before']:.1%} before, "
                         f"{trust.calibration['ece_after']:.1%} after.")
        else:
            notes.append(f"Confidences not calibrated: {trust.uncalibrated_reason}; they are shown as the model "
                         "gives them.")
    else:
        notes.append("No validation split: the probabilities are not calibrated (temperature 1).")
    if cross is not None and cross.seen >= 2:
        reference = [np.concatenate([p[i] for p in projected]) for i in range(len(cross.moments))] \
            if projected and len(train) else []
        try:
            trust.novelty = fit_novelty(cross, reference, heads.signal_names, coverage)
        except ValueError as e:  # too few images to score out of fold
            notes.append(f"Unlike training: not measured ({e}).")
        else:
            notes.append(f"Unlike training: an image is flagged when its least likely signal is less likely than "
                         f"for {coverage:.0%} of the "
                         + ("validation images." if reference else "training images (scored out of fold: there is "
                            "no validation split)."))
    return trust


def trust_of(runs, run_id: str | None) -> Trust | None:
    """The Trust kept with the run ``run_id`` among ``runs`` (None when it has none)."""
    for run in runs:
        if run.id == run_id:
            return Trust.from_json(getattr(run, "trust", None))
    return None


def with_trust(run, trust: Trust | None):
    """``run`` (a ``Run``) with ``trust`` kept in it."""
    return dataclasses.replace(run, trust=None if trust is None else trust.to_json())
