"""The interval of an accuracy, against a reference computation (SciPy's binomial test)."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from cnndesk.core.intervals import accuracy_interval, proportion_interval, with_interval


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (0, 10), (10, 10), (37, 39), (20, 39), (13, 39), (95, 100),
                                  (1, 30), (500, 1000)])
def test_the_wilson_interval_matches_scipy(k, n):
    expected = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = proportion_interval(k, n)
    assert low == pytest.approx(expected.low, abs=1e-12) and high == pytest.approx(expected.high, abs=1e-12)


def test_an_accuracy_on_few_images_says_how_sure_it_is():
    assert with_interval(37 / 39, 39) == "0.949 (95 % interval 0.831–0.986, 39 images)"
    low, high = accuracy_interval(0.9, 1000)
    assert high - low < 0.04  # many images: a narrow interval
    assert with_interval(None, 39) == "–" and with_interval(0.5, 0) == "0.500"
    assert proportion_interval(3, 0) == (0.0, 1.0)
