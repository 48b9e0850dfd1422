"""Access to files in ``cnndesk.resources`` (via importlib.resources)."""

from __future__ import annotations

from importlib import resources

from PySide6.QtGui import QIcon, QPixmap


def resource_bytes(name: str) -> bytes:
    return resources.files("cnndesk.resources").joinpath(name).read_bytes()


def app_icon() -> QIcon:
    pm = QPixmap()
    pm.loadFromData(resource_bytes("cnndesk.svg"), "SVG")
    return QIcon(pm)
