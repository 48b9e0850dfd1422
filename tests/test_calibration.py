"""Temperature scaling and the expected calibration error, against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from cnndesk.core.model.calibration import (
    calibration_report, expected_calibration_error, fit_temperature, log_loss, MIN_IMAGES, PRIOR_IMAGES,
    reliability_bins, softmax, T_MAX, T_MIN,
)


def _overconfident(n: int = 400, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a model that is right about 70 % of the time and sure of itself far beyond that."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    z = rng.normal(0, 1, (n, classes))
    right = rng.random(n) < 0.7
    winner = np.where(right, labels, (labels + rng.integers(1, classes, n)) % classes)
    z[np.arange(n), winner] += 3.0
    return z * 4.0, labels


def test_the_plain_fitted_temperature_is_the_one_scipy_finds_minimising_the_log_loss():
    z, y = _overconfident()

    def nll(t: float) -> float:  # written out here, independently of the module
        return float(-log_softmax(z / t, axis=1)[np.arange(len(y)), y].mean())

    direct = minimize_scalar(nll, bounds=(T_MIN, T_MAX), method="bounded", options={"xatol": 1e-9}).x
    t = fit_temperature(z, y, prior_images=0)
    assert t == pytest.approx(direct, rel=1e-5)
    assert t > 2  # the logits were blown up four times: the fit cools them down
    assert log_loss(z, y, t) == pytest.approx(nll(t), rel=1e-12)
    assert log_loss(z, y, t) < log_loss(z, y)


def test_the_temperature_never_changes_the_predicted_class_and_stays_in_its_range():
    z, y = _overconfident(seed=1)
    t = fit_temperature(z, y)
    np.testing.assert_array_equal(softmax(z, t).argmax(1), z.argmax(1))
    np.testing.assert_allclose(softmax(z, t).sum(1), 1, atol=1e-6)
    # every answer right: the log-loss would keep falling as T shrinks to 0 (everything 100 % sure); T stays 1
    sure = np.eye(3)[[0, 1, 2, 0]] * 5
    assert log_loss(sure, [0, 1, 2, 0], 0.5) < log_loss(sure, [0, 1, 2, 0], 1.0)
    assert fit_temperature(sure, [0, 1, 2, 0]) == 1.0
    assert fit_temperature(np.zeros((0, 3)), []) == 1.0
    # one answer wrong by a huge margin, the others barely right: the fit runs into its ceiling
    assert fit_temperature(np.array([[0.0, 1e4], [0.01, 0.0], [0.0, 0.01]]), [0, 0, 1]) == T_MAX


def test_the_expected_calibration_error_of_a_hand_computed_case():
    probs = np.array([[0.9, 0.1],    # confidence 0.9, right   -> bin (0.8, 1]
                      [0.05, 0.95],  # confidence 0.95, wrong  -> bin (0.8, 1]
                      [0.3, 0.7],    # confidence 0.7, right   -> bin (0.6, 0.8]
                      [0.55, 0.45]])  # confidence 0.55, wrong -> bin (0.4, 0.6]
    labels = np.array([0, 0, 1, 1])
    # (0.8, 1]: accuracy 1/2, confidence 0.925; (0.6, 0.8]: 1 vs 0.7; (0.4, 0.6]: 0 vs 0.55
    expected = 2 / 4 * abs(0.5 - 0.925) + 1 / 4 * abs(1 - 0.7) + 1 / 4 * abs(0 - 0.55)
    assert expected_calibration_error(probs, labels, bins=5) == pytest.approx(expected)  # 0.425
    table = reliability_bins(probs, labels, bins=5)
    assert [b["count"] for b in table] == [0, 0, 1, 1, 2]
    assert table[4]["accuracy"] == 0.5 and table[4]["confidence"] == pytest.approx(0.925)
    assert table[0]["accuracy"] is None and (table[0]["lower"], table[0]["upper"]) == (0.0, 0.2)
    assert math.isnan(expected_calibration_error(np.zeros((0, 2)), []))


def test_the_report_shows_the_calibration_error_falling_after_the_temperature():
    z, y = _overconfident(seed=2)
    report = calibration_report(z, y)
    assert report["fitted"] and report["temperature"] == pytest.approx(fit_temperature(z, y))
    assert report["ece_after"] < report["ece_before"] / 2
    assert report["log_loss_after"] < report["log_loss_before"]
    assert sum(b["count"] for b in report["reliability_after"]) == len(y)
    given = calibration_report(z, y, temperature=1.0)
    assert not given["fitted"] and given["ece_after"] == given["ece_before"]


def _seven_under_confident() -> tuple[np.ndarray, np.ndarray]:
    """7 validation images, 6 of them right with a small margin: the plain fit sharpens a lot (T far under 1)."""
    z = np.zeros((7, 3))
    labels = np.array([0, 1, 2, 0, 1, 2, 0])
    z[np.arange(7), labels] = 0.8
    z[6] = [0.0, 0.5, 0.0]  # the one wrong answer, not by much
    return z, labels


def map_directly(z: np.ndarray, y: np.ndarray, images: float) -> float:
    """The MAP temperature, written out here: n x mean NLL + images / 2 x I x (log T)^2, I the mean variance of the
    logits under their softmax (the Fisher information of log T at T = 1), minimised by scipy."""
    p = np.exp(log_softmax(z, axis=1))
    fisher = float((p * z ** 2).sum(1).mean() - ((p * z).sum(1) ** 2).mean())

    def objective(log_t: float) -> float:
        nll = -log_softmax(z / math.exp(log_t), axis=1)[np.arange(len(y)), y].sum()
        return float(nll + images / 2 * fisher * log_t ** 2)

    return math.exp(minimize_scalar(objective, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded",
                                    options={"xatol": 1e-10}).x)


def test_a_few_validation_images_move_the_temperature_little_and_under_the_floor_not_at_all():
    z, y = _seven_under_confident()
    plain = fit_temperature(z, y, prior_images=0)
    assert plain < 0.3  # the plain fit believes 7 images: it would make every answer far surer
    shrunk = fit_temperature(z, y)
    assert shrunk == pytest.approx(map_directly(z, y, PRIOR_IMAGES), rel=1e-6)
    assert plain < shrunk < 1 and math.log(shrunk) > 0.6 * math.log(plain)  # under 60 % of the way (log scale)
    report = calibration_report(z, y)
    assert report["temperature"] == 1.0 and report["plain_temperature"] == pytest.approx(plain)
    assert report["declined"].startswith("only 7 validation images") and report["ece_after"] == report["ece_before"]
    assert MIN_IMAGES > 7
    # a temperature given (a run's, kept) is used whatever the number of images
    assert calibration_report(z, y, temperature=0.5)["temperature"] == 0.5
    assert calibration_report(z, y, temperature=0.5)["declined"] is None


def test_the_prior_is_the_map_of_the_log_loss_and_matters_little_on_many_images():
    z, y = _overconfident(seed=3)
    for images in (5, 20, 80):
        assert fit_temperature(z, y, prior_images=images) == pytest.approx(map_directly(z, y, images), rel=1e-6)
    plain, shrunk = fit_temperature(z, y, prior_images=0), fit_temperature(z, y)
    assert 1 < shrunk < plain and math.log(shrunk) > 0.9 * math.log(plain)  # 400 images outweigh 20
    report = calibration_report(z, y)
    assert report["declined"] is None and report["temperature"] == pytest.approx(shrunk)
