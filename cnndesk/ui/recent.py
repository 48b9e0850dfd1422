"""The File > Open Recent menu, remembered in QSettings."""

from __future__ import annotations

import json

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import QMenu

MAX_RECENT = 8


class RecentProjects(QObject):
    """The project folders opened or saved last, newest first, shown in ``menu``.

    Signals:
        open_requested(str): the user picked a folder from the menu.
    """

    open_requested = Signal(str)

    def __init__(self, settings: QSettings, menu: QMenu, key: str = "recentProjects"):
        super().__init__(menu)
        self.settings, self.menu, self.key = settings, menu, key
        self.fill_menu()

    def folders(self) -> list[str]:
        try:
            value = json.loads(self.settings.value(self.key, "[]"))
            return [str(v) for v in value if isinstance(v, str)]
        except (TypeError, ValueError):
            return []

    def add(self, folder: str) -> None:
        recent = [r for r in self.folders() if r != folder]
        recent.insert(0, folder)
        self.settings.setValue(self.key, json.dumps(recent[:MAX_RECENT]))
        self.fill_menu()

    def fill_menu(self) -> None:
        self.menu.clear()
        recent = self.folders()
        for i, folder in enumerate(recent):
            act = self.menu.addAction(f"&{i + 1} {folder}")
            act.triggered.connect(lambda _=False, f=folder: self.open_requested.emit(f))
        self.menu.setEnabled(bool(recent))
