"""What the ``cnndesk-cli`` commands share: printing JSON lines."""

from __future__ import annotations

import json


def emit_json(obj: dict) -> None:
    """Print ``obj`` as one JSON line, flushed, so a script reading the output sees it at once."""
    print(json.dumps(obj), flush=True)
