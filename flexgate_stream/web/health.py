"""Liveness: ``GET /healthz`` answers while the process serves requests."""

from __future__ import annotations

from flask import Blueprint, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and serving."""
    return jsonify({"status": "ok"})
