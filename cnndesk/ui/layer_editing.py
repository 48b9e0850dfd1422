"""Editing pieces of the model panel: number boxes that refuse out loud, and undoable stack edits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtGui import QUndoCommand, QValidator
from PySide6.QtWidgets import QAbstractSpinBox, QDoubleSpinBox, QSpinBox

from ..core.architecture import LayerSpec

if TYPE_CHECKING:
    from .model_panel import ModelPanel


# -- spin boxes that refuse out-of-range numbers out loud ----------------------

def out_of_range(spin: QAbstractSpinBox, text: str) -> float | None:
    """The number typed in ``text`` when it lies outside the spin box's range; None otherwise."""
    value, ok = spin.locale().toDouble(text.strip())
    if ok and not spin.minimum() <= value <= spin.maximum():
        return value
    return None


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
    """A QSpinBox that shows an out-of-range number as typed instead of dropping keystrokes."""

    def validate(self, text: str, pos: int):
        return _keep_out_of_range(self, super().validate(text, pos), text, pos)


class RangeDoubleSpinBox(QDoubleSpinBox):
    """A QDoubleSpinBox that shows an out-of-range number as typed instead of dropping keystrokes."""

    def validate(self, text: str, pos: int):
        return _keep_out_of_range(self, super().validate(text, pos), text, pos)


def format_number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


# -- undo ------------------------------------------------------------------------

@dataclass
class Stack:
    """A snapshot of the layer stack and the preset it is (or "custom")."""

    layers: list[LayerSpec]
    preset: str


class StackEdit(QUndoCommand):
    """One edit of the layer stack, undone and redone by putting whole snapshots back.

    A stack is a handful of small dicts, so snapshots are simpler to get right
    than an inverse for every kind of edit. Changes of the same parameter in the
    same editor (typing 128 digit by digit) merge into one step.
    """

    MERGE_ID = 1

    def __init__(self, panel: "ModelPanel", text: str, before: Stack, after: Stack,
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
