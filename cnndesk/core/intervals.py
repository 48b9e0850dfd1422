"""How sure a figure measured on a few dozen images is: intervals for a proportion.

An accuracy of 0.949 on 39 validation images could as well be 0.83 or 0.99; a
single number hides that. Every accuracy cnndesk shows carries a 95 % interval
for a proportion. We use the **Wilson score interval** (Wilson 1927): unlike the
textbook "p ± 1.96·√(p(1−p)/n)" it never leaves [0, 1], and unlike it does not
collapse to a zero width at 0 or 1 correct, and its coverage stays near the
nominal 95 % for the small n of small folders (Brown, Cai and DasGupta 2001).
Clopper–Pearson's "exact" interval is wider than it needs to be: over true
accuracies from 0.05 to 0.95, its coverage averages 0.97 on 20 or 39 images where
Wilson's averages 0.95 (docs/guide.md, "How sure a figure is"), and a wider interval
would call more runs that did learn "near chance".

The interval says how far the figure could move on other images like these,
measured the same way: it covers the luck of which images were held out, not a
model's luck of its seed (training again gives another model). Where it is shown:
the training log, the chart's hover label, the kept-epoch sentence and the near-chance
warning (``core.training.stopping``), the runs list, the Evaluation tab and the
command line's text and JSON (``"…_interval": [low, high]`` beside ``"images": n``).
A figure whose number of images was not recorded (a run of an older cnndesk) is
shown alone, saying that the number is unknown.
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


def interval_json(accuracy: float | None, n: int | None) -> list[float] | None:
    """``[low, high]`` of ``accuracy`` on ``n`` images, as the JSON output carries it; None when the accuracy was
    not measured or ``n`` is unknown (None) or 0."""
    if accuracy is None or not n or not math.isfinite(accuracy):
        return None
    return list(accuracy_interval(accuracy, n))


def interval_range(accuracy: float, n: int, digits: int = 3) -> str:
    """The interval alone, "0.831–0.986", for a table cell whose header says what it is."""
    low, high = accuracy_interval(accuracy, n)
    return f"{low:.{digits}f}–{high:.{digits}f}"


def interval_phrase(accuracy: float, n: int, digits: int = 3) -> str:
    """What ``with_interval`` puts in brackets after the figure: "95 % interval 0.831–0.986, 39 images"."""
    return f"95 % interval {interval_range(accuracy, n, digits)}, {n} images"


def with_interval(accuracy: float | None, n: int | None, digits: int = 3) -> str:
    """``accuracy`` for people, with its interval: "0.949 (95 % interval 0.831–0.986, 39 images)".

    ``None`` (not measured) gives "–"; ``n`` of 0 gives the accuracy alone; ``n`` of None (not recorded)
    gives the accuracy saying so: "0.949 (number of images unknown)".
    """
    if accuracy is None or (isinstance(accuracy, float) and math.isnan(accuracy)):
        return "–"
    if n is None:
        return f"{accuracy:.{digits}f} (number of images unknown)"
    if n <= 0:
        return f"{accuracy:.{digits}f}"
    return f"{accuracy:.{digits}f} ({interval_phrase(accuracy, n, digits)})"


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
