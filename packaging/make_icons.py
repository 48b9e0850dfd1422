"""Render the app icon (resources/cnndesk.svg) as PNGs, a Windows .ico and a macOS .icns.

    python packaging/make_icons.py OUT_DIR

Writes OUT_DIR/hicolor/<N>x<N>/apps/cnndesk.png for the Linux menu, and
OUT_DIR/cnndesk.ico and OUT_DIR/cnndesk.icns for the Windows and macOS
executables. Uses Qt's SVG renderer (offscreen) and Pillow; nothing else.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def main(out_dir: str) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import QByteArray, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])  # noqa: F841 (Qt needs it alive)
    svg = (Path(__file__).resolve().parents[1] / "resources" / "cnndesk.svg").read_bytes()
    renderer = QSvgRenderer(QByteArray(svg))
    if not renderer.isValid():
        print("make_icons: resources/cnndesk.svg is not a valid SVG", file=sys.stderr)
        return 1
    out = Path(out_dir)
    pngs = {}
    for n in SIZES:
        image = QImage(n, n, QImage.Format_ARGB32)
        image.fill(Qt.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out / "hicolor" / f"{n}x{n}" / "apps" / "cnndesk.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(str(path), "PNG")
        pngs[n] = path
    big = Image.open(pngs[512]).convert("RGBA")
    big.save(out / "cnndesk.ico", sizes=[(n, n) for n in (16, 24, 32, 48, 64, 128, 256)])
    big.save(out / "cnndesk.icns")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "build/icons"))
