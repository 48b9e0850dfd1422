"""Access to the files of ``resources/`` (icons, desktop entry).

Installed, they are the package ``cnndesk.resources`` (see
``[tool.setuptools.package-dir]`` in pyproject.toml) and are read with
``importlib.resources``, which also works inside a zip or a PyInstaller
bundle. Run from a source checkout without installing, ``cnndesk`` is the
checkout's folder and the files are read from ``resources/`` beside it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from PySide6.QtGui import QIcon, QPixmap

_CHECKOUT = Path(__file__).resolve().parents[2] / "resources"


def resource_bytes(name: str) -> bytes:
    try:
        return resources.files("cnndesk.resources").joinpath(name).read_bytes()
    except ModuleNotFoundError:
        return (_CHECKOUT / name).read_bytes()


def app_icon() -> QIcon:
    pm = QPixmap()
    pm.loadFromData(resource_bytes("cnndesk.svg"), "SVG")
    return QIcon(pm)
