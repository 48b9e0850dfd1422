"""The Qt binding itself: PySide6 6.12.0 broke Python 3.11 apps like ours (see pyproject.toml)."""

import subprocess
import sys

CHECK = """
import sys
from PySide6.QtCore import QCoreApplication
app = QCoreApplication([])
before = sys.getrefcount(None)
for _ in range(2000):
    app.processEvents()
print(before - sys.getrefcount(None))
"""


def test_processing_events_keeps_references_to_none():
    """6.12.0 dropped a reference to None per processEvents()/qWait(), aborting Python 3.11 ("none_dealloc")."""
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": ""})
    assert out.returncode == 0, out.stderr
    lost = int(out.stdout.strip().splitlines()[-1])
    assert abs(lost) < 50, f"{lost} references to None lost in 2000 processEvents() calls"
