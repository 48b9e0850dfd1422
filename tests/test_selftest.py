"""``cnndesk --selftest`` and ``cnndesk-cli selftest``: the check an installed bundle runs."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import child_env

STEPS = ["window", "tensorflow", "dataset", "train", "save", "reopen", "predict", "inspect", "map", "export .keras",
         "open .keras", "export LiteRT", "close"]


@pytest.mark.slow
def test_the_app_selftest_runs_every_step_and_exits_0(tmp_path):
    keep = tmp_path / "selftest"
    env = child_env(QT_QPA_PLATFORM="xcb")  # the selftest must go offscreen by itself
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
    from cnndesk.core.project.store import is_project, open_project

    assert is_project(keep / "project")
    project, _ = open_project(keep / "project", load_model=False)
    assert len(project.history) == 1
    assert (keep / "exported.keras").stat().st_size > 0
    assert (keep / "exported.tflite").stat().st_size > 0


def test_a_failing_step_is_named_and_the_cli_selftest_exits_1(qapp, monkeypatch, capsys):
    from cnndesk import cli
    from cnndesk.core.model import export
    from cnndesk.core.errors import UserError

    def full_disk(model, fmt, out, class_names=None, temperature=None):
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


FILTER_CHECK = r"""
import os, sys
from cnndesk.core.app_log import log_path, start_logging
from cnndesk.core.library_warnings import tensorflow_start_up_filtered
start_logging("check")
with tensorflow_start_up_filtered():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1796012180.509686   15654 cudart_stub.cc:31] Could not find cuda drivers on your "
                b"machine, GPU will not be used.\n")
    os.write(2, b"To enable the following instructions: AVX2 FMA, in other operations\n")
    os.write(2, b"E0000 00:00:1796614804.700785    2415 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
                b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
    os.write(2, b"W0000 00:00:1796614804.700785    2415 op_kernel.cc:1857] a warning of an op\n")
    os.write(2, b"E0000 00:00:1796614804.700785    2415 op_kernel.cc:1857] OP_REQUIRES failed: a real error\n")
    os.write(2, b"qt.qpa.xcb: a line from Qt\n")
    print("a Python warning", file=sys.stderr)
print("after", file=sys.stderr)
print(log_path())
"""
OTHERS = ["qt.qpa.xcb: a line from Qt", "a Python warning", "after"]


@pytest.mark.parametrize("level, tensorflow_shown", [
    (None, []),
    ("2", ["OP_REQUIRES failed: a real error"]),
    ("0", ["All log messages before absl", "To enable the following instructions", "a warning of an op",
           "OP_REQUIRES failed: a real error"]),
], ids=["as-the-app-sets-it", "2", "0"])
def test_tensorflow_start_up_lines_are_filtered_by_level_and_no_gpu_lines_never_shown(tmp_path, level,
                                                                                          tensorflow_shown):
    variables = {"CNNDESK_LOG_DIR": str(tmp_path)}
    if level is not None:
        variables["TF_CPP_MIN_LOG_LEVEL"] = level
    code = ("import os; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')" if level is None else "") + FILTER_CHECK
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=child_env(**variables))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    # other lines always pass, in their order; of TensorFlow's, those at or above the level
    assert [line for line in lines if line in OTHERS] == OTHERS
    tensorflow = [line for line in lines if line not in OTHERS]
    assert len(tensorflow) == len(tensorflow_shown), proc.stderr
    assert all(expected in line for line, expected in zip(tensorflow, tensorflow_shown)), proc.stderr
    # the "no GPU here" lines never reach the terminal, whatever the level; the log file has every line
    assert "cuda" not in proc.stderr.lower()
    logged = Path(proc.stdout.strip()).read_text(encoding="utf-8")
    for text in ("failed call to cuInit", "Could not find cuda drivers", "OP_REQUIRES failed: a real error"):
        assert text in logged
