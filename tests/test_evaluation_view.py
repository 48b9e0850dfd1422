"""The Evaluation tab on its own: it shows a given evaluation and reports clicks (no model needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QApplication, QScrollArea

from cnndesk.ui.evaluation_view import TABLE_VISIBLE_ROWS, EvaluationView


def _evaluation(k: int, per_class: int = 3):
    """An evaluation of k classes, per_class images each, where every class's last image is taken for the next
    class; and the dataset it was made on (images, files, validation rows)."""
    from cnndesk.core.model.inspection import ClassMetrics, Evaluation, Misclassified

    names = [f"class {i}" for i in range(k)]
    labels = np.repeat(np.arange(k), per_class)
    predicted = labels.copy()
    predicted[per_class - 1::per_class] = (labels[per_class - 1::per_class] + 1) % k
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (labels, predicted), 1)
    n = len(labels)
    paths = [f"/data/{names[t]}/img_{i:03d}.png" for i, t in enumerate(labels)]
    wrong = np.flatnonzero(labels != predicted)
    ev = Evaluation(
        accuracy=float(np.mean(labels == predicted)), class_names=names,
        per_class=[ClassMetrics(c, 0.5, 0.5, 0.5, per_class) for c in names], confusion=confusion,
        misclassified=[Misclassified(int(i), paths[i], names[labels[i]], names[predicted[i]], 0.9) for i in wrong],
        labels=labels, predicted=predicted, confidence=np.full(n, 0.9))
    data = SimpleNamespace(images=np.zeros((n, 8, 8, 3), np.uint8), paths=paths, labels=labels,
                           train_index=np.zeros(0, np.int64), val_index=np.arange(n))
    return ev, data


@pytest.fixture
def view(qtbot):
    v = EvaluationView()
    v.resize(900, 370)  # the Evaluation tab's size in a 1200×800 window
    qtbot.addWidget(v)
    v.show()
    return v


def _visible_rows(table) -> int:
    """How many rows a person sees whole in the table's viewport."""
    h = table.viewport().height()
    return sum(1 for r in range(table.rowCount()) if table.rowViewportPosition(r) + table.rowHeight(r) <= h)


def test_the_metrics_table_shows_all_six_classes(view, qtbot):
    ev, data = _evaluation(6)
    view.show_result(ev, data)
    assert view.metrics.rowCount() == 6
    qtbot.waitUntil(lambda: _visible_rows(view.metrics) == 6)  # once the layout has made room
    assert _visible_rows(view.confusion) == 6
    assert view.metrics.verticalScrollBar().maximum() == 0  # nothing hidden inside the table
    # the two tables share one scrolling column: scrolled down to the metrics, a person sees all six rows
    column = view.findChild(QScrollArea, "evaluationTables")
    column.ensureWidgetVisible(view.metrics, 0, 0)
    QApplication.processEvents()
    shown = QRect(view.metrics.mapTo(column.viewport(), QPoint(0, 0)), view.metrics.size())
    assert column.viewport().rect().contains(shown)
    assert view.accuracy_label.text() == ("Accuracy 0.667 (95 % interval 0.437–0.837, 18 images) on the validation "
                                          "images (3 per class; 6 misclassified)")


def test_each_class_says_how_many_validation_images_it_has(view):
    """A class that kept few validation images stands out: its count and share are in its row and the headline."""
    from cnndesk.core.model.inspection import ClassMetrics, Evaluation

    names = ["one", "seven", "nine"]
    val_labels = np.repeat([0, 1, 2], [4, 100, 60])  # "one" kept 4 of its 500 images, as when a chain took them
    train_labels = np.repeat([0, 1, 2], [496, 400, 240])
    labels = np.concatenate([val_labels, train_labels])
    n = len(val_labels)
    ev = Evaluation(accuracy=0.952, class_names=names,
                    per_class=[ClassMetrics(c, 1.0, 1.0, 1.0, int((val_labels == i).sum())) for i, c in enumerate(names)],
                    confusion=np.diag(np.bincount(val_labels)), misclassified=[], labels=val_labels,
                    predicted=val_labels, confidence=np.ones(n))
    data = SimpleNamespace(images=np.zeros((len(labels), 8, 8, 3), np.uint8), paths=[f"/d/{i}.png" for i in
                           range(len(labels))], labels=labels, val_index=np.arange(n),
                           train_index=np.arange(n, len(labels)))
    view.show_result(ev, data)
    header = [view.metrics.horizontalHeaderItem(c).text() for c in range(view.metrics.columnCount())]
    column = header.index("Validation images")
    shown = {view.metrics.item(r, 0).text(): view.metrics.item(r, column).text() for r in range(3)}
    assert shown == {"one": "4 of 500 (0.8 %)", "seven": "100 of 500 (20.0 %)", "nine": "60 of 300 (20.0 %)"}
    assert view.accuracy_label.text() == ("Accuracy 0.952 (95 % interval 0.907–0.975, 164 images) on the validation "
                                          "images (4 to 100 per class, fewest: one; 0 misclassified)")
    # each class's recall (its accuracy) with its interval on its own images: all right on 4 images is not sure
    recall = header.index("Recall (95 % interval)")
    shown = {view.metrics.item(r, 0).text(): view.metrics.item(r, recall).text() for r in range(3)}
    assert shown == {"one": "1.000 (0.510–1.000)", "seven": "1.000 (0.963–1.000)", "nine": "1.000 (0.940–1.000)"}


def test_many_classes_fill_the_table_up_to_a_limit_and_then_scroll(qtbot):
    view = EvaluationView()
    qtbot.addWidget(view)
    view.resize(900, 700)  # room for more rows than the limit
    view.show()
    ev, data = _evaluation(30, per_class=1)
    view.show_result(ev, data)
    qtbot.waitUntil(lambda: _visible_rows(view.metrics) == TABLE_VISIBLE_ROWS)
    QApplication.processEvents()
    assert _visible_rows(view.metrics) == TABLE_VISIBLE_ROWS  # and no more
    assert view.metrics.verticalScrollBar().maximum() > 0  # the rest is a scroll away
    view.clear()
    assert view.metrics.rowCount() == 0 and view.accuracy_label.text() == ""


def test_a_clicked_image_asks_to_open_its_file_and_its_true_class_is_known(view, qtbot):
    ev, data = _evaluation(3)
    view.show_result(ev, data)
    assert view.eval_list.count() == 3  # the misclassified ones
    item = view.eval_list.item(1)
    with qtbot.waitSignal(view.open_path) as opened:
        qtbot.mouseClick(view.eval_list.viewport(), Qt.LeftButton, pos=view.eval_list.visualItemRect(item).center())
    path = opened.args[0]
    assert path == view.eval_list_paths()[1]
    assert view.true_class(path) == path.split("/")[2]
    assert view.true_class("/elsewhere.png") is None


def test_the_button_asks_for_an_evaluation_and_a_message_replaces_the_accuracy(view, qtbot):
    with qtbot.waitSignal(view.evaluate_requested):
        qtbot.mouseClick(view.evaluate_button, Qt.LeftButton)
    view.show_message("Evaluating…")
    assert view.accuracy_label.text() == "Evaluating…"


