"""How sure a figure measured on a few dozen images is: intervals for a proportion.

An accuracy of 0.949 on 39 validation images could as well be 0.83 or 0.99; a
single number hides that. Every accuracy cnndesk shows carries a 95 % interval
for a proportion. We use the **Wilson score interval** (Wilson 1927): unlike the
textbook "p ± 1.96·√(p(1−p)/n)" it never leaves [0, 1], and unlike it does not
collapse to a zero width at 0 or 1 correct, and its coverage stays near the
nominal 95 % for the small n of small folders (Brown, Cai and DasGupta 2001).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

#: the confidence of every interval cnndesk shows
CONFIDENCE = 0.95


def proportion_interval(successes: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n``.

    Args:
        successes: how many were right (a count; a fraction times ``n`` is rounded).
        n: how many there were; 0 gives (0.0, 1.0), which says nothing is known.
        confidence: the interval's confidence. Defaults to 0.95.

    Example: ``proportion_interval(37, 39)`` is about ``(0.831, 0.986)``.
    """
    if n <= 0:
        return 0.0, 1.0
    k = min(max(round(successes), 0), n)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float]:
    """The 95 % interval of an accuracy measured on ``n`` images."""
    return proportion_interval(accuracy * n, n)


def with_interval(accuracy: float | None, n: int, digits: int = 3) -> str:
    """``accuracy`` for people, with its interval: "0.949 (95 % interval 0.831–0.986, 39 images)".

    ``None`` (not measured) gives "–"; ``n`` of 0 gives the accuracy alone.
    """
    if accuracy is None or (isinstance(accuracy, float) and math.isnan(accuracy)):
        return "–"
    if n <= 0:
        return f"{accuracy:.{digits}f}"
    low, high = accuracy_interval(accuracy, n)
    return f"{accuracy:.{digits}f} (95 % interval {low:.{digits}f}–{high:.{digits}f}, {n} images)"


@dataclass(frozen=True)
class Spread:
    """How far apart the accuracies of several models trained alike came out (one per seed): their mean, lowest and
    highest, each measured on ``images`` images.

    A single training on a small folder is one draw of these; the spread says how much luck was in it.
    """

    values: tuple[float, ...]
    images: int = 0

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def low(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.values else None

    def describe(self, what: str = "validation accuracy") -> str:
        """"validation accuracy of 5 models: mean 0.720 (95 % interval 0.559–0.838, 39 images), lowest 0.513,
        highest 0.949"; "" with no figures."""
        if not self.values:
            return ""
        n = len(self.values)
        return (f"{what} of {n} model{'s' if n != 1 else ''}: mean {with_interval(self.mean, self.images)}, "
                f"lowest {self.low:.3f}, highest {self.high:.3f}")

    def to_json(self) -> dict:
        interval = accuracy_interval(self.mean, self.images) if self.values and self.images > 0 else None
        return {"values": list(self.values), "images": self.images, "mean": self.mean, "min": self.low,
                "max": self.high, "mean_interval": None if interval is None else list(interval)}

    @classmethod
    def from_json(cls, d) -> "Spread | None":
        """The spread a project recorded; None for anything else (a hand-edited file)."""
        if not isinstance(d, dict) or not isinstance(d.get("values"), list):
            return None
        values = tuple(float(v) for v in d["values"]
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
        images = d.get("images")
        return cls(values, images if isinstance(images, int) and not isinstance(images, bool) and images > 0 else 0)
