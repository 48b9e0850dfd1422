"""``cnndesk --selftest`` and ``cnndesk-cli selftest``: the check an installed bundle runs."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

STEPS = ["window", "tensorflow", "dataset", "train", "save", "reopen", "predict", "inspect", "export .keras",
         "open .keras", "export LiteRT", "close"]


def test_the_app_selftest_runs_every_step_and_exits_0(tmp_path):
    keep = tmp_path / "selftest"
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb"}  # the selftest must go offscreen by itself
    proc = subprocess.run([sys.executable, "-m", "cnndesk", "--selftest", "--keep", str(keep)], capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("cnndesk selftest: cnndesk ")
    for step in STEPS:
        assert any(re.match(rf"\s+ok\s+{re.escape(step)}\s+\d+\.\d\d s", line) for line in lines), (step, proc.stdout)
    assert re.match(r"selftest passed in \d+\.\d s", lines[-1])
    assert "Traceback" not in proc.stdout + proc.stderr
    # TensorFlow's raw C++ start-up lines ("Could not find cuda drivers", absl's preamble) are not shown
    assert "absl::InitializeLog" not in proc.stderr and ".cc:" not in proc.stderr, proc.stderr
    # --keep leaves what it made: the project reopens in the core, the exports are there
    from cnndesk.core.project import is_project, open_project

    assert is_project(keep / "project")
    project, _ = open_project(keep / "project", load_model=False)
    assert len(project.history) == 1
    assert (keep / "exported.keras").stat().st_size > 0
    assert (keep / "exported.tflite").stat().st_size > 0


def test_a_failing_step_is_named_and_the_cli_selftest_exits_1(qapp, monkeypatch, capsys):
    from cnndesk import cli
    from cnndesk.core import export
    from cnndesk.core.errors import UserError

    def full_disk(model, fmt, out, class_names=None):
        raise UserError(f"No space left on the device to write {Path(out).name}.")

    monkeypatch.setattr(export, "export_model", full_disk)
    code = cli.main(["selftest"])
    out = capsys.readouterr().out
    assert code == 1
    assert "  ok   save " in out and "  ok   inspect " in out
    assert "  FAIL export .keras: No space left on the device to write exported.keras." in out
    assert "open .keras" not in out  # it stops at the first failure
    assert out.rstrip().splitlines()[-1].startswith("selftest FAILED in ")
    assert "Traceback" not in out


def test_selftest_is_listed_in_the_help():
    proc = subprocess.run([sys.executable, "-m", "cnndesk", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert "--selftest" in proc.stdout
    out = io.StringIO()
    from cnndesk.cli import build_parser

    build_parser().print_help(out)
    assert "selftest" in out.getvalue()


def test_tensorflow_start_up_lines_are_dropped_from_stderr_and_other_lines_kept():
    code = (
        "import os, sys\n"
        "from cnndesk.core.library_warnings import tensorflow_log_lines_hidden\n"
        "with tensorflow_log_lines_hidden():\n"
        "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "    os.write(2, b'I0000 00:00:1796012180.509686   15654 cudart_stub.cc:31] Could not find cuda drivers\\n')\n"
        "    os.write(2, b'To enable the following instructions: AVX2 FMA, in other operations\\n')\n"
        "    os.write(2, b'qt.qpa.xcb: a line from Qt\\n')\n"
        "    print('a Python warning', file=sys.stderr)\n"
        "print('after', file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["qt.qpa.xcb: a line from Qt", "a Python warning", "after"]
