"""The README's architecture section stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def architecture_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return text[text.index("## Architecture"):text.index("## Reliability")]


def test_every_module_the_architecture_section_names_exists():
    section = architecture_section()
    named = set(re.findall(r"\b([a-z_]+)\.py\b", section))
    named |= {n.strip() for group in re.findall(r"<br/>([a-z_ ·]+)<br/>", section) for n in group.split("·")}
    modules = {p.stem for p in (REPO / "cnndesk").rglob("*.py")}
    missing = sorted(n for n in named if n and n not in modules and not n.startswith("test_"))
    assert not missing, f"the README's architecture names modules that do not exist: {missing}"
    assert len(named) > 20


def test_every_ui_and_core_module_is_named_in_the_architecture_section():
    section = architecture_section()
    skip = {"__init__", "__main__", "resources", "errors", "tasks", "samples", "pictures", "library_warnings",
            "model_file", "color_hint", "layer_editing", "dataset_tables"}
    unnamed = sorted(p.stem for folder in ("core", "ui") for p in (REPO / "cnndesk" / folder).glob("*.py")
                     if p.stem not in skip and p.stem not in section)
    assert not unnamed, f"modules missing from the README's architecture section: {unnamed}"
