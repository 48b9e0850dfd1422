"""Editing pieces of the model panel: number boxes that refuse out loud, and undoable stack edits.

The number boxes (``RangeSpinBox``, ``RangeDoubleSpinBox`` and the ``RefusalNote`` that
watches them) serve the data quality views and the dataset and training settings too: every
box whose number changes the model or the data applies it when it is finished and refuses an
out-of-range one aloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from PySide6.QtCore import QEvent
from PySide6.QtGui import QKeySequence, QUndoCommand, QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QLabel, QSpinBox

from ..core.model.architecture import LayerSpec



# -- spin boxes that refuse out-of-range numbers out loud ----------------------

#: the background of a box while it shows a refused number
REFUSED_STYLE = "background: #ffd8d8"


def typed_number(spin: QAbstractSpinBox, text: str) -> str:
    """The number part of the box's ``text``: without its prefix and suffix (" retrains") and spaces."""
    prefix, suffix = spin.prefix(), spin.suffix()
    if prefix and text.startswith(prefix):
        text = text[len(prefix):]
    if suffix and text.endswith(suffix):
        text = text[:-len(suffix)]
    return text.strip()


def out_of_range(spin: QAbstractSpinBox, text: str) -> float | None:
    """The number typed in ``text`` when it lies outside the spin box's range; None otherwise."""
    value, ok = spin.locale().toDouble(typed_number(spin, text))
    if ok and not spin.minimum() <= value <= spin.maximum():
        return value
    return None


def _leaves_undo_to_the_window(spin: QAbstractSpinBox, event: QEvent) -> bool:
    """Whether ``event`` is Undo or Redo pressed while the box holds no typing of its own to undo.

    A spin box's line edit takes every Undo for itself, so with the cursor in a
    box the window's Undo never came. Once the box shows its applied value, Undo
    and Redo are the window's (the layer edits); typing not yet finished is still
    undone in the box.
    """
    return (event.type() == QEvent.ShortcutOverride and not spin.lineEdit().isModified()
            and (event.matches(QKeySequence.StandardKey.Undo) or event.matches(QKeySequence.StandardKey.Redo)))


def _keep_out_of_range(spin: QAbstractSpinBox, result: tuple, text: str, pos: int) -> tuple:
    """Let an out-of-range number stay on screen as unfinished input.

    Qt's own validator drops the keystroke that leaves the range, so typing 70
    into a 1-64 box silently shows 7. Kept as intermediate input instead, the
    number is never taken as the value (leaving the box puts the last valid
    value back) and the panel can say why it was refused.
    """
    state, fixed, fixed_pos = result
    if state == QValidator.Invalid and out_of_range(spin, text) is not None:
        return QValidator.Intermediate, text, pos
    return state, fixed, fixed_pos


class RangeSpinBox(QSpinBox):
    """A QSpinBox that shows an out-of-range number as typed instead of dropping keystrokes.

    Its value changes only when a number is finished (Enter, leaving the box, the arrows),
    never on each keystroke: typing 70000 passes 7000 on the way, which must not be applied.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setKeyboardTracking(False)

    def validate(self, text: str, pos: int):
        return _keep_out_of_range(self, super().validate(text, pos), text, pos)

    def event(self, event: QEvent) -> bool:
        if _leaves_undo_to_the_window(self, event):
            return False  # not overridden: the shortcut takes it
        return super().event(event)


class RangeDoubleSpinBox(QDoubleSpinBox):
    """A QDoubleSpinBox that shows an out-of-range number as typed instead of dropping keystrokes.

    Its value changes only when a number is finished, as a ``RangeSpinBox``'s.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setKeyboardTracking(False)

    def validate(self, text: str, pos: int):
        return _keep_out_of_range(self, super().validate(text, pos), text, pos)

    def event(self, event: QEvent) -> bool:
        if _leaves_undo_to_the_window(self, event):
            return False  # not overridden: the shortcut takes it
        return super().event(event)


def format_number(value: float) -> str:
    """``value`` for people: "10,000", "0.95", "0.00001" (never "1e-05")."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.10f}".rstrip("0")


class RefusalNote(QLabel):
    """A red line that says why a number typed into a watched box was refused, and which value stays.

    A number above the maximum is refused as it is typed (more digits only make it larger); one below
    the minimum when it is finished, since typing goes on through such numbers (0.0005 starts with 0).

    Args:
        keeps: the end of the sentence, with ``{kept}`` for the value that stays
            ("the layer keeps {kept}"). Defaults to "it stays {kept}".
    """

    def __init__(self, keeps: str = "it stays {kept}", **kwargs):
        super().__init__(wordWrap=True, visible=False, **kwargs)
        self.setStyleSheet("color: #b71c1c")
        self.keeps = keeps
        self._refused_in: tuple | None = None  # the box whose typed number was refused, and the value it kept
        self._below: tuple | None = None  # the box holding a number under its minimum, and that text

    def watch(self, spin: QAbstractSpinBox, what: str) -> None:
        """Say so when the user types a number outside ``spin``'s range; ``what`` names the number."""
        spin.lineEdit().textEdited.connect(lambda text: self._check_typed(spin, what, text))
        spin.valueChanged.connect(lambda value: self._on_value(spin, value))
        spin.editingFinished.connect(lambda: self._on_finished(spin, what))

    def clear_refusal(self) -> None:
        self._refused_in = None
        self.hide()
        self.clear()

    def _on_value(self, spin: QAbstractSpinBox, value: float) -> None:
        # leaving the box puts the kept value back, announced again: the refusal stays until the value changes
        if self._refused_in != (spin, value):
            self.clear_refusal()

    def _on_finished(self, spin: QAbstractSpinBox, what: str) -> None:
        spin.setStyleSheet("")  # the last valid value is back
        below, self._below = self._below, None
        if below is not None and below[0] is spin:
            self._refuse(spin, what, below[1])

    def _check_typed(self, spin: QAbstractSpinBox, what: str, text: str) -> None:
        value = out_of_range(spin, text)
        self._below = (spin, text) if value is not None and value < spin.minimum() else None
        if value is None or self._below is not None:
            spin.setStyleSheet("")
            self.clear_refusal()
            return
        spin.setStyleSheet(REFUSED_STYLE)
        self._refuse(spin, what, text)

    def _refuse(self, spin: QAbstractSpinBox, what: str, text: str) -> None:
        value = spin.value()
        if value == spin.minimum() and spin.specialValueText():
            kept = spin.specialValueText()
        else:
            kept = format_number(value) if isinstance(spin, QDoubleSpinBox) else spin.textFromValue(value)
        self.setText(f"{what} goes from {format_number(spin.minimum())} to {format_number(spin.maximum())}: "
                     f"{typed_number(spin, text)} is refused, and {self.keeps.format(kept=kept)}.")
        self.show()
        self._refused_in = (spin, value)


# -- undo ------------------------------------------------------------------------

@dataclass
class Stack:
    """A snapshot of the layer stack and the preset it is (or "custom")."""

    layers: list[LayerSpec]
    preset: str


class StackOwner(Protocol):
    """The panel whose layer stack an edit changes (the model panel)."""

    def _apply(self, stack: Stack, selected: int, rebuild_editor: bool) -> None: ...


class StackEdit(QUndoCommand):
    """One edit of the layer stack, undone and redone by putting whole snapshots back.

    A stack is a handful of small dicts, so snapshots are simpler to get right
    than an inverse for every kind of edit. Changes of the same parameter in the
    same editor (typing 128 digit by digit) merge into one step.
    """

    MERGE_ID = 1

    def __init__(self, panel: "StackOwner", text: str, before: Stack, after: Stack,
                 selected_before: int | None, selected_after: int | None, merge_key: tuple | None = None):
        super().__init__(text)
        self.panel, self.before, self.after = panel, before, after
        self.selected_before, self.selected_after = selected_before, selected_after
        self.merge_key = merge_key
        self._pushed = False

    def redo(self) -> None:
        # the first redo runs inside push(), while the user may still be typing in the parameter's editor:
        # rebuilding the editor then would take the box away from under the cursor
        live_edit = not self._pushed and self.merge_key is not None
        self._pushed = True
        self.panel._apply(self.after, self.selected_after, rebuild_editor=not live_edit)

    def undo(self) -> None:
        self.panel._apply(self.before, self.selected_before, rebuild_editor=True)

    def id(self) -> int:
        return self.MERGE_ID if self.merge_key is not None else -1

    def mergeWith(self, other: QUndoCommand) -> bool:
        if getattr(other, "merge_key", None) != self.merge_key:
            return False
        self.after = other.after
        self.setObsolete(self.after == self.before)  # typed back to where it was: no step left to undo
        return True
