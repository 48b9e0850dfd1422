"""The architecture rules that keep cnndesk easy to change, checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_import_linter_contracts_in_pyproject_hold():
    # a child process: import-linter builds its own import graph and prints its own report
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    report = proc.stdout + proc.stderr
    assert "The core never imports Qt or the UI KEPT" in report, report
    assert proc.returncode == 0, report
    assert "BROKEN" not in report


def test_the_tensorflow_free_core_modules_load_neither_tensorflow_nor_qt():
    modules = ["cnndesk.core.data.dataset", "cnndesk.core.data.images", "cnndesk.core.data.scanning", "cnndesk.core.model.architecture",
               "cnndesk.core.data.samples", "cnndesk.core.tasks", "cnndesk.core.errors", "cnndesk.core.model.pictures",
               "cnndesk.core.project.schema", "cnndesk.core.project.lock", "cnndesk.core.project.session",
               "cnndesk.core.data.color_hint"]
    code = (f"import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in "
            f"('tensorflow', 'keras', 'PySide6', 'tf_keras', 'jax', 'torch'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


@pytest.mark.slow
def test_starting_the_app_imports_no_tensorflow_outside_the_engine():
    """Only the engine thread may import TensorFlow: the window's modules must not, at import time."""
    import subprocess
    import sys

    code = ("import os, sys; os.environ['QT_QPA_PLATFORM'] = 'offscreen'\n"
            "import cnndesk.app, cnndesk.ui.main_window, cnndesk.cli\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _cnndesk_modules():
    import grimp

    graph = grimp.build_graph("cnndesk")  # every import, also those inside functions and under TYPE_CHECKING
    return graph, sorted(m for m in graph.modules if m.startswith("cnndesk"))


def test_no_module_of_cnndesk_imports_itself_round_a_circle():
    graph, modules = _cnndesk_modules()
    # Tarjan's strongly connected components: any with two or more modules is a circle
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if not w.startswith("cnndesk"):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    assert circles == []


def test_no_module_imports_another_modules_private_names():
    import ast

    found = []
    for path in sorted((REPO / "cnndesk").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("cnndesk")):
                found += [f"{path.relative_to(REPO)}:{node.lineno} {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_every_package_folder_is_in_the_installed_package_list():
    """A subpackage missing from pyproject's list installs without its modules: the app then fails on a clean
    machine only."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "cnndesk").rglob("__init__.py")}
    assert on_disk | {"cnndesk.resources"} == listed
