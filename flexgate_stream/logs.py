"""The one logging set-up of every process: the web app, the publisher and the ``make run`` launcher.

Every line goes through ``log_safety.SafeFormatter``: request-derived text cannot forge a line, write
terminal escapes, or leave a token in the log.
"""

from __future__ import annotations

import logging

from flexgate_stream.log_safety import SafeFormatter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | int = logging.INFO) -> None:
    """Log to stderr at ``level`` in the project's format (a no-op when the process has already set logging up)."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
