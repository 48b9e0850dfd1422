"""Class names as a ``labels.txt``: one name a line, the Teachable Machine convention.

Every export writes the model's class names this way beside the model, named
after it (``mymodel.labels.txt`` for ``mymodel.tflite``, so that two models
exported into one folder keep their own names; :func:`labels_file_for`),
inside the folder for a SavedModel and inside the archive for ``.keras``; and
opening a model reads them back, so "rocket" stays "rocket" instead of "class 5".

A class name comes from a folder name and may hold any character, a line break
included. One name a line cannot hold a line break, so names are escaped, not
refused: a backslash is written ``\\\\``, a line feed ``\\n``, a carriage return
``\\r`` and any other character Python treats as a line boundary (vertical
tab, form feed, ``\\x1c``-``\\x1e``, ``\\x85``, ``\\u2028``, ``\\u2029``) as
``\\xHH`` or ``\\uHHHH``. A name without those characters, the usual case, is
written as it is; the file is UTF-8 without a byte order mark.

Reading accepts what other tools write too: a byte order mark, Windows line
ends, a missing or extra final line end, and Teachable Machine's numbered form
(``0 rocket``, ``1 car``, ...), recognised when every line starts with its own
index and a space.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

LABELS_FILE = "labels.txt"

#: characters written as escapes: the backslash and every line boundary of ``str.splitlines``
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r"}
_LINE_BOUNDARIES = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPED = re.compile(r"\\(\\|n|r|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")
_NUMBERED = re.compile(r"(\d+) (.*)", re.DOTALL)


def labels_file_for(model_file: str | os.PathLike) -> Path:
    """The labels file beside a model file, named after it: ``out/mymodel.tflite`` -> ``out/mymodel.labels.txt``."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}.{LABELS_FILE}")


def _escape_char(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def escape_label(name: str) -> str:
    """``name`` as one line of a labels.txt (unchanged unless it holds a backslash or a line break)."""
    return "".join(_escape_char(c) if c in _ESCAPES or c in _LINE_BOUNDARIES else c for c in name)


def _unescape_match(m: re.Match) -> str:
    code = m.group(1)
    if code in ("\\", "n", "r"):
        return {"\\": "\\", "n": "\n", "r": "\r"}[code]
    return chr(int(code[1:], 16))


def unescape_label(line: str) -> str:
    """The name one line of a labels.txt stands for; a backslash not starting an escape stays as it is."""
    return _ESCAPED.sub(_unescape_match, line)


def labels_text(names) -> str:
    """The contents of a labels.txt for ``names``, each line ended by a line feed."""
    return "".join(escape_label(str(n)) + "\n" for n in names)


def parse_labels(text: str) -> list[str]:
    """The class names in the contents of a labels.txt (see the module docstring for the forms read)."""
    text = text.removeprefix("\ufeff")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    numbered = [_NUMBERED.fullmatch(line) for line in lines]
    if lines and all(m is not None and int(m.group(1)) == i for i, m in enumerate(numbered)):
        lines = [m.group(2) for m in numbered]
    return [unescape_label(line) for line in lines]
