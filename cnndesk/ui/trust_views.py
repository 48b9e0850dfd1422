"""How far the model's answers can be trusted, shown: the "unlike training" banner and the reliability diagram.

``UnlikeBanner`` is the viewer's warning over an image the model's novelty statistics flag
(``core.work.novelty``); ``ReliabilityDiagram`` draws, for the Evaluation tab, the accuracy of each
confidence bin against the diagonal, before and after the temperature (``core.model.calibration``), and
``calibration_sentence`` says the expected calibration error in words.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

UNLIKE_TEXT = "⚠  This image is unlike the training images; the prediction may mean nothing."
BEFORE_COLOR, AFTER_COLOR = QColor("#b0bec5"), QColor("#1e88e5")


class UnlikeBanner(QLabel):
    """A clear warning over an image that is unlike the training images; hidden otherwise."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(UNLIKE_TEXT, parent, objectName="unlikeBanner", wordWrap=True)
        self.setStyleSheet("background: #fff3e0; color: #bf360c; border: 2px solid #ef6c00; border-radius: 6px; "
                           "padding: 6px; font-weight: bold")
        self.setToolTip("In one of what the model sees of it (its last layer, a few conv/pool layers, its pixels, its "
                        "colours) it is less likely than 95 % of the validation images.")
        self.setVisible(False)

    def show_for(self, image) -> None:
        """Show the banner, with why, when ``image`` (a ``core.project.session.Classified``, or None) is flagged."""
        flagged = bool(image is not None and getattr(image, "unlike", None))
        reason = getattr(image, "unlike_reason", "") if flagged else ""
        self.setText(f"{UNLIKE_TEXT}\n{reason}" if reason else UNLIKE_TEXT)
        self.setVisible(flagged)


def calibration_sentence(report: dict | None, calibrated: bool) -> str:
    """The expected calibration error in words, from ``core.model.calibration.calibration_report``."""
    if not report:
        return ""
    n = report["images"]
    if not calibrated:
        return (f"Confidences not calibrated (the model keeps no temperature): expected calibration error "
                f"{report['ece_before']:.1%} on {n} validation images.")
    return (f"Confidences calibrated with T = {report['temperature']:.3g}: expected calibration error "
            f"{report['ece_before']:.1%} before, {report['ece_after']:.1%} after, on {n} validation images.")


class ReliabilityDiagram(QWidget):
    """Bars of the accuracy in each confidence bin against the diagonal (a calibrated model's bars touch it): grey
    before the temperature, blue after it (only the grey ones for a model that is not calibrated)."""

    MARGIN = 34

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, objectName="reliabilityDiagram")
        self.report: dict | None = None
        self.calibrated = False
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self.setMinimumSize(240, 240)

    def sizeHint(self) -> QSize:
        return QSize(300, 260)

    def set_report(self, report: dict | None, calibrated: bool) -> None:
        self.report, self.calibrated = report, calibrated
        self.setToolTip(calibration_sentence(report, calibrated))
        self.update()

    def series(self) -> list[tuple[str, list[dict]]]:
        """The bars drawn: ("before" / "after", the reliability bins)."""
        if not self.report:
            return []
        shown = [("before", self.report["reliability_before"])]
        if self.calibrated:
            shown.append(("after", self.report["reliability_after"]))
        return shown

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        m = self.MARGIN
        plot = QRectF(m, 8, max(self.width() - m - 10, 10), max(self.height() - m - 22, 10))
        p.fillRect(plot, QColor("white"))
        p.setPen(QPen(QColor("#607d8b"), 1))
        p.drawRect(plot)
        font = p.font()
        font.setPointSizeF(max(font.pointSizeF() - 1, 6))
        p.setFont(font)
        for v in (0.0, 0.5, 1.0):
            y = plot.bottom() - v * plot.height()
            p.drawText(QRectF(0, y - 8, m - 4, 16), Qt.AlignRight | Qt.AlignVCenter, f"{v:g}")
            x = plot.left() + v * plot.width()
            p.drawText(QRectF(x - 15, plot.bottom() + 2, 30, 14), Qt.AlignCenter, f"{v:g}")
        p.drawText(QRectF(plot.left(), plot.bottom() + 14, plot.width(), 14), Qt.AlignCenter, "confidence")
        p.save()
        p.translate(8, plot.center().y())
        p.rotate(-90)
        p.drawText(QRectF(-50, -8, 100, 16), Qt.AlignCenter, "accuracy")
        p.restore()
        shown = self.series()
        for i, (name, bins) in enumerate(shown):
            color = AFTER_COLOR if name == "after" else BEFORE_COLOR
            for b in bins:
                if not b["count"]:
                    continue
                width = (b["upper"] - b["lower"]) * plot.width() / len(shown)
                x = plot.left() + b["lower"] * plot.width() + i * width
                h = b["accuracy"] * plot.height()
                p.fillRect(QRectF(x + 1, plot.bottom() - h, width - 2, h), color)
        p.setPen(QPen(QColor("#e53935"), 1.5, Qt.DashLine))  # a calibrated model's bars reach it
        p.drawLine(QPointF(plot.left(), plot.bottom()), QPointF(plot.right(), plot.top()))
        x = plot.left() + 6
        for name, _ in shown:
            color = AFTER_COLOR if name == "after" else BEFORE_COLOR
            p.fillRect(QRectF(x, plot.top() + 6, 10, 10), color)
            p.setPen(QColor("#263238"))
            label = "after T" if name == "after" else "before T" if self.calibrated else "as given"
            p.drawText(QPointF(x + 14, plot.top() + 15), label)
            x += 70
        p.end()
