""""Unlike anything I learned": how far an image's features are from the training data.

Following Lee et al. ("A Simple Unified Framework for Detecting
Out-of-Distribution Samples and Adversarial Attacks", 2018) an image is
described by several *signals* (from :class:`.trust.ModelHeads`): the model's
penultimate activations (the input of its last layer), and for a few of its
conv/pool layers the mean and the standard deviation of each channel over the
map. In each signal every class is a Gaussian around its training mean, all
sharing one covariance (:class:`ClassGaussians`), and the signal's score is the
squared Mahalanobis distance to the nearest class mean.

The penultimate features alone say how far an image is from what the last
layer tells apart; a model trained on a few dozen photos per class spreads
them so widely that other pictures fall inside the cloud. The lower layers'
channel statistics say whether the image has the colours, edges and textures
of the training images (a grey digit, noise or a flat picture does not). The
image's score (:class:`NoveltyStats`) is the largest of its signals' scores,
each divided by that signal's median on the validation images, and the
threshold is the validation images' ``coverage`` quantile (95 %) of that
score, so that 95 % of the model's own held-out images pass and an image
scoring above it is flagged "unlike training". Figures: docs/putting-to-work.md.

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

Plain NumPy, no TensorFlow. The statistics are gathered a chunk of images at a
time (:class:`FeatureMoments`), so a large training split is never held whole.
"""

from __future__ import annotations

import base64
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
        x = self.project(features)
        labels = np.asarray(labels, dtype=np.int64)
        np.add.at(self.counts, labels, 1)
        np.add.at(self.sums, labels, x)
        self.scatter += x.T @ x


@dataclass
class ClassGaussians:
    """One signal's class means and shared covariance (leading eigenvectors + residual variance), and its scale.

    ``scale`` is the signal's median score on the validation images: dividing by it puts signals of different
    lengths on one footing before the largest is taken.
    """

    dims: int  # length of the signal
    seed: int  # of the random projection (used when dims > the kept dimensions)
    kept: int  # dimensions the scores are computed in
    means: np.ndarray  # (classes, kept)
    components: np.ndarray  # (k, kept) orthonormal rows: the leading eigenvectors of the shared covariance
    variances: np.ndarray  # (k,) their eigenvalues
    residual_variance: float  # the mean of the other eigenvalues
    scale: float = 1.0
    source: str = "penultimate"  # "penultimate", or the layer whose channel statistics these are

    def __post_init__(self):
        self._matrix = projection(self.dims, self.kept, self.seed)

    def project(self, features) -> np.ndarray:
        """(n, dims) features -> (n, kept) float64, as the scores see them."""
        return _project(features, self.dims, self._matrix)

    def scores(self, features) -> np.ndarray:
        """The squared Mahalanobis distance of each image to its nearest class mean, (n,) float64."""
        return self.scores_of_projected(self.project(features))

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
                "residual_variance": self.residual_variance, "scale": self.scale}

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
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not novelty statistics: {e}") from None
        if g.means.shape[1:] != (g.kept,) or g.components.shape[1:] != (g.kept,) or not g.scale > 0:
            raise ValueError("novelty statistics of inconsistent shapes")
        return g


@dataclass
class NoveltyStats:
    """The signals' statistics (:class:`ClassGaussians`, in the order of :class:`.trust.ModelHeads`' signals) and
    the threshold of the combined score.

    JSON-able through :meth:`to_json` / :meth:`from_json` (arrays as base64 float32: a few hundred kB at most).
    """

    signals: list[ClassGaussians]
    threshold: float = float("inf")  # scores above it are flagged
    coverage: float = COVERAGE

    def signal_scores(self, signals) -> np.ndarray:
        """Each signal's score divided by its scale, (n, signals) float64; ``signals`` as ModelHeads gives them
        (a list of (n, dims) arrays, penultimate first; further ones than these statistics describe are ignored)."""
        if len(signals) < len(self.signals):
            raise ValueError(f"{len(signals)} signals given; these statistics take {len(self.signals)}")
        return np.stack([g.scores(x) / g.scale for g, x in zip(self.signals, signals)], axis=1)

    def scores(self, signals) -> np.ndarray:
        """How unlike the training images each image is: the largest of its scaled signal scores, (n,) float64."""
        return self.signal_scores(signals).max(axis=1)

    def unlike(self, signals) -> np.ndarray:
        """Which images are flagged "unlike training": (n,) bool."""
        return self.scores(signals) > self.threshold

    def to_json(self) -> dict:
        return {"method": "mahalanobis-signals", "signals": [g.to_json() for g in self.signals],
                "threshold": self.threshold, "coverage": self.coverage}

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


def fit_novelty(moments: Sequence[FeatureMoments], reference: Sequence[np.ndarray], sources: Sequence[str] = (),
                coverage: float = COVERAGE, components: int = COMPONENTS) -> NoveltyStats:
    """The statistics of the training signals gathered in ``moments`` (one per signal), scaled and thresholded on
    ``reference``: each signal's projected features (``FeatureMoments.project``) of the validation images (of
    the training images when there is no validation split).

    Each signal's scale is its median score on the reference images; the threshold lets ``coverage`` of them
    pass (:func:`set_threshold`).
    """
    names = list(sources) or ["penultimate"] + [f"layer {i}" for i in range(1, len(moments))]
    signals = [fit_gaussians(m, components, name) for m, name in zip(moments, names)]
    for g, x in zip(signals, reference):
        median = float(np.median(g.scores_of_projected(x))) if len(x) else 1.0
        g.scale = median if median > 0 else 1.0
    stats = NoveltyStats(signals)
    if len(reference) and len(reference[0]):
        combined = np.stack([g.scores_of_projected(x) / g.scale for g, x in zip(signals, reference)], 1).max(1)
        set_threshold(stats, combined, coverage)
    return stats


def set_threshold(stats: NoveltyStats, reference_scores, coverage: float = COVERAGE) -> NoveltyStats:
    """``stats`` with the threshold that lets ``coverage`` of new images like the reference ones (their combined
    scores) pass."""
    scores = np.asarray(reference_scores, dtype=np.float64)
    # the split-conformal quantile (Vovk et al.; Angelopoulos and Bates 2021): the ceil((n + 1) coverage)-th
    # smallest of the n scores, so that a new image like them passes with probability at least ``coverage``
    # however few they are (the plain quantile of 24 validation images lets about 92 % pass), a hair above it so
    # that the image at the quantile still passes when its score is computed again in another batch
    n = len(scores)
    level = min(1.0, np.ceil((n + 1) * coverage) / n) if n else 1.0
    at = float(np.quantile(scores, level, method="inverted_cdf")) if n else float("inf")
    stats.threshold = at + 1e-6 * abs(at)
    stats.coverage = float(coverage)
    return stats
