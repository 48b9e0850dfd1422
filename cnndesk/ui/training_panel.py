"""Training panel: Train/Stop, a live loss/accuracy chart, progress and a log."""

from __future__ import annotations

import math

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QScatterSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QSplitter, QToolTip, QVBoxLayout,
    QWidget,
)

from .widgets import format_duration

COLORS = {"loss": "#1f77b4", "val_loss": "#ff7f0e", "accuracy": "#2ca02c", "val_accuracy": "#d62728",
          "batch_loss": "#9ecae1"}
LABELS = {"loss": "Training loss", "val_loss": "Validation loss", "accuracy": "Training accuracy",
          "val_accuracy": "Validation accuracy", "batch_loss": "Batch loss (smoothed)"}


def epoch_summary(row: dict, epochs: int | None = None) -> str:
    """One log line for an epoch of the history: "Epoch 2/5  loss …  acc …  val_loss …  val_acc …"."""
    of = f"/{epochs}" if epochs else ""
    val = "" if row.get("val_loss") is None else f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.3f}"
    return f"Epoch {row['epoch']}{of}  loss {row['loss']:.4f}  acc {row['accuracy']:.3f}{val}"


class TrainingChart(QChartView):
    """Loss (left axis) and accuracy (right axis, 0-1) per epoch, plus smoothed batch loss."""

    def __init__(self, parent: QWidget | None = None):
        self.chart_ = QChart()
        super().__init__(self.chart_, parent)
        self.setObjectName("trainingChart")
        self.setRenderHint(QPainter.Antialiasing)
        self.chart_.setTitle("Loss and accuracy")
        self.chart_.legend().setAlignment(Qt.AlignBottom)
        self.x_axis = QValueAxis(titleText="Epoch", labelFormat="%d")
        self.loss_axis = QValueAxis(titleText="Loss", labelFormat="%.2f")
        self.acc_axis = QValueAxis(titleText="Accuracy", labelFormat="%.1f", min=0.0, max=1.0, tickCount=6)
        self.chart_.addAxis(self.x_axis, Qt.AlignBottom)
        self.chart_.addAxis(self.loss_axis, Qt.AlignLeft)
        self.chart_.addAxis(self.acc_axis, Qt.AlignRight)
        self.series: dict[str, QLineSeries] = {}
        for key in ("batch_loss", "loss", "val_loss", "accuracy", "val_accuracy"):
            s = QLineSeries(name=LABELS[key])
            pen = QPen(QColor(COLORS[key]))
            pen.setWidthF(1.2 if key == "batch_loss" else 2.2)
            if key.startswith("val_"):
                pen.setStyle(Qt.DashLine)
            s.setPen(pen)
            s.setPointsVisible(key != "batch_loss")
            self.chart_.addSeries(s)
            s.attachAxis(self.x_axis)
            s.attachAxis(self.acc_axis if "accuracy" in key else self.loss_axis)
            s.hovered.connect(lambda point, state, k=key: self._hover(k, point, state))
            self.series[key] = s
        # the epoch whose weights the model keeps, drawn on its validation accuracy (what it was picked by)
        self.best = QScatterSeries(name="Kept epoch")
        self.best.setMarkerSize(14)
        self.best.setColor(QColor("#ffd700"))
        self.best.setBorderColor(QColor("#333333"))
        self.chart_.addSeries(self.best)
        self.best.attachAxis(self.x_axis)
        self.best.attachAxis(self.acc_axis)
        self.clear()

    def clear(self) -> None:
        for s in self.series.values():
            s.clear()
        self.best.clear()
        self._ema = None
        self._max_loss = 1.0
        self._epochs = 1
        self.x_axis.setRange(0, 1)
        self.loss_axis.setRange(0, 1)

    def set_epochs(self, epochs: int) -> None:
        self._epochs = max(1, epochs)
        self.x_axis.setRange(0, self._epochs)
        self.x_axis.setTickCount(min(self._epochs, 10) + 1)

    def _grow_loss(self, value: float) -> None:
        if math.isfinite(value) and value > self._max_loss:
            self._max_loss = value
            self.loss_axis.setRange(0, self._max_loss * 1.05)
            self.loss_axis.applyNiceNumbers()

    def add_batch(self, x: float, loss: float) -> None:
        if not math.isfinite(loss):
            return
        self._ema = loss if self._ema is None else 0.9 * self._ema + 0.1 * loss
        self.series["batch_loss"].append(x, self._ema)
        self._grow_loss(self._ema)
        if x > self._epochs:
            self.set_epochs(math.ceil(x))

    def add_epoch(self, epoch: int, values: dict) -> None:
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            v = values.get(key)
            if v is not None and math.isfinite(v):
                self.series[key].append(epoch, v)
                if "loss" in key:
                    self._grow_loss(v)
        if epoch > self._epochs:
            self.set_epochs(epoch)

    def mark_best(self, epoch: int, accuracy: float | None) -> None:
        """Mark the kept epoch at its validation accuracy (training accuracy without validation)."""
        self.best.clear()
        if accuracy is not None and math.isfinite(accuracy):
            self.best.append(epoch, accuracy)

    def point_count(self, key: str) -> int:
        return self.series[key].count()

    def _hover(self, key: str, point: QPointF, state: bool) -> None:
        if state:
            QToolTip.showText(self.cursor().pos(), f"{LABELS[key]}\nepoch {point.x():.2f}: {point.y():.4f}", self)
        else:
            QToolTip.hideText()


class TrainingPanel(QWidget):
    """Train/Stop, chart, progress and log. The main window connects it to the engine.

    Signals:
        train_requested(bool): Train pressed; True means continue from the current model.
        stop_requested(): Stop pressed.
    """

    train_requested = Signal(bool)
    stop_requested = Signal()
    previous_requested = Signal()  # bring back the model of the previous run

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        row = QHBoxLayout()
        self.train_button = QPushButton("▶  Train", objectName="trainButton")
        self.train_button.setToolTip("Train the model (F5)")
        self.train_button.setMinimumHeight(34)
        self.stop_button = QPushButton("■  Stop", objectName="stopButton", enabled=False)
        self.stop_button.setToolTip("Stop after the current batch, keeping the model trained so far (Esc)")
        self.stop_button.setMinimumHeight(34)
        self.continue_check = QCheckBox("Continue from the current model", objectName="continueTraining")
        self.continue_check.setEnabled(False)
        self.reason = QLabel(objectName="trainBlockedReason", wordWrap=True)
        self.reason.setStyleSheet("color: #b71c1c")
        row.addWidget(self.train_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.continue_check)
        row.addWidget(self.reason, 1)
        self.previous_button = QPushButton("↶  Bring Back Previous Model", objectName="previousRunButton")
        self.previous_button.setVisible(False)
        row.addWidget(self.previous_button)
        outer.addLayout(row)

        prow = QHBoxLayout()
        self.progress = QProgressBar(objectName="trainProgress", textVisible=True)
        self.progress.setFormat("")
        self.speed = QLabel(objectName="trainSpeed")
        self.speed.setMinimumWidth(260)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.speed)
        outer.addLayout(prow)
        # how the run ended, in one plain sentence when it needs the user's attention (near chance)
        self.verdict = QLabel(objectName="trainingVerdict", wordWrap=True)
        self.verdict.setStyleSheet("color: #b71c1c; font-weight: bold")
        self.verdict.setVisible(False)
        outer.addWidget(self.verdict)

        split = QSplitter(Qt.Vertical)
        self.chart = TrainingChart()
        split.addWidget(self.chart)
        self.log = QPlainTextEdit(objectName="trainingLog", readOnly=True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFont("monospace"))
        self.log.setPlaceholderText("Epoch summaries appear here.")
        split.addWidget(self.log)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        outer.addWidget(split, 1)

        self.train_button.clicked.connect(lambda: self.train_requested.emit(self.continue_check.isChecked()))
        self.stop_button.clicked.connect(self._on_stop)
        self.previous_button.clicked.connect(self.previous_requested)
        self.running = False
        self._can_train = False
        self._epochs = 0
        self._initial_epoch = 0

    # -- state -------------------------------------------------------------
    def set_can_train(self, ok: bool, reason: str = "") -> None:
        self._can_train = ok
        self.reason.setText("" if ok else reason)
        self.train_button.setEnabled(ok and not self.running)

    def set_has_model(self, has: bool) -> None:
        self.continue_check.setEnabled(has and not self.running)
        if not has:
            self.continue_check.setChecked(False)

    def set_previous(self, description: str | None, enabled: bool = True) -> None:
        """Offer to bring back the previous run's model (``description`` says which), or hide the offer."""
        self.previous_button.setVisible(description is not None)
        self.previous_button.setEnabled(description is not None and enabled)
        self.previous_button.setToolTip(f"Make the model of {description} current again; the current one is kept "
                                        "in its place" if description else "")

    def _on_stop(self) -> None:
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stopping…")
        self.stop_requested.emit()

    def training_started(self, epochs: int, continuing: bool, initial_epoch: int) -> None:
        self.running = True
        self._epochs = epochs
        self._initial_epoch = initial_epoch if continuing else 0
        if not continuing:
            self.chart.clear()
            self.log.clear()
        self.verdict.clear()
        self.verdict.setVisible(False)
        self.chart.set_epochs(self._initial_epoch + epochs)
        self.train_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stop_button.setText("■  Stop")
        self.continue_check.setEnabled(False)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setFormat("Starting…")
        self.log.appendPlainText(f"Training for {epochs} epochs…")

    def on_batch(self, r) -> None:
        done = (r.epoch - 1 - self._initial_epoch) * r.steps + r.batch
        total = self._epochs * r.steps
        self.progress.setValue(int(1000 * done / max(total, 1)))
        self.progress.setFormat(f"Epoch {r.epoch}/{r.epochs} · batch {r.batch}/{r.steps}")
        self.speed.setText(f"{r.images_per_s:,.0f} images/s · ETA {format_duration(r.eta_s)}")
        self.chart.add_batch(r.epoch - 1 + r.batch / r.steps, r.loss)

    def on_epoch(self, r) -> None:
        self.chart.add_epoch(r.epoch, {"loss": r.loss, "accuracy": r.accuracy, "val_loss": r.val_loss,
                                       "val_accuracy": r.val_accuracy})
        self.log.appendPlainText(f"{epoch_summary(r.to_json(), r.epochs)}"
                                 f"  ({r.seconds:.1f} s, {r.images_per_s:,.0f} img/s)")

    def training_finished(self, result=None, error: str | None = None) -> None:
        self.running = False
        self.stop_button.setEnabled(False)
        self.stop_button.setText("■  Stop")
        self.train_button.setEnabled(self._can_train)
        if error:
            self.progress.setFormat("Training failed")
            self.log.appendPlainText(f"Training failed: {error}")
            return
        self.continue_check.setEnabled(True)
        if result.cancelled:
            self.progress.setFormat("Stopped; the model trained so far is kept")
        else:
            self.progress.setValue(1000)
            note = f" (early stopping at epoch {result.history[-1]['epoch']})" if result.stopped_early else ""
            self.progress.setFormat(f"Done{note}")
        self.log.appendPlainText(result.stop_message)
        self.log.appendPlainText(result.kept_message)
        if result.best_epoch and result.history:
            row = next((r for r in result.history if r["epoch"] == result.best_epoch), {})
            self.chart.mark_best(result.best_epoch, _shown_accuracy(row))
        if result.chance_message:
            self.log.appendPlainText(f"Warning: {result.chance_message}")
            self.verdict.setText(result.chance_message)
            self.verdict.setVisible(True)

    def add_note(self, text: str) -> None:
        """A sentence from the trainer, e.g. which stopping rules apply to this run."""
        self.log.appendPlainText(text)

    def show_history(self, history: list[dict], best_epoch: int | None) -> None:
        """Show a saved history (after opening a project)."""
        self.chart.clear()
        self.log.clear()
        self.chart.set_epochs(max(len(history), 1))
        for row in history:
            self.chart.add_epoch(row["epoch"], row)
            self.log.appendPlainText(epoch_summary(row))
        if best_epoch and history:
            row = next((r for r in history if r["epoch"] == best_epoch), history[-1])
            self.chart.mark_best(best_epoch, _shown_accuracy(row))
            acc = row.get("val_accuracy")
            why = f": best validation accuracy {acc:.3f}" if acc is not None else ""
            self.log.appendPlainText(f"Kept epoch {best_epoch}'s weights{why}.")


def _shown_accuracy(row: dict) -> float | None:
    """The accuracy the kept-epoch marker sits on: validation, or training without validation."""
    acc = row.get("val_accuracy")
    return acc if acc is not None else row.get("accuracy")
