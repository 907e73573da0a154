"""The NATS message contract (flexgate_stream/messages.schema.json) as tests check their own fixtures against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

CONTRACT = json.loads((Path(__file__).resolve().parents[1] / "flexgate_stream" / "messages.schema.json").read_text())


def problems(shape: str, message: dict[str, Any]) -> list[str]:
    """What is wrong with ``message`` as a ``shape`` (a $defs name such as Snapshot or GroupIndex)."""
    root = {key: value for key, value in CONTRACT.items() if key != "oneOf"}
    validator = Draft202012Validator({**root, "$ref": f"#/$defs/{shape}"})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(message)]


def checked(shape: str, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    """``messages``, each asserted to be a valid ``shape``."""
    for message in messages:
        assert problems(shape, message) == [], problems(shape, message)[:3]
    return list(messages)
