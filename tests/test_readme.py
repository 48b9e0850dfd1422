"""The README stays a short page for users, and docs/architecture.md names every module exactly as it is."""

from __future__ import annotations

import contextlib
import io
import re
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ARCHITECTURE = REPO / "docs" / "architecture.md"


def package_modules() -> set[str]:
    """The dotted name of every module and package of ``cnndesk``, found by walking it on disk."""
    names = set()
    for path in (REPO / "cnndesk").rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.add(".".join(parts))
    return names


def named_exactly(name: str, text: str) -> bool:
    """``name`` as a whole dotted name: ``cnndesk.core.data`` is not found in ``cnndesk.core.data.copies``, nor
    ``cnndesk.ui.runs`` in ``cnndesk.ui.runs_view``."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\.?\w)", text) is not None


def dotted_names(text: str) -> set[str]:
    """Every dotted name that starts with ``cnndesk.`` in ``text`` (a file name such as ``cnndesk.log`` aside)."""
    return {m for m in re.findall(r"(?<![\w./-])(cnndesk(?:\.\w+)+)", text) if not m.endswith((".log", ".md"))}


def test_the_helpers_match_whole_dotted_names_only():
    assert named_exactly("cnndesk.ui.runs_view", "see `cnndesk.ui.runs_view`.")
    assert not named_exactly("cnndesk.ui.runs", "see `cnndesk.ui.runs_view`.")
    assert not named_exactly("cnndesk.core.data", "`cnndesk.core.data.copies` holds")
    assert named_exactly("cnndesk.core.data", "`cnndesk.core.data` — the package")
    assert not named_exactly("cnndesk.cli", "mycnndesk.cli")
    assert dotted_names("`cnndesk.core.data.copies` and ~/x/cnndesk.log") == {"cnndesk.core.data.copies"}


def test_every_module_of_the_package_is_named_in_the_architecture_document():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    modules = package_modules()
    assert "cnndesk.app" in modules and len(modules) > 50  # the walk found the package
    unnamed = sorted(m for m in modules if not named_exactly(m, text))
    assert not unnamed, f"modules missing from docs/architecture.md: {unnamed}"


def test_every_module_the_architecture_document_names_exists():
    named = dotted_names(ARCHITECTURE.read_text(encoding="utf-8"))
    missing = sorted(named - package_modules())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; keep it for users and link to docs/"


def test_every_relative_link_of_the_readme_and_the_docs_resolves():
    broken = []
    for page in [README, REPO / "CHANGELOG.md", REPO / "benchmarks" / "README.md", *(REPO / "docs").glob("*.md")]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = target.split("#")[0]
            if not (page.parent / path).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, f"links to files that do not exist: {broken}"


def cli_help(*argv: str) -> str:
    """What ``cnndesk-cli ARGV --help`` prints, from the entry point pyproject.toml declares."""
    target = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]["cnndesk-cli"]
    module, function = target.split(":")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stopped:
        getattr(import_module(module), function)([*argv, "--help"])
    assert stopped.value.code == 0
    return out.getvalue()


def readme_commands() -> list[str]:
    """The ``cnndesk-cli …`` command lines of the README's code blocks (continuation lines joined)."""
    text = README.read_text(encoding="utf-8")
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            code = line.split("#")[0].rstrip()
            if code.startswith("cnndesk-cli "):
                commands.append(code)
            elif commands and code.startswith(" ") and code.strip().startswith("["):
                commands[-1] += " " + code.strip()
    return commands


def test_the_commands_and_options_the_readme_shows_exist(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    commands = readme_commands()
    assert len(commands) >= 8
    listed = cli_help()
    for line in commands:
        command = line.split()[1]
        assert re.search(rf"^\s+{re.escape(command)}(\s|$)", listed, re.M), f"the README shows `{command}`, which " \
                                                                           "cnndesk-cli --help does not list"
        options = cli_help(command)
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", options), \
                f"the README shows `{command} {option}`, which `cnndesk-cli {command} --help` does not list"
