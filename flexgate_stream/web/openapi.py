"""``GET /api/openapi.json``: the OpenAPI 3.1 document of every HTTP endpoint.

The HTTP parts live in openapi.json beside this module; the message shapes (Snapshot, Alert,
GatewayEvent, ...) come from the NATS contract, flexgate_stream/messages.schema.json, so each is written once.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__, url_prefix="/api")

HERE = Path(__file__).resolve().parent
CONTRACT = HERE.parent / "messages.schema.json"


@cache
def document() -> dict[str, Any]:
    """The document: openapi.json with the message contract's definitions as component schemas."""
    doc = json.loads((HERE / "openapi.json").read_text())
    contract = CONTRACT.read_text().replace('"#/$defs/', '"#/components/schemas/')
    for name, schema in json.loads(contract)["$defs"].items():
        doc["components"]["schemas"].setdefault(name, schema)
    return dict(doc)


@bp.get("/openapi.json")
def openapi() -> Response:
    """This API, described."""
    body = json.dumps(document(), separators=(",", ":"))
    return Response(body, content_type="application/json", headers={"Cache-Control": "max-age=300"})
