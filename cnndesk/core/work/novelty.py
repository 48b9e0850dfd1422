""""Unlike anything I learned": how far an image's features are from the training data.

The features are the model's penultimate activations (the input of its last
layer, from :mod:`.trust`). Following Lee et al. ("A Simple Unified Framework
for Detecting Out-of-Distribution Samples and Adversarial Attacks", 2018) each
class is a Gaussian around its training mean, all sharing one covariance, and
an image's score is its squared Mahalanobis distance to the nearest class mean.
The threshold is the validation images' ``coverage`` quantile (95 %), so that
95 % of the model's own held-out images pass and an image scoring above it is
flagged "unlike training".

To keep the statistics small enough for ``project.json`` whatever the model:

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

import numpy as np

#: the most feature dimensions kept (longer features are randomly projected to this many)
MAX_DIMS = 256
#: the leading eigen-directions of the shared covariance kept as they are
COMPONENTS = 16
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
class NoveltyStats:
    """The class means, the shared covariance (leading eigenvectors + residual variance) and the threshold.

    JSON-able through :meth:`to_json` / :meth:`from_json` (arrays as base64 float32: a few hundred kB at most).
    """

    dims: int  # length of the model's features
    seed: int  # of the random projection (used when dims > the kept dimensions)
    kept: int  # dimensions the scores are computed in
    means: np.ndarray  # (classes, kept)
    components: np.ndarray  # (k, kept) orthonormal rows: the leading eigenvectors of the shared covariance
    variances: np.ndarray  # (k,) their eigenvalues
    residual_variance: float  # the mean of the other eigenvalues
    threshold: float = float("inf")  # scores above it are flagged
    coverage: float = COVERAGE

    def __post_init__(self):
        self._matrix = projection(self.dims, self.kept, self.seed)

    # -- scores ---------------------------------------------------------------
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

    def unlike(self, features) -> np.ndarray:
        """Which images are flagged "unlike training": (n,) bool."""
        return self.scores(features) > self.threshold

    # -- JSON -------------------------------------------------------------------
    def to_json(self) -> dict:
        def pack(a):
            a = np.ascontiguousarray(a, dtype="<f4")
            return {"shape": list(a.shape), "float32": base64.b64encode(a.tobytes()).decode("ascii")}

        return {"method": "mahalanobis-shared-covariance", "dims": self.dims, "seed": self.seed, "kept": self.kept,
                "means": pack(self.means), "components": pack(self.components), "variances": pack(self.variances),
                "residual_variance": self.residual_variance, "threshold": self.threshold, "coverage": self.coverage}

    @classmethod
    def from_json(cls, d: dict) -> "NoveltyStats":
        """Read :meth:`to_json`'s dict.

        Raises:
            ValueError: not such a dict (a hand-edited or damaged file).
        """
        def unpack(e):
            a = np.frombuffer(base64.b64decode(e["float32"]), dtype="<f4")
            return a.reshape([int(n) for n in e["shape"]]).astype(np.float64)

        try:
            stats = cls(int(d["dims"]), int(d["seed"]), int(d["kept"]), unpack(d["means"]), unpack(d["components"]),
                        unpack(d["variances"]), float(d["residual_variance"]), float(d["threshold"]),
                        float(d.get("coverage", COVERAGE)))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not novelty statistics: {e}") from None
        if stats.means.shape[1:] != (stats.kept,) or stats.components.shape[1:] != (stats.kept,):
            raise ValueError("novelty statistics of inconsistent shapes")
        return stats


def fit_novelty(moments: FeatureMoments, components: int = COMPONENTS) -> NoveltyStats:
    """The class means and shared covariance of the training features gathered in ``moments`` (no threshold yet:
    :func:`set_threshold` on the validation features).

    Classes without training images get no mean. The covariance is the
    within-class scatter over all images; its ``components`` leading
    eigenvectors are kept, and the rest is summed up by their mean eigenvalue.
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
    k = int(min(components, moments.kept))
    floor = max(float(values.mean()), 1e-12) * 1e-6  # a direction no training image varies in is not infinitely tight
    rest = values[k:]
    residual = float(rest.mean()) + floor if len(rest) else 0.0
    return NoveltyStats(moments.dims, moments.seed, moments.kept, means, vectors[:, :k].T.copy(),
                        values[:k] + floor, residual)


def set_threshold(stats: NoveltyStats, validation_scores, coverage: float = COVERAGE) -> NoveltyStats:
    """``stats`` with the threshold that lets ``coverage`` of the validation images pass."""
    scores = np.asarray(validation_scores, dtype=np.float64)
    # the smallest score that at least ``coverage`` of them do not exceed, a hair above it so that the image at
    # the quantile still passes when its score is computed again in another batch (another rounding)
    at = float(np.quantile(scores, coverage, method="inverted_cdf")) if len(scores) else float("inf")
    stats.threshold = at + 1e-6 * abs(at)
    stats.coverage = float(coverage)
    return stats
