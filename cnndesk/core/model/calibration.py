"""Confidence that means what it says: temperature scaling, expected calibration error, reliability bins.

A network trained with cross-entropy is often over-confident: of the images it
calls 95 % sure, fewer than 95 % are right. Temperature scaling (Guo et al.,
"On Calibration of Modern Neural Networks", 2017) divides the logits ``z`` by
one scalar ``T`` fitted on the validation split, so that ``softmax(z / T)``
minimises the validation log-loss; the predicted class never changes (``T > 0``).

On a small validation split the plain fit follows a handful of images: on 7
images it can make the confidences much worse than the model's own. So the
temperature is the most probable one under a prior on ``log T`` centred at 0
(``T = 1``, the model as trained) worth ``PRIOR_IMAGES`` validation images
(:func:`fit_temperature`), which moves ``T`` little when the split is small and
barely at all when it is large; and under ``MIN_IMAGES`` validation images no
temperature is fitted at all (:func:`calibration_report` says why).

The expected calibration error (ECE) is the gap between confidence and
accuracy, averaged over equal-width confidence bins weighted by their images;
the bins themselves are the reliability diagram.

Plain NumPy, no TensorFlow: logits come from :mod:`cnndesk.core.work.trust`.
"""

from __future__ import annotations

import math

import numpy as np

#: the range a fitted temperature is kept in (one validation image wrong with a huge margin among thousands right
#: may otherwise drive T very close to 0, one split the model gets all wrong to infinity)
T_MIN, T_MAX = 0.05, 20.0
#: equal-width confidence bins of the ECE and the reliability diagram (Guo et al. use 15)
BINS = 15
#: how many validation images the prior on log T is worth (benchmarks/calibration_fit.py; docs/putting-to-work.md)
PRIOR_IMAGES = 20
#: the fewest validation images a temperature is fitted on; below, the confidences stay as the model gives them
MIN_IMAGES = 20


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` row by row, float32 (N, K)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    return np.exp(_log_softmax(np.atleast_2d(z))).astype(np.float32)


def temper(probabilities, temperature: float) -> np.ndarray:
    """``softmax(log(p) / temperature)``: the probabilities ``softmax(z / T)`` of logits ``z`` whose softmax is ``p``.

    A softmax forgets only a constant added to all of a row's logits, which the
    division keeps a constant, so this is exact up to rounding (a probability
    that underflowed to 0 stays 0).
    """
    with np.errstate(divide="ignore"):
        return softmax(np.log(np.asarray(probabilities, dtype=np.float64)), temperature)


def log_loss(logits, labels, temperature: float = 1.0) -> float:
    """The mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels):
        return math.nan
    return float(-_log_softmax(z)[np.arange(len(labels)), labels].mean())


def _plain_temperature(z: np.ndarray, labels: np.ndarray) -> float:
    """The T in [T_MIN, T_MAX] minimising the log-loss, by bisection of its derivative (see fit_temperature)."""
    given = z[np.arange(len(labels)), labels]

    def slope(log_beta: float) -> float:  # d log_loss / d beta, beta = 1 / T
        p = np.exp(_log_softmax(z * math.exp(log_beta)))
        return float(((p * z).sum(axis=1) - given).mean())

    lo, hi = math.log(1 / T_MAX), math.log(1 / T_MIN)
    if slope(lo) >= 0:
        return T_MAX
    if slope(hi) <= 0:
        return T_MIN
    return math.exp(-_bisect(slope, lo, hi))


def _bisect(rising, lo: float, hi: float) -> float:
    """The zero of ``rising`` between ``lo`` (where it is below 0) and ``hi`` (above), to machine precision."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if rising(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def prior_weight(logits) -> float:
    """What one image is worth in the prior on ``log T``: the mean Fisher information of ``log T`` at ``T = 1``.

    For an image with logits ``z`` it is the variance of ``z`` under
    ``softmax(z)``, the curvature that image's expected log-loss has in
    ``log T`` at ``T = 1`` when ``T = 1`` is right. A prior of ``m`` images,
    ``m / 2 x prior_weight x (log T)^2``, pulls as ``m`` more images like these
    would if the model needed no temperature.
    """
    z = np.asarray(logits, dtype=np.float64)
    if not len(z):
        return 0.0
    p = np.exp(_log_softmax(z))
    mean = (p * z).sum(axis=1, keepdims=True)
    return float((p * (z - mean) ** 2).sum(axis=1).mean())


def fit_temperature(logits, labels, prior_images: float = PRIOR_IMAGES) -> float:
    """The temperature ``T`` in [``T_MIN``, ``T_MAX``] that minimises ``n x log_loss(T) + prior`` (1.0 without images).

    ``prior``, ``prior_images / 2 x prior_weight(logits) x (log T)^2``, is a
    Gaussian prior on ``log T`` centred at 0 (``T = 1``) worth ``prior_images``
    images (:func:`prior_weight`): the most probable ``T`` given the images
    (MAP), moved from 1 by about ``n / (n + prior_images)`` of the way to the
    plain fit on a log scale. ``prior_images=0`` gives the plain fit of Guo et al.

    The log-loss is convex in ``1 / T``, so its derivative, ``mean(E[z] - z_label)``
    under ``softmax(z / T)``, rises with ``1 / T``: the plain fit is its zero,
    found by bisection (on a log scale) to machine precision, with no step size
    to tune. The MAP lies between ``T = 1`` and the plain fit, where the
    derivative of the whole (in ``log T``) changes sign: bisection again.

    A validation split the model gets all right says only that the model may
    be sure of itself: the log-loss keeps falling as ``T`` shrinks towards 0,
    where every answer would be 100 % sure. ``T`` then stays 1.
    """
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if not len(labels) or np.all(z.argmax(axis=1) == labels):
        return 1.0
    plain = _plain_temperature(z, labels)
    weight = prior_images * prior_weight(z)
    if weight <= 0 or plain == 1.0:
        return float(plain)
    n, given = len(labels), z[np.arange(len(labels)), labels]

    def slope(log_beta: float) -> float:  # d/d(log beta) of n x log_loss + weight / 2 x (log beta)^2
        beta = math.exp(log_beta)
        p = np.exp(_log_softmax(z * beta))
        return float(n * beta * ((p * z).sum(axis=1) - given).mean() + weight * log_beta)

    lo, hi = sorted((0.0, -math.log(plain)))
    if slope(lo) >= 0 or slope(hi) <= 0:  # the plain fit at a bound of the range, where the whole still falls
        return float(plain)
    return float(math.exp(-_bisect(slope, lo, hi)))


def _bin_of(confidence: np.ndarray, bins: int) -> np.ndarray:
    """The bin of each confidence: (lower, upper] of equal width, the first bin also holding 0."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def reliability_bins(probabilities, labels, bins: int = BINS) -> list[dict]:
    """The reliability diagram: for each of ``bins`` equal-width confidence bins, (lower, upper], its images'
    count, mean confidence and accuracy (None for an empty bin)."""
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence = p.max(axis=1) if len(p) else np.zeros(0)
    right = (p.argmax(axis=1) == labels) if len(p) else np.zeros(0, bool)
    which = _bin_of(confidence, bins)
    out = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        out.append({"lower": b / bins, "upper": (b + 1) / bins, "count": n,
                    "confidence": float(confidence[inside].mean()) if n else None,
                    "accuracy": float(right[inside].mean()) if n else None})
    return out


def expected_calibration_error(probabilities, labels, bins: int = BINS) -> float:
    """ECE: the sum over the confidence bins of (bin's share of the images) x |accuracy - mean confidence|."""
    table = reliability_bins(probabilities, labels, bins)
    total = sum(b["count"] for b in table)
    if not total:
        return math.nan
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in table if b["count"]))


def calibration_report(logits, labels, temperature: float | None = None, bins: int = BINS,
                       prior_images: float = PRIOR_IMAGES, min_images: int = MIN_IMAGES) -> dict:
    """Log-loss, ECE and reliability bins of ``logits`` before (T = 1) and after temperature scaling (JSON-able).

    ``temperature`` is fitted on these logits when None (``"fitted": true``;
    :func:`fit_temperature` with ``prior_images``; ``"plain_temperature"``: the
    fit without the prior), unless there are fewer than ``min_images``: then
    ``"declined"`` says why in words ("only 7 validation images…") and the
    temperature is 1. ``"declined"`` is None otherwise.
    """
    fitted = temperature is None
    n = int(len(np.asarray(labels)))
    declined = None
    if fitted and n < min_images:
        declined = f"only {n} validation image{'s' if n != 1 else ''}, a temperature needs {min_images}"
    t = (1.0 if declined else fit_temperature(logits, labels, prior_images)) if fitted else float(temperature)
    before, after = softmax(logits), softmax(logits, t)
    return {"temperature": t, "fitted": fitted, "images": n, "bins": bins, "declined": declined,
            "prior_images": prior_images if fitted else None,
            "plain_temperature": fit_temperature(logits, labels, 0) if fitted else None,
            "log_loss_before": log_loss(logits, labels), "log_loss_after": log_loss(logits, labels, t),
            "ece_before": expected_calibration_error(before, labels, bins),
            "ece_after": expected_calibration_error(after, labels, bins),
            "reliability_before": reliability_bins(before, labels, bins),
            "reliability_after": reliability_bins(after, labels, bins)}
