"""The Flask class of the web application: Flask, with the per-request checks that never change made once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

KNOWN_FUNCTIONS = 256  # views and hooks whose check for async def is remembered (the app has a few dozen)


class App(Flask):
    """Flask, with each view's and hook's check for ``async def`` made once rather than on every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Flask asks inspect.iscoroutinefunction of every hook and the view on every request: five to seven times a
        # stream's opening. The answer never changes for a function, so it is remembered; for at most
        # KNOWN_FUNCTIONS functions, so ones made per request (after_this_request) cannot grow it.
        found = self._sync.get(func)
        if found is None:
            found = super().ensure_sync(func)
            if len(self._sync) < KNOWN_FUNCTIONS:
                self._sync[func] = found
        return found
