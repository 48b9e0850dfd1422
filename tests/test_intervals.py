"""The interval of an accuracy, against a reference computation (SciPy's binomial test)."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from cnndesk.core.intervals import (
    accuracy_interval, interval_json, interval_phrase, interval_range, proportion_interval, with_interval,
)


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


def test_the_interval_as_the_json_output_and_a_table_cell_give_it():
    expected = binomtest(37, 39).proportion_ci(confidence_level=0.95, method="wilson")
    assert interval_json(37 / 39, 39) == pytest.approx([expected.low, expected.high], abs=1e-12)
    assert interval_json(None, 39) is None and interval_json(0.5, None) is None and interval_json(0.5, 0) is None
    assert interval_json(float("nan"), 39) is None
    assert interval_range(37 / 39, 39) == "0.831–0.986" and interval_range(37 / 39, 39, digits=2) == "0.83–0.99"
    assert interval_phrase(37 / 39, 39) == "95 % interval 0.831–0.986, 39 images"


def test_an_accuracy_whose_number_of_images_was_not_recorded_says_so():
    assert with_interval(0.75, None) == "0.750 (number of images unknown)"
    assert with_interval(None, None) == "–"


def test_the_textbook_interval_is_what_wilson_avoids_at_all_right():
    # 12 of 12 right: the textbook p ± 1.96·sqrt(p(1-p)/n) has no width at all; Wilson's says 0.757–1.000
    low, high = proportion_interval(12, 12)
    assert high == 1.0 and low == pytest.approx(binomtest(12, 12).proportion_ci(method="wilson").low, abs=1e-12)
    assert low == pytest.approx(0.7575, abs=1e-4)
