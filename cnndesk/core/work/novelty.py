""""Unlike anything I learned": how far an image is from the training data.

Following Lee et al. ("A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", 2018) an image is
described by several *signals* (from :class:`.trust.ModelHeads`): the model's
penultimate activations (the input of its last layer), for a few of its
conv/pool layers the mean and the standard deviation of each channel over the
map, and the statistics of the image's own pixels (:func:`image_signal_names`:
brightness, contrast, how much neighbouring pixels agree, and for a colour
model how colourful it is). In each signal every class is a Gaussian around
its training mean, all sharing one covariance (:class:`ClassGaussians`), and
the signal's score is the squared Mahalanobis distance to the nearest class
mean.

The penultimate features alone say how far an image is from what the last
layer tells apart; a model trained on a few dozen photos per class spreads
them so widely that other pictures fall inside the cloud. The lower layers'
channel statistics say whether the image has the colours, edges and textures
of the training images, and the pixels what no layer of a small model
measures well: a grey picture given to a model of colour photographs, pixel
noise given to a model of smooth pictures.

Signals of different lengths and tails are put on one footing as
probabilities (:meth:`ClassGaussians.log_tail`): how likely an image like the
training ones scores at least this much in that signal, from the scores of
*reference* images: the validation images and the training images scored
out of fold (each fifth by the Gaussians of the other four fifths, so that the
training images count as new ones; :class:`CrossFitMoments`). A few dozen
validation images alone say little about a tail; with the training images
out of fold there are a few hundred. The tail is the normal one of the scores'
cube roots (Wilson and Hilferty's approximation of a scaled chi-square). An
image's *unlikeness* (:meth:`NoveltyStats.scores`) is ``-ln p`` of its least
likely signal, and it is flagged "unlike training" above the threshold: the
larger of the Bonferroni level ``-ln((1 - coverage) / signals)`` (so that an
image like the reference ones is flagged with probability at most
``1 - coverage`` if the tails are right) and the validation images'
split-conformal ``coverage`` quantile (so that at least ``coverage`` (95 %)
of the model's own held-out images pass however wrong the tails are).
Figures: docs/putting-to-work.md.

To keep the statistics small enough for ``project.json`` whatever the model,
for each signal:

- features longer than ``MAX_DIMS`` are first projected onto ``MAX_DIMS``
  random directions (a seeded Gaussian matrix, rebuilt from its seed, never
  stored; distances are kept up to a few per cent, Johnson–Lindenstrauss);
- the shared covariance is kept as its ``components`` leading eigenvectors and
  one variance for everything else (probabilistic PCA, Tipping and Bishop
  1999). The distance is the Mahalanobis distance within the leading
  directions plus the squared residual outside them over that variance: an
  image lit up where no training image was (noise, another kind of picture)
  is far even when its leading coordinates look ordinary.

Statistics saved before the tails (each signal's score divided by its
validation median, the largest of them against a threshold) still read and
score as they did.

Plain NumPy, no TensorFlow. The statistics are gathered a chunk of images at a
time (:class:`FeatureMoments`), so a large training split is never held whole
(out of fold, at most ``OUT_OF_FOLD_IMAGES`` of its images are kept, projected).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: the most feature dimensions kept (longer features are randomly projected to this many)
MAX_DIMS = 256
#: the leading eigen-directions of the shared covariance kept as they are
COMPONENTS = 16
#: signals of at most this many dimensions (a layer's channel statistics) keep their whole covariance
WHOLE_COVARIANCE_DIMS = 64
#: every eigenvalue is at least this share of their mean: a direction no training image varies in is tight, not
#: infinitely so
EIGEN_FLOOR = 1e-3
#: the share of the validation images that pass (are not flagged)
COVERAGE = 0.95
#: the seed of the random projection
PROJECTION_SEED = 20170601
#: the folds the training images are scored out of
FOLDS = 5
#: the most training images kept (projected) to be scored out of fold
OUT_OF_FOLD_IMAGES = 2000
#: the names of the signals of the image's own pixels: their tones, and for a colour model their colourfulness
PIXELS, COLOUR = "pixels", "colour"


def image_signal_names(channels: int) -> list[str]:
    """The signals of an image's own pixels for a model of ``channels`` channels, computed in the model's own
    forward pass (:meth:`.trust.ModelHeads`):

    ``pixels`` (2 C + 2 numbers): per channel the mean and the logarithm of the standard deviation (0..1 pixel
    values), and for the grey image (the channels' mean) how much each pixel agrees with its right and its lower
    neighbour (lag-1 autocorrelation: near 1 for smooth pictures and upscaled small ones, near 0 for pixel noise).
    ``colour`` (1 number), for a colour image: the logarithm of its mean colourfulness (each pixel's largest
    channel less its smallest), a signal of its own so that a grey picture given to a model of colour
    photographs is far from all of them (within the tones, one number among nine, it would not be).
    """
    return [PIXELS, COLOUR] if channels == 3 else [PIXELS]


def signal_reason(source: str) -> str:
    """What is unlike the training images in an image whose least likely signal is ``source``, in words."""
    if source == PIXELS:
        return "Its brightness, contrast or grain is unlike that of the training images."
    if source == COLOUR:
        return ("Its colourfulness is unlike that of the training images (a colour picture to a model of grey ones, "
                "or a grey picture to a model of colour ones).")
    if source == "penultimate":
        return "What the model's last layer sees in it is unlike every class it learned."
    return f"The patterns its layer {source} sees are unlike those of the training images."


def log_normal_tail(z) -> np.ndarray:
    """ln P(Z >= z) of a standard normal Z, accurate far out in the tail, (n,) float64."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    near = z < 5
    out[near] = np.log(np.maximum([0.5 * math.erfc(v / math.sqrt(2)) for v in z[near]], 1e-300))
    far = z[~near]  # Mills' ratio: P(Z >= z) = phi(z) / z (1 - 1/z^2 + 3/z^4 - ...)
    out[~near] = -far ** 2 / 2 - np.log(far * math.sqrt(2 * math.pi)) + np.log1p(-1 / far ** 2 + 3 / far ** 4)
    return out


def projection(dims: int, kept: int, seed: int = PROJECTION_SEED) -> np.ndarray | None:
    """The (dims, kept) random projection of features longer than ``kept``; None when they are kept whole."""
    if dims <= kept:
        return None
    rng = np.random.default_rng([seed, dims, kept])
    return (rng.standard_normal((dims, kept)) / np.sqrt(kept)).astype(np.float32)


def _project(features, dims: int, matrix: np.ndarray | None) -> np.ndarray:
    """(n, dims) features -> (n, kept) float64 through ``matrix`` (as they are when None)."""
    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    if x.shape[1] != dims:
        raise ValueError(f"features have {x.shape[1]} values; these statistics take {dims}")
    return (x if matrix is None else x @ matrix).astype(np.float64)


class FeatureMoments:
    """Per-class counts and sums and the overall scatter of (projected) features, gathered chunk by chunk."""

    def __init__(self, dims: int, classes: int, max_dims: int = MAX_DIMS, seed: int = PROJECTION_SEED):
        self.dims, self.classes, self.seed = int(dims), int(classes), int(seed)
        self.matrix = projection(self.dims, max_dims, seed)
        self.kept = self.dims if self.matrix is None else self.matrix.shape[1]
        self.counts = np.zeros(self.classes, np.int64)
        self.sums = np.zeros((self.classes, self.kept))
        self.scatter = np.zeros((self.kept, self.kept))

    def project(self, features) -> np.ndarray:
        """(n, dims) features -> (n, kept) float64, as the scores see them."""
        return _project(features, self.dims, self.matrix)

    def add(self, features, labels) -> None:
        self.add_projected(self.project(features), labels)

    def add_projected(self, x: np.ndarray, labels) -> None:
        """Add features already projected (:meth:`project`)."""
        labels = np.asarray(labels, dtype=np.int64)
        np.add.at(self.counts, labels, 1)
        np.add.at(self.sums, labels, x)
        self.scatter += x.T @ x

    def merged(self, others: Sequence["FeatureMoments"]) -> "FeatureMoments":
        """These moments with those of ``others`` (of the same signal) added."""
        out = FeatureMoments.__new__(FeatureMoments)
        out.dims, out.classes, out.seed, out.matrix, out.kept = self.dims, self.classes, self.seed, self.matrix, self.kept
        out.counts = self.counts + sum((o.counts for o in others), np.zeros_like(self.counts))
        out.sums = self.sums + sum((o.sums for o in others), np.zeros_like(self.sums))
        out.scatter = self.scatter + sum((o.scatter for o in others), np.zeros_like(self.scatter))
        return out


class CrossFitMoments:
    """The training signals' moments, one :class:`FeatureMoments` per signal and fold, and (projected) up to
    ``keep`` of the training images, to score them out of fold.

    The image at position ``i`` of the training split is in fold ``i % folds``; every ``ceil(total / keep)``-th
    image is kept.
    """

    def __init__(self, dims: Sequence[int], classes: int, total: int, folds: int = FOLDS,
                 keep: int = OUT_OF_FOLD_IMAGES):
        self.folds = int(folds)
        self.moments = [[FeatureMoments(d, classes) for _ in range(self.folds)] for d in dims]
        self.every = max(1, math.ceil(int(total) / max(int(keep), 1)))
        self.kept: list[list[np.ndarray]] = [[] for _ in dims]  # per signal, chunks of projected kept images
        self.kept_folds: list[np.ndarray] = []
        self.seen = 0

    def project(self, signals) -> list[np.ndarray]:
        """Each signal's (n, dims) features as the scores see them."""
        return [m[0].project(x) for m, x in zip(self.moments, signals)]

    def add(self, signals, labels) -> None:
        """The next images of the training split: their signals (a list of (n, dims) arrays) and labels."""
        labels = np.asarray(labels, dtype=np.int64)
        position = self.seen + np.arange(len(labels))
        fold = position % self.folds
        keep = position % self.every == 0
        for moments, x, kept in zip(self.moments, signals, self.kept):
            x = moments[0].project(x)
            for f in range(self.folds):
                rows = fold == f
                if rows.any():
                    moments[f].add_projected(x[rows], labels[rows])
            kept.append(x[keep])
        self.kept_folds.append(fold[keep])
        self.seen += len(labels)

    def whole(self) -> list[FeatureMoments]:
        """Each signal's moments over all the training images."""
        return [m[0].merged(m[1:]) for m in self.moments]

    def out_of_fold(self, components: int = COMPONENTS) -> np.ndarray:
        """(kept images, signals) scores of the kept training images, each by the Gaussians of the other folds;
        (0, signals) when a fold's complement is too small to describe."""
        folds = np.concatenate(self.kept_folds) if self.kept_folds else np.zeros(0, np.int64)
        out = np.zeros((len(folds), len(self.moments)))
        for j, (moments, kept) in enumerate(zip(self.moments, self.kept)):
            x = np.concatenate(kept) if kept else np.zeros((0, moments[0].kept))
            for f in range(self.folds):
                others = [m for g, m in enumerate(moments) if g != f]
                rest = others[0].merged(others[1:])
                if rest.counts.sum() < 2:
                    return np.zeros((0, len(self.moments)))
                rows = folds == f
                if rows.any():
                    out[rows, j] = fit_gaussians(rest, components).scores_of_projected(x[rows])
        return out


@dataclass
class ClassGaussians:
    """One signal's class means and shared covariance (leading eigenvectors + residual variance), and its tail.

    ``tail`` is the mean and standard deviation of the cube roots of the reference images' scores
    (:meth:`log_tail`). Statistics saved before the tails have ``scale`` instead, the signal's median score on
    the validation images, which their scores are divided by.
    """

    dims: int  # length of the signal
    seed: int  # of the random projection (used when dims > the kept dimensions)
    kept: int  # dimensions the scores are computed in
    means: np.ndarray  # (classes, kept)
    components: np.ndarray  # (k, kept) orthonormal rows: the leading eigenvectors of the shared covariance
    variances: np.ndarray  # (k,) their eigenvalues
    residual_variance: float  # the mean of the other eigenvalues
    scale: float = 1.0
    source: str = "penultimate"  # "penultimate", a layer whose channel statistics these are, "pixels", "colour"
    tail: tuple[float, float] | None = None

    def __post_init__(self):
        # kept at the float32 precision they are saved in, so that statistics read back score exactly as these do
        for name in ("means", "components", "variances"):
            setattr(self, name, np.asarray(getattr(self, name), dtype="<f4").astype(np.float64))
        self._matrix = projection(self.dims, self.kept, self.seed)

    def project(self, features) -> np.ndarray:
        """(n, dims) features -> (n, kept) float64, as the scores see them."""
        return _project(features, self.dims, self._matrix)

    def scores(self, features) -> np.ndarray:
        """The squared Mahalanobis distance of each image to its nearest class mean, (n,) float64."""
        return self.scores_of_projected(self.project(features))

    def log_tail(self, scores) -> np.ndarray:
        """ln of the probability that an image like the reference ones scores at least ``scores`` in this signal,
        (n,) float64 (<= 0): the normal tail of the cube root of the score (Wilson and Hilferty)."""
        mean, std = self.tail
        return log_normal_tail((np.cbrt(np.asarray(scores, dtype=np.float64)) - mean) / std)

    def set_tail(self, reference_scores) -> None:
        """The tail of the reference images' scores (at least two)."""
        roots = np.cbrt(np.asarray(reference_scores, dtype=np.float64))
        self.tail = (float(roots.mean()), max(float(roots.std()), 1e-6 * abs(float(roots.mean())), 1e-12))

    def scores_of_projected(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0)
        v, lam = self.components, self.variances
        px, pm = x @ v.T, self.means @ v.T  # coordinates along the leading directions: (n, k), (classes, k)
        inside = ((px ** 2 / lam).sum(1)[:, None] - 2 * (px / lam) @ pm.T + (pm ** 2 / lam).sum(1)[None])
        # squared distance outside the leading directions: |x - m|^2 - |P(x - m)|^2
        whole = (x ** 2).sum(1)[:, None] - 2 * x @ self.means.T + (self.means ** 2).sum(1)[None]
        lead = (px ** 2).sum(1)[:, None] - 2 * px @ pm.T + (pm ** 2).sum(1)[None]
        outside = np.maximum(whole - lead, 0.0) / self.residual_variance if self.residual_variance > 0 else 0.0
        return np.maximum(inside + outside, 0.0).min(axis=1)

    def to_json(self) -> dict:
        def pack(a):
            a = np.ascontiguousarray(a, dtype="<f4")
            return {"shape": list(a.shape), "float32": base64.b64encode(a.tobytes()).decode("ascii")}

        return {"source": self.source, "dims": self.dims, "seed": self.seed, "kept": self.kept,
                "means": pack(self.means), "components": pack(self.components), "variances": pack(self.variances),
                "residual_variance": self.residual_variance, "scale": self.scale,
                **({} if self.tail is None else {"tail": list(self.tail)})}

    @classmethod
    def from_json(cls, d: dict) -> "ClassGaussians":
        """Read :meth:`to_json`'s dict.

        Raises:
            ValueError: not such a dict (a hand-edited or damaged file).
        """
        def unpack(e):
            a = np.frombuffer(base64.b64decode(e["float32"]), dtype="<f4")
            return a.reshape([int(n) for n in e["shape"]]).astype(np.float64)

        try:
            g = cls(int(d["dims"]), int(d["seed"]), int(d["kept"]), unpack(d["means"]), unpack(d["components"]),
                    unpack(d["variances"]), float(d["residual_variance"]), float(d.get("scale", 1.0)),
                    str(d.get("source", "penultimate")))
            if d.get("tail") is not None:
                mean, std = (float(v) for v in d["tail"])
                if not (np.isfinite(mean) and std > 0):
                    raise ValueError("a tail of no spread")
                g.tail = (mean, std)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not novelty statistics: {e}") from None
        if g.means.shape[1:] != (g.kept,) or g.components.shape[1:] != (g.kept,) or not g.scale > 0:
            raise ValueError("novelty statistics of inconsistent shapes")
        return g


@dataclass
class NoveltyStats:
    """The signals' statistics (:class:`ClassGaussians`, in the order of :class:`.trust.ModelHeads`' signals) and
    the threshold of the unlikeness.

    JSON-able through :meth:`to_json` / :meth:`from_json` (arrays as base64 float32: a few hundred kB at most).
    Statistics saved before the tails (no signal has one) score as they did: the largest of the signals' scores
    divided by their scales.
    """

    signals: list[ClassGaussians]
    threshold: float = float("inf")  # scores above it are flagged
    coverage: float = COVERAGE

    @property
    def has_tails(self) -> bool:
        return all(g.tail is not None for g in self.signals)

    def signal_scores(self, signals) -> np.ndarray:
        """How unlike the reference images each image is in each signal, (n, signals) float64: ``-ln p``, p the
        probability that an image like them scores at least as much (for statistics saved before the tails, the
        signal's score divided by its scale). ``signals`` as ModelHeads gives them (a list of (n, dims) arrays,
        penultimate first; further ones than these statistics describe are ignored)."""
        if len(signals) < len(self.signals):
            raise ValueError(f"{len(signals)} signals given; these statistics take {len(self.signals)}")
        if self.has_tails:
            return np.stack([-g.log_tail(g.scores(x)) for g, x in zip(self.signals, signals)], axis=1)
        return np.stack([g.scores(x) / g.scale for g, x in zip(self.signals, signals)], axis=1)

    def scores(self, signals) -> np.ndarray:
        """How unlike the training images each image is: that of its least likely signal, (n,) float64."""
        return self.signal_scores(signals).max(axis=1)

    def unlike(self, signals) -> np.ndarray:
        """Which images are flagged "unlike training": (n,) bool."""
        return self.scores(signals) > self.threshold

    def reasons(self, signals) -> list[str]:
        """Why each image is flagged, in words: its least likely signal (:func:`signal_reason`); "" for an image
        that is not flagged."""
        scores = self.signal_scores(signals)
        return [signal_reason(self.signals[int(row.argmax())].source) if row.max() > self.threshold else ""
                for row in scores]

    def to_json(self) -> dict:
        return {"method": "mahalanobis-signal-tails" if self.has_tails else "mahalanobis-signals",
                "signals": [g.to_json() for g in self.signals], "threshold": self.threshold,
                "coverage": self.coverage}

    @classmethod
    def from_json(cls, d: dict) -> "NoveltyStats":
        """Read :meth:`to_json`'s dict; statistics saved before there were several signals (one Gaussian of the
        penultimate features, with its threshold) read as one signal.

        Raises:
            ValueError: not such a dict (a hand-edited or damaged file).
        """
        try:
            signals = [ClassGaussians.from_json(g) for g in d["signals"]] if "signals" in d else \
                [ClassGaussians.from_json(d)]
            stats = cls(signals, float(d["threshold"]), float(d.get("coverage", COVERAGE)))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not novelty statistics: {e}") from None
        if not stats.signals:
            raise ValueError("novelty statistics without a signal")
        if any(g.tail is not None for g in signals) and not stats.has_tails:
            raise ValueError("novelty statistics with some signals' tails missing")
        return stats


def fit_gaussians(moments: FeatureMoments, components: int = COMPONENTS, source: str = "penultimate") -> ClassGaussians:
    """The class means and shared covariance of the training features gathered in ``moments`` (scale 1: see
    :func:`fit_novelty`).

    Classes without training images get no mean. The covariance is the
    within-class scatter over all images, its eigenvalues shrunk towards their
    mean by dims / (dims + images) (Ledoit and Wolf's idea, with a fixed weight); its ``components`` leading
    eigenvectors are kept (all of them for a signal of at most ``WHOLE_COVARIANCE_DIMS``), and the rest is
    summed up by their mean eigenvalue.
    """
    n = int(moments.counts.sum())
    if n < 2:
        raise ValueError("too few training images to describe")
    present = moments.counts > 0
    means = moments.sums[present] / moments.counts[present, None]
    within = (moments.scatter - (means.T * moments.counts[present]) @ means) / n
    within = (within + within.T) / 2
    values, vectors = np.linalg.eigh(within)
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]
    # shrunk towards their mean as much as the images are few for the dimensions (a covariance of 20 numbers
    # from 90 images has its small eigenvalues too small, so that new images of the same kind score far)
    shrink = moments.kept / (moments.kept + n)
    values = (1 - shrink) * values + shrink * values.mean()
    k = moments.kept if moments.kept <= WHOLE_COVARIANCE_DIMS else int(min(components, moments.kept))
    floor = max(float(values.mean()), 1e-12) * EIGEN_FLOOR
    rest = values[k:]
    residual = float(rest.mean()) + floor if len(rest) else 0.0
    return ClassGaussians(moments.dims, moments.seed, moments.kept, means, vectors[:, :k].T.copy(),
                          values[:k] + floor, residual, source=source)


def fit_novelty(cross: CrossFitMoments, validation: Sequence[np.ndarray] = (), sources: Sequence[str] = (),
                coverage: float = COVERAGE, components: int = COMPONENTS) -> NoveltyStats:
    """The statistics of the training signals gathered in ``cross``, their tails and threshold from the reference
    images: ``validation``, each signal's projected features (``CrossFitMoments.project``) of the validation
    images (empty without a validation split), and the kept training images scored out of fold.

    The threshold (:func:`set_threshold`) lets ``coverage`` of the validation images pass (of the training images
    out of fold without a validation split), and is at least the Bonferroni level of ``coverage``.

    Raises:
        ValueError: fewer than two training images, or no reference image.
    """
    names = list(sources) or ["penultimate"] + [f"layer {i}" for i in range(1, len(cross.moments))]
    signals = [fit_gaussians(m, components, name) for m, name in zip(cross.whole(), names)]
    held = np.stack([g.scores_of_projected(x) for g, x in zip(signals, validation)], axis=1) \
        if len(validation) and len(validation[0]) else np.zeros((0, len(signals)))
    folded = cross.out_of_fold(components)
    reference = np.concatenate([folded, held])
    if len(reference) < 2:
        raise ValueError("too few images to tell how far new ones fall")
    for j, g in enumerate(signals):
        g.set_tail(reference[:, j])
    stats = NoveltyStats(signals)
    calibration = held if len(held) else folded
    unlikeness = np.stack([-g.log_tail(calibration[:, j]) for j, g in enumerate(signals)], axis=1).max(axis=1)
    return set_threshold(stats, unlikeness, coverage)


def set_threshold(stats: NoveltyStats, reference_scores, coverage: float = COVERAGE) -> NoveltyStats:
    """``stats`` with the threshold that lets ``coverage`` of new images like the reference ones (their
    unlikeness) pass; with tails, at least the Bonferroni level ``-ln((1 - coverage) / signals)``."""
    scores = np.asarray(reference_scores, dtype=np.float64)
    # the split-conformal quantile (Vovk et al.; Angelopoulos and Bates 2021): the ceil((n + 1) coverage)-th
    # smallest of the n scores, so that a new image like them passes with probability at least ``coverage``
    # however few they are (the plain quantile of 24 validation images lets about 92 % pass), a hair above it so
    # that the image at the quantile still passes when its score is computed again in another batch
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * coverage) / n) if n else 1.0
    at = float(np.quantile(scores, level, method="inverted_cdf")) if n else float("inf")
    # with a few dozen validation images the quantile is their largest score, or one that happened to be low: the
    # tails then say how unlike an image must be (so that an image like the reference ones is flagged with
    # probability at most 1 - coverage however many signals, if the tails are right)
    if stats.has_tails and coverage < 1:
        at = max(at, -math.log((1 - coverage) / len(stats.signals)))
    stats.threshold = at + 1e-6 * abs(at)
    stats.coverage = float(coverage)
    return stats
