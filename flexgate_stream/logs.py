"""The one logging set-up of every process: the web app, the publisher and the ``make run`` launcher."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | int = logging.INFO) -> None:
    """Log to stderr at ``level`` in the project's format (a no-op when the process has already set logging up)."""
    logging.basicConfig(level=level, format=FORMAT)
