"""The model panel on its own, driven as a person would: clicks on rows and buttons, typed numbers, shortcuts."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox, QGroupBox, QLabel, QSpinBox

from cnndesk.core.model.architecture import layer_table, preset, total_params
from cnndesk.ui.model_panel import ModelPanel


@pytest.fixture
def panel(qtbot):
    p = ModelPanel()
    qtbot.addWidget(p)
    p.resize(1024, 700)
    p.set_input((64, 64, 3), 4)
    p.show()
    p.activateWindow()
    qtbot.waitActive(p)
    return p


def rows(panel):
    """The layer column of the table, without the input row."""
    return [panel.table.item(r, 0).text() for r in range(1, panel.table.rowCount())]


def click_row(qtbot, panel, row):
    """Click the table row of layer ``row`` (0 is the first layer)."""
    table = panel.table
    rect = table.visualRect(table.model().index(row + 1, 0))
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=rect.center())
    assert panel.selected_index() == row


def param(panel, key):
    return panel.editor_box.findChild(QSpinBox, f"param_{key}")


def add_layer(panel, kind):
    action = next(a for a in panel.add_button.menu().actions() if a.text() == kind)
    action.trigger()


def type_number(qtbot, spin, text):
    """Type ``text`` over the number in ``spin`` and press Enter (a number applies when it is finished)."""
    spin.selectAll()
    qtbot.keyClicks(spin, text)
    qtbot.keyClick(spin, Qt.Key_Return)


def undo_keys(qtbot, panel):
    qtbot.keyClick(panel.table, Qt.Key_Z, Qt.ControlModifier)


def redo_keys(qtbot, panel):
    qtbot.keyClick(panel.table, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)


def choose_preset_below(qtbot, panel):
    """Pick the next preset in the combo with the keyboard, as a person can."""
    panel.preset_combo.setFocus()
    qtbot.keyClick(panel.preset_combo, Qt.Key_Down)


# -- 1: the training box stays where it is --------------------------------------

def test_the_training_box_does_not_move_whichever_layer_is_selected(panel, qtbot):
    box = panel.findChild(QGroupBox, "trainingBox")
    panel.set_layers(preset("deeper"), "deeper")  # it has a Conv2D, a Dropout and a Dense layer
    kinds = [spec.kind for spec in panel.layers]
    seen = {"none": box.geometry()}
    for kind in ("Conv2D", "Dense", "Dropout"):
        click_row(qtbot, panel, kinds.index(kind))
        assert panel.editor_box.title().endswith(kind)
        seen[kind] = box.geometry()
    assert len(set(map(tuple, (g.getRect() for g in seen.values())))) == 1, seen


# -- 2: a preset switch over a custom stack is said and can be undone -----------

def test_switching_preset_over_a_custom_stack_says_so_and_undo_brings_it_back(panel, qtbot):
    click_row(qtbot, panel, 0)
    type_number(qtbot, param(panel, "filters"), "16")
    assert panel.preset_combo.currentText() == "Custom"
    custom = rows(panel)
    assert custom[0].startswith("1. Conv2D(16, 3")

    panel.preset_combo.setFocus()
    # Deeper picked from the list (the pretrained presets lie between it and Custom)
    panel.preset_combo.setCurrentIndex(panel.preset_combo.findData("deeper"))
    assert panel.preset_combo.currentText() == "Deeper"
    assert rows(panel)[0] == "1. Conv2D(32, 3, relu)"
    assert panel.notice.isVisible()
    assert "custom stack was replaced by the Deeper preset" in panel.notice.text()
    assert "Undo" in panel.notice.text() and "Ctrl+Z" in panel.notice.text()

    undo_keys(qtbot, panel)
    assert rows(panel) == custom
    assert panel.preset_combo.currentText() == "Custom" and panel.preset_name == "custom"
    assert not panel.notice.isVisible()


def test_switching_between_presets_asks_nothing_and_is_undoable_too(panel, qtbot):
    choose_preset_below(qtbot, panel)  # Seed -> TinyVGG
    assert panel.preset_name == "tinyvgg"
    assert not panel.notice.isVisible()
    undo_keys(qtbot, panel)
    assert panel.preset_name == "seed" and panel.preset_combo.currentText() == "Seed"
    assert rows(panel)[0] == "1. Conv2D(10, 3, relu)"


# -- 3: undo and redo ----------------------------------------------------------------

def test_every_stack_edit_is_undone_by_ctrl_z_and_redone_by_ctrl_shift_z(panel, qtbot):
    seed = rows(panel)
    states = [seed]
    click_row(qtbot, panel, 1)
    add_layer(panel, "Dropout")  # after the selected layer
    states.append(rows(panel))
    assert states[-1][2] == "3. Dropout(0.25)"
    qtbot.mouseClick(panel.up_button, Qt.LeftButton)
    states.append(rows(panel))
    assert states[-1][1] == "2. Dropout(0.25)"
    assert panel.editor_box.title() == "Layer 2: Dropout"  # the moved layer stays selected
    click_row(qtbot, panel, 0)
    type_number(qtbot, param(panel, "kernel_size"), "5")
    states.append(rows(panel))
    assert states[-1][0] == "1. Conv2D(10, 5, relu)"
    qtbot.mouseClick(panel.remove_button, Qt.LeftButton)
    states.append(rows(panel))
    assert states[-1][0] == "1. Dropout(0.25)"

    for expected in reversed(states[:-1]):
        undo_keys(qtbot, panel)
        assert rows(panel) == expected
    assert panel.preset_name == "seed"
    assert not panel.undo_action.isEnabled()
    for expected in states[1:]:
        redo_keys(qtbot, panel)
        assert rows(panel) == expected
    assert not panel.redo_action.isEnabled()


def test_typing_a_number_is_one_undo_step_named_in_the_action(panel, qtbot):
    click_row(qtbot, panel, 0)
    type_number(qtbot, param(panel, "filters"), "128")
    assert rows(panel)[0] == "1. Conv2D(128, 3, relu)"
    assert panel.undo_action.text() == "&Undo Change filters of layer 1"
    panel.undo_action.trigger()
    assert rows(panel)[0] == "1. Conv2D(10, 3, relu)"
    assert param(panel, "filters").value() == 10  # the editor shows the value back too
    assert panel.redo_action.text() == "&Redo Change filters of layer 1"
    panel.redo_action.trigger()
    assert rows(panel)[0] == "1. Conv2D(128, 3, relu)"
    assert param(panel, "filters").value() == 128


def test_typing_a_parameter_back_to_its_value_adds_no_undo_step(panel, qtbot):
    panel.set_layers(preset("seed"), "custom")
    click_row(qtbot, panel, 0)
    type_number(qtbot, param(panel, "filters"), "10")  # the same number again
    assert rows(panel)[0] == "1. Conv2D(10, 3, relu)"
    assert not panel.undo_action.isEnabled()


def test_a_new_project_stack_starts_a_fresh_history(panel, qtbot):
    click_row(qtbot, panel, 0)
    qtbot.mouseClick(panel.remove_button, Qt.LeftButton)
    assert panel.undo_action.isEnabled()
    panel.set_layers(preset("tinyvgg"), "tinyvgg")
    assert not panel.undo_action.isEnabled()
    undo_keys(qtbot, panel)
    assert panel.preset_name == "tinyvgg"


def test_undo_is_off_while_the_panel_is(panel, qtbot):
    click_row(qtbot, panel, 0)
    qtbot.mouseClick(panel.remove_button, Qt.LeftButton)
    panel.setEnabled(False)  # as during training
    assert not panel.undo_action.isEnabled()
    panel.setEnabled(True)
    assert panel.undo_action.isEnabled()


# -- 4: limits in sight, out-of-range numbers refused out loud -----------------------

def test_an_out_of_range_kernel_size_is_refused_with_a_message_not_cut_short(panel, qtbot):
    click_row(qtbot, panel, 0)
    kernel = param(panel, "kernel_size")
    assert panel.editor_form.labelForField(kernel).text() == "Kernel size (1–64)"
    kernel.selectAll()
    qtbot.keyClicks(kernel, "70")
    assert kernel.text() == "70"  # the 0 was not swallowed
    refusal = panel.findChild(QLabel, "paramRefused")
    assert refusal.isVisible()
    assert refusal.text() == "Kernel size goes from 1 to 64: 70 is refused, and the layer keeps 3."
    assert rows(panel)[0] == "1. Conv2D(10, 3, relu)"  # nor was the 7 typed on the way applied
    qtbot.keyClick(kernel, Qt.Key_Return)
    assert kernel.text() == "3" and refusal.isVisible()  # the kept value is back, the reason still in sight
    kernel.selectAll()
    qtbot.keyClicks(kernel, "5")
    assert not refusal.isVisible()
    qtbot.keyClick(kernel, Qt.Key_Return)
    assert rows(panel)[0] == "1. Conv2D(10, 5, relu)"


def test_dropout_rate_and_filters_show_their_limits_and_refuse_beyond(panel, qtbot):
    from cnndesk.core.model.config_checks import LIMITS

    click_row(qtbot, panel, 0)
    filters = param(panel, "filters")
    assert panel.editor_form.labelForField(filters).text() == f"Filters (1–{LIMITS.dimension:,})"
    add_layer(panel, "Dropout")
    rate = panel.editor_box.findChild(QDoubleSpinBox, "param_rate")
    assert panel.editor_form.labelForField(rate).text() == "Rate (0–0.95)"
    rate.selectAll()
    qtbot.keyClicks(rate, "1.5")
    assert rate.text() == "1.5"
    refusal = panel.findChild(QLabel, "paramRefused").text()
    assert refusal == "Rate goes from 0 to 0.95: 1.5 is refused, and the layer keeps 0.25."
    assert rows(panel)[1] == "2. Dropout(0.25)"


def test_a_number_is_applied_when_finished_and_a_refused_one_applies_nothing_typed_on_the_way(panel, qtbot):
    """Typing 70000 into Filters passes 7000 on the way; nothing is applied until Enter or leaving the box."""
    from cnndesk.core.model.config_checks import LIMITS

    click_row(qtbot, panel, 0)
    filters = param(panel, "filters")
    filters.selectAll()
    qtbot.keyClicks(filters, "70000")
    refusal = panel.findChild(QLabel, "paramRefused")
    assert refusal.isVisible()
    assert refusal.text() == f"Filters goes from 1 to {LIMITS.dimension:,}: 70000 is refused, and the layer keeps 10."
    assert rows(panel)[0] == "1. Conv2D(10, 3, relu)"  # 7000 was never applied
    qtbot.keyClick(filters, Qt.Key_Return)
    assert filters.text() == "10" and rows(panel)[0] == "1. Conv2D(10, 3, relu)" and refusal.isVisible()
    assert not panel.undo_action.isEnabled()  # nothing changed, nothing to undo

    filters.selectAll()
    qtbot.keyClicks(filters, "24")
    assert not refusal.isVisible()
    assert rows(panel)[0] == "1. Conv2D(10, 3, relu)"  # 2 is not applied half-way
    qtbot.keyClick(filters, Qt.Key_Return)
    assert rows(panel)[0] == "1. Conv2D(24, 3, relu)"
    kernel = param(panel, "kernel_size")
    qtbot.waitUntil(kernel.isVisible)  # the editor's rows show once the event loop runs
    qtbot.mouseClick(kernel.lineEdit(), Qt.LeftButton)
    assert kernel.hasFocus()
    kernel.selectAll()
    qtbot.keyClicks(kernel, "5")
    assert rows(panel)[0] == "1. Conv2D(24, 3, relu)"
    qtbot.keyClick(kernel, Qt.Key_Tab)  # leaving the box applies it too
    assert rows(panel)[0] == "1. Conv2D(24, 5, relu)"
    undo_keys(qtbot, panel)
    assert rows(panel)[0] == "1. Conv2D(24, 3, relu)"
    assert panel.undo_action.text() == "&Undo Change filters of layer 1"  # one step per number, not per keystroke
    panel.undo_action.trigger()
    assert rows(panel)[0] == "1. Conv2D(10, 3, relu)" and not panel.undo_action.isEnabled()


# -- 5: what each preset is for, its size and speed ---------------------------------

def test_each_preset_says_what_it_is_good_for_its_size_and_relative_speed(panel, qtbot):
    combo = panel.preset_combo
    seed_params = total_params(layer_table(preset("seed"), (64, 64, 3), 4))
    assert panel.preset_info.text() == ("A quick first model for simple shapes and colours; the baseline to beat. "
                                        f"{seed_params:,} parameters for 64×64×3 images, the fastest preset.")
    tips = {combo.itemData(i): combo.itemData(i, Qt.ToolTipRole) for i in range(combo.count())}
    assert "<b>Seed</b>" in tips["seed"] and f"{seed_params:,} parameters" in tips["seed"]
    assert "activation maps are easy to read" in tips["tinyvgg"] and "about as fast as Seed" in tips["tinyvgg"]
    assert "harder pictures" in tips["deeper"] and "slower than Seed" in tips["deeper"]
    assert "million multiply-adds per image" in tips["deeper"]

    panel.set_input((32, 32, 1), 3)  # sizes follow the input
    small = total_params(layer_table(preset("seed"), (32, 32, 1), 3))
    assert f"{small:,} parameters for 32×32×1 images" in panel.preset_info.text()

    click_row(qtbot, panel, 0)
    qtbot.mouseClick(panel.remove_button, Qt.LeftButton)
    assert panel.preset_info.text().startswith("Your own stack: ")


def test_a_preset_too_big_for_the_input_says_so(panel):
    panel.set_input((8, 8, 3), 4)
    tip = panel.preset_combo.itemData(panel.preset_combo.findData("seed"), Qt.ToolTipRole)
    assert "It does not fit 8×8×3 images" in tip
    assert "It does not fit 8×8×3 images." in panel.preset_info.text()


# -- 6: buttons that need a selection ------------------------------------------------

def test_remove_and_move_need_a_selected_layer(panel, qtbot):
    def enabled():
        return [b.isEnabled() for b in (panel.remove_button, panel.up_button, panel.down_button)]

    assert panel.selected_index() is None
    assert enabled() == [False, False, False]
    click_row(qtbot, panel, 0)
    assert enabled() == [True, False, True]  # the first layer cannot go up
    click_row(qtbot, panel, len(panel.layers) - 1)
    assert enabled() == [True, True, False]  # the last cannot go down
    table = panel.table
    qtbot.mouseClick(table.viewport(), Qt.LeftButton, pos=table.visualRect(table.model().index(0, 0)).center())
    assert enabled() == [False, False, False]  # the input row is no layer


def test_the_training_box_shows_the_defaults_the_cli_trains_with(qtbot, app_min_steps):
    from cnndesk.cli import build_parser
    from cnndesk.core.model.architecture import TrainingSettings

    p = ModelPanel()  # made after the app's minimum of steps is back
    qtbot.addWidget(p)
    box = p.findChild(QGroupBox, "trainingBox")
    shown = {name: box.findChild(QSpinBox if name != "learningRate" else QDoubleSpinBox, name).text()
             for name in ("learningRate", "batchSize", "epochs", "minSteps", "patience")}
    d = TrainingSettings()
    assert shown == {"learningRate": f"{d.learning_rate:.5f}", "batchSize": str(d.batch_size),
                     "epochs": str(d.epochs), "minSteps": str(app_min_steps), "patience": str(d.patience)}
    assert p.settings() == d
    args = build_parser().parse_args(["train", "folder", "--project", "p"])
    assert (args.optimizer, args.learning_rate, args.batch_size, args.epochs, args.min_steps, args.patience,
            args.device, args.seed) == (d.optimizer, d.learning_rate, d.batch_size, d.epochs, d.min_steps,
                                        d.patience, d.device, d.seed)
    # "off" is 0: exactly the epochs asked
    type_number(qtbot, box.findChild(QSpinBox, "minSteps"), "0")
    assert box.findChild(QSpinBox, "minSteps").text() == "off" and p.settings().min_steps == 0
