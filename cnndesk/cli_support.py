"""What the ``cnndesk-cli`` commands share: printing JSON lines."""

from __future__ import annotations

import json


def emit_json(obj: dict) -> None:
    """Print ``obj`` as one line of strict JSON (a NaN loss as null), flushed, so a script reading the output sees
    it at once."""
    from .core.project.store import json_safe

    print(json.dumps(json_safe(obj), allow_nan=False), flush=True)
