"""The training panel as a person sees it: epoch ticks, hover values, Stop feedback and which weights were kept.

The panel is fed the trainer's own report objects, as the main window feeds it
during a run, so these tests need no model and no training. Its buttons follow a
``SessionState`` through ``TrainingControl`` (the panel's binding), as in the window.
"""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QGraphicsLineItem

from conftest import shown
from cnndesk.core.project.session import IDLE, STOPPING, TRAINING, SessionState
from cnndesk.core.training.progress import BatchReport, EpochReport, TrainResult
from cnndesk.ui.training_control import TrainingControl
from cnndesk.ui.training_panel import TrainingPanel

STEPS = 10


@pytest.fixture
def panel(qtbot):
    return shown(qtbot, TrainingPanel(), 900, 600)


class NoEngine:
    """An engine that runs nothing: these tests feed the panel the reports themselves."""

    def cancel(self, job) -> None:
        pass


class Control:
    """What ``TrainingControl`` does around the panel: the state's activity, and the panel told of the run."""

    def __init__(self, panel: TrainingPanel):
        self.panel, self.state = panel, SessionState()
        self.binding = TrainingControl(self.state, NoEngine(), panel, lambda: (True, ""), panel)

    def started(self, epochs: int, continuing: bool, initial: int) -> None:
        self.state.activity = TRAINING
        self.panel.training_started(epochs, continuing, initial)

    def batch(self, report: BatchReport) -> None:
        self.panel.on_batch(report, stopping=self.state.activity == STOPPING)

    def stop(self) -> None:
        if self.state.activity == TRAINING:
            self.state.activity = STOPPING

    def finished(self, result=None, error=None) -> None:
        self.state.activity = IDLE
        self.panel.training_finished(result, error=error)


@pytest.fixture
def control(panel):
    return Control(panel)


def row(epoch: int) -> dict:
    """Made-up but plausible figures for ``epoch``: loss falls, accuracy rises to 1.0."""
    return {"epoch": epoch, "loss": 1.0 / epoch, "accuracy": min(1.0, 0.4 + 0.05 * epoch),
            "val_loss": 1.2 / epoch, "val_accuracy": min(1.0, 0.35 + 0.05 * epoch)}


def batch(epoch: int, b: int, total: int) -> BatchReport:
    return BatchReport(epoch=epoch, epochs=total, batch=b, steps=STEPS, loss=1.0 / epoch, accuracy=0.5,
                       images_per_s=2.0, eta_s=586.0)


def epoch_report(epoch: int, total: int) -> EpochReport:
    r = row(epoch)
    return EpochReport(epoch=epoch, epochs=total, loss=r["loss"], accuracy=r["accuracy"], val_loss=r["val_loss"],
                       val_accuracy=r["val_accuracy"], images_per_s=2.0, seconds=1.0)


def run(control: Control, epochs: int, first: int = 0, batches_only: bool = False) -> list[dict]:
    """Feed ``epochs`` epochs after ``first`` as the trainer reports them (two batches each); the history."""
    control.started(epochs, first > 0, first)
    total = first + epochs
    for e in range(first + 1, total + 1):
        control.batch(batch(e, STEPS // 2, total))
        control.batch(batch(e, STEPS, total))
        control.panel.on_epoch(epoch_report(e, total))
    return [row(e) for e in range(first + 1, total + 1)]


def finished(history: list[dict], best_epoch=None, cancelled=False, kept_message="") -> TrainResult:
    return TrainResult(model=None, history=history, best_epoch=best_epoch, cancelled=cancelled,
                       stop_message="Stopped by you." if cancelled else f"Trained all {len(history)} epochs.",
                       kept_message=kept_message)


def epoch_ticks(panel: TrainingPanel) -> list[float]:
    """The epochs at the tick marks under the plot, read from the drawn chart."""
    chart = panel.chart.chart_
    bottom = chart.plotArea().bottom()
    ticks = []
    for item in panel.chart.scene().items():
        if isinstance(item, QGraphicsLineItem) and item.isVisible():
            p1, p2 = item.mapToScene(item.line().p1()), item.mapToScene(item.line().p2())
            if abs(p1.x() - p2.x()) < 1e-6 and min(p1.y(), p2.y()) >= bottom - 0.5 and max(p1.y(), p2.y()) > bottom:
                ticks.append(chart.mapToValue(chart.mapFromScene(p1), panel.chart.series["loss"]).x())
    return sorted(ticks)


def point_position(panel: TrainingPanel, key: str, epoch: int) -> QPointF:
    """Where the chart draws ``key``'s point of ``epoch``, in chart coordinates."""
    series = panel.chart.series[key]
    point = next(p for p in series.points() if p.x() == epoch)
    return panel.chart.chart_.mapToPosition(point, series)


def labels_of(ticks: list[float]) -> list[int]:
    """The labels a "%d" axis prints for ``ticks``; asserts each tick is a whole number, so the label is exact."""
    for t in ticks:
        assert t == pytest.approx(round(t), abs=1e-6), ticks
    return [round(t) for t in ticks]


def settle(panel: TrainingPanel, qtbot) -> None:
    """Wait until the chart is drawn for what it was given: its epoch ticks are every multiple of the axis' tick
    interval from 0 to the axis' end. Laying a chart out takes several passes of the event loop (each pass posts
    the next layout request), more of them on a busy machine."""
    axis = panel.chart.x_axis

    def drawn() -> None:
        step = axis.tickInterval()
        ticks = epoch_ticks(panel)
        assert len(ticks) == int(axis.max() / step) + 1, (ticks, step, axis.max())
        assert all(t == pytest.approx(i * step, abs=1e-6) for i, t in enumerate(ticks)), (ticks, step)

    qtbot.waitUntil(drawn, timeout=10000)


# -- 1. the epoch axis ---------------------------------------------------------------

@pytest.mark.parametrize("epochs", [1, 3, 7, 12, 37, 200])
def test_epoch_ticks_are_whole_epochs_with_each_point_on_its_number(panel, qtbot, epochs, control):
    run(control, epochs)
    control.finished(finished([row(e) for e in range(1, epochs + 1)]))
    settle(panel, qtbot)  # let the chart lay out its axis
    assert panel.chart.x_axis.labelFormat() == "%d"
    labels = labels_of(epoch_ticks(panel))
    step = labels[1] - labels[0]
    assert labels == list(range(0, epochs + 1, step))  # 0, step, 2·step, … with no number skipped or repeated
    assert step in (1, 2, 5, 10, 20, 50) and len(labels) <= 11
    assert labels[-1] > epochs - step  # the last epoch is not beyond the last labelled stretch
    chart, ticks = panel.chart.chart_, epoch_ticks(panel)
    for label, tick in zip(labels, ticks):
        if label >= 1:
            tick_x = chart.mapToPosition(QPointF(tick, 0), panel.chart.series["loss"]).x()
            assert point_position(panel, "loss", label).x() == pytest.approx(tick_x, abs=0.01)


def test_before_any_training_the_axis_shows_epochs_0_and_1(panel, qtbot):
    settle(panel, qtbot)
    assert labels_of(epoch_ticks(panel)) == [0, 1]


def test_continuing_a_run_keeps_whole_epoch_ticks(panel, qtbot, control):
    first = run(control, 3)
    control.finished(finished(first))
    second = run(control, 4, first=3)
    control.finished(finished(second))
    settle(panel, qtbot)
    assert labels_of(epoch_ticks(panel)) == list(range(8))
    assert [p.x() for p in panel.chart.series["val_accuracy"].points()] == list(range(1, 8))


def test_a_reopened_history_has_every_epoch_labelled_under_its_point(panel, qtbot):
    panel.show_history([row(e) for e in range(1, 6)], best_epoch=4)
    settle(panel, qtbot)
    ticks = epoch_ticks(panel)
    assert labels_of(ticks) == [0, 1, 2, 3, 4, 5]
    chart = panel.chart.chart_
    for e in range(1, 6):
        assert point_position(panel, "accuracy", e).x() == pytest.approx(
            chart.mapToPosition(QPointF(ticks[e], 0), panel.chart.series["loss"]).x(), abs=0.01)


def test_the_kept_epoch_marker_on_the_last_epoch_at_full_accuracy_is_drawn_whole(panel, qtbot, control):
    history = run(control, 14)  # validation accuracy reaches 1.0 at epoch 13
    control.finished(finished(history, best_epoch=14, kept_message="Kept epoch 14's weights."))
    settle(panel, qtbot)
    chart = panel.chart.chart_
    marker = panel.chart.best
    assert [(p.x(), p.y()) for p in marker.points()] == [(14, 1.0)]
    centre = chart.mapToPosition(marker.points()[0], marker)
    radius = marker.markerSize() / 2 + 1  # and its border
    plot = chart.plotArea()
    assert plot.left() <= centre.x() - radius and centre.x() + radius <= plot.right()
    assert plot.top() <= centre.y() - radius


# -- 2. progress, Stop and the kept weights ------------------------------------------------

def test_starting_a_run_does_not_show_the_previous_runs_speed(panel, control):
    control.finished(finished(run(control, 2)))
    control.started(3, False, 0)
    assert panel.progress.format() == "Starting…"
    assert panel.speed.text() == ""
    control.batch(batch(1, 1, 3))
    assert "images/s" in panel.speed.text() and "ETA" in panel.speed.text()


def test_stop_shows_stopping_then_says_which_weights_were_kept(panel, qtbot, control):
    history = [row(1), row(2)]
    control.started(5, False, 0)
    for e in (1, 2):
        control.batch(batch(e, STEPS, 5))
        panel.on_epoch(epoch_report(e, 5))
    control.batch(batch(3, 2, 5))
    assert "ETA" in panel.speed.text()
    with qtbot.waitSignal(panel.stop_requested):
        qtbot.mouseClick(panel.stop_button, Qt.LeftButton)
    assert panel.progress.format() == "Stopping…"
    assert panel.stop_button.text() == "Stopping…" and not panel.stop_button.isEnabled()
    assert panel.speed.text() == ""
    control.batch(batch(3, 3, 5))  # the batch in which Stop took effect, reported afterwards
    assert panel.progress.format() == "Stopping…" and panel.speed.text() == ""
    control.finished(finished(history, cancelled=True,
                                     kept_message="The model keeps the weights trained so far."))
    assert panel.speed.text() == ""
    assert panel.progress.format().startswith("Stopped")
    log = panel.log.toPlainText()
    assert "Kept the weights trained so far: epoch 2 (validation accuracy 0.450) plus 3 of 10 batches of epoch 3." in log
    assert [(p.x(), p.y()) for p in panel.chart.best.points()] == [(2, pytest.approx(0.45))]
    assert panel.train_button.isEnabled() and panel.stop_button.text() == "■  Stop"


def test_stop_pressed_in_the_first_epoch_says_no_epoch_was_complete(panel, qtbot, control):
    control.started(3, False, 0)
    control.batch(batch(1, 4, 3))
    qtbot.mouseClick(panel.stop_button, Qt.LeftButton)
    control.finished(finished([], cancelled=True))
    assert ("Kept the weights trained so far: 4 of 10 batches of epoch 1, before any epoch was complete"
            in panel.log.toPlainText())
    assert panel.chart.best.count() == 0


def test_the_stopping_state_can_come_from_the_window_too(panel, control):
    """Esc stops through the main window's action, which changes the state; the panel shows the state."""
    control.started(3, False, 0)
    assert panel.stop_button.isEnabled() and not panel.train_button.isEnabled()
    assert not panel.continue_check.isEnabled()
    control.batch(batch(1, 1, 3))
    control.stop()
    assert panel.progress.format() == "Stopping…" and panel.speed.text() == ""
    control.stop()  # asking twice changes nothing
    assert panel.stop_button.text() == "Stopping…" and not panel.stop_button.isEnabled()
    control.finished(finished([], cancelled=True))
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()
    assert panel.stop_button.text() == "■  Stop"


def test_the_log_names_the_kept_epoch_when_the_best_one_was_restored(panel, control):
    history = run(control, 4)
    kept = "Kept epoch 3's weights: best validation accuracy 0.500 (validation loss 0.4000)."
    control.finished(finished(history, best_epoch=3, kept_message=kept))
    assert kept in panel.log.toPlainText()
    assert [(p.x(), p.y()) for p in panel.chart.best.points()] == [(3, pytest.approx(0.5))]


def test_the_log_gives_the_last_epochs_accuracy_when_the_last_weights_are_kept(panel, control):
    history = run(control, 3)
    kept = "Kept the last epoch's weights (epoch 3): keeping the best epoch is off."
    control.finished(finished(history, kept_message=kept))
    assert f"{kept} Epoch 3: validation accuracy 0.500." in panel.log.toPlainText()
    assert [p.x() for p in panel.chart.best.points()] == [3]


def test_without_the_trainers_sentence_the_panel_names_the_kept_epoch_itself(panel, control):
    control.finished(finished(run(control, 3), best_epoch=2))
    assert "Kept the weights of epoch 2 (validation accuracy 0.450)." in panel.log.toPlainText()


def test_a_continued_run_stopped_at_once_names_the_epoch_before_it(panel, qtbot, control):
    control.finished(finished(run(control, 2)))
    control.started(3, True, 2)
    control.batch(batch(3, 1, 5))
    qtbot.mouseClick(panel.stop_button, Qt.LeftButton)
    control.finished(finished([], cancelled=True))
    assert ("Kept the weights trained so far: epoch 2 (validation accuracy 0.450) plus 1 of 10 batches of epoch 3."
            in panel.log.toPlainText())


def test_a_reopened_history_says_which_weights_the_model_holds(panel):
    panel.show_history([row(e) for e in range(1, 4)], best_epoch=2)
    assert "Kept the weights of epoch 2 (validation accuracy 0.450)." in panel.log.toPlainText()
    panel.show_history([row(e) for e in range(1, 4)], best_epoch=None)
    assert "after epoch 3 (validation accuracy 0.500)" in panel.log.toPlainText()
    assert [p.x() for p in panel.chart.best.points()] == [3]


def test_a_failed_run_clears_the_speed(panel, control):
    control.started(3, False, 0)
    control.batch(batch(1, 1, 3))
    control.finished(error="out of memory")
    assert panel.speed.text() == "" and panel.progress.format() == "Training failed"


def test_showing_another_run_clears_how_the_run_before_ended_and_says_why_its_epoch_was_kept(panel, control):
    result = finished(run(control, 3), best_epoch=3)
    result.chance_message = "Validation accuracy 0.500 is at or near chance."
    control.finished(result)
    assert panel.verdict.isVisible() and panel.progress.format() == "Done"
    kept = "Kept epoch 2's weights: best validation accuracy 0.450 (validation loss 0.6000)."
    panel.show_history([row(e) for e in range(1, 4)], best_epoch=2, kept_message=kept)  # Bring Back, a reopen
    assert not panel.verdict.isVisible() and panel.progress.format() == "" and panel.progress.value() == 0
    assert panel.log.toPlainText().splitlines()[-1] == kept
    control.started(3, False, 0)
    control.finished(error="The viewer cannot open\nthis model.")
    assert panel.progress.format() == "Training failed"
    assert panel.log.toPlainText().splitlines()[-1] == "Training failed: The viewer cannot open this model."
    panel.clear_run()  # another dataset
    assert panel.progress.format() == "" and panel.log.toPlainText() == "" and panel.chart.point_count("loss") == 0


# -- 3. values on hover ------------------------------------------------------------------

def hover(panel: TrainingPanel, qtbot, at: QPointF) -> str:
    """Move the mouse to ``at`` (chart coordinates) over the chart view; the values shown.

    The move event goes straight to the view's viewport (as the window system delivers it): through
    the window system, a window left open by an earlier test in the same run could take it instead.
    """
    view = panel.chart
    target = view.mapFromScene(view.chart_.mapToScene(at))
    event = QMouseEvent(QEvent.MouseMove, QPointF(target), QPointF(view.viewport().mapToGlobal(target)),
                        Qt.NoButton, Qt.NoButton, Qt.NoModifier)
    QApplication.sendEvent(view.viewport(), event)
    return view.shown_values()


def test_hovering_over_a_point_shows_that_epochs_values(panel, qtbot, control):
    run(control, 7)
    settle(panel, qtbot)
    text = hover(panel, qtbot, point_position(panel, "val_loss", 4))
    assert text.splitlines() == ["Epoch 4", "Training loss: 0.2500", "Validation loss: 0.3000",
                                 "Training accuracy: 0.600", "Validation accuracy: 0.550"]
    assert panel.chart.hover_box.isVisible()


def test_hovering_anywhere_over_the_plot_shows_the_nearest_epoch(panel, qtbot, control):
    history = run(control, 7)
    control.finished(finished(history, best_epoch=6, kept_message="Kept epoch 6's weights."))
    settle(panel, qtbot)
    chart = panel.chart.chart_
    between = chart.mapToPosition(QPointF(5.8, 0.1), panel.chart.series["loss"])  # empty space near epoch 6
    text = hover(panel, qtbot, between)
    assert text.splitlines()[0] == "Epoch 6  (weights kept)"
    assert "Validation accuracy: 0.650" in text
    # leaving the plot area hides the values
    outside = QPointF(chart.plotArea().left() - 30, chart.plotArea().center().y())
    assert hover(panel, qtbot, outside) == ""


def test_hovering_before_any_epoch_shows_nothing(panel, qtbot):
    settle(panel, qtbot)
    assert hover(panel, qtbot, panel.chart.chart_.plotArea().center()) == ""


def test_an_epoch_without_validation_shows_only_its_training_values(panel, qtbot):
    rows = [dict(row(e), val_loss=None, val_accuracy=None) for e in (1, 2)]
    panel.show_history(rows, best_epoch=None)
    settle(panel, qtbot)
    text = hover(panel, qtbot, point_position(panel, "loss", 2))
    assert text.splitlines() == ["Epoch 2  (weights kept)", "Training loss: 0.5000", "Training accuracy: 0.500"]
    assert not math.isnan(panel.chart.best.points()[0].y())
