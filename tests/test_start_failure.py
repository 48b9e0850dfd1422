"""A window that cannot open says so in a dialog and in the log (started from a menu there is no terminal)."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

import cnndesk.app as app_module
from cnndesk.core.app_log import log_path


def test_a_failure_on_start_shows_a_dialog_naming_the_log_and_writes_the_traceback(qapp, monkeypatch):
    shown = []

    def broken_window(app, argv):
        raise RuntimeError("no usable screen")

    def fake_exec(box):  # the real exec() would wait for a click
        shown.append((box.windowTitle(), box.text(), box.informativeText(), box.detailedText()))
        return QMessageBox.StandardButton.Ok

    monkeypatch.setattr(app_module, "_open_window", broken_window)
    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    monkeypatch.setattr(qapp, "exec", lambda: (_ for _ in ()).throw(AssertionError("the event loop must not start")))

    assert app_module.main(["cnndesk"]) == 1

    [(title, text, informative, details)] = shown
    assert title == "cnndesk could not start"
    assert "RuntimeError: no usable screen" in text
    assert str(log_path()) in informative
    assert "broken_window" in details
    logged = log_path().read_text(encoding="utf-8")
    assert "cnndesk could not start" in logged and "RuntimeError: no usable screen" in logged


def test_the_dialog_is_a_critical_message_box_with_the_traceback(qapp):
    try:
        raise OSError("cannot read the settings")
    except OSError as error:
        box = app_module.start_failure_dialog(error)
    assert box.icon() == QMessageBox.Icon.Critical
    assert "OSError: cannot read the settings" in box.text()
    assert "Traceback" in box.detailedText()
