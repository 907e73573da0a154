"""The gateway's route patterns: which configured route a request path belongs to (pure, no I/O).

The syntax is FlexGate's (docs/guide/config/routes.md), segment by segment, on the path without its
query string:

- a literal segment matches itself: ``/api/users`` matches only ``/api/users`` (and ``/api/users/``);
- ``:name`` matches any one non-empty segment: ``/api/users/:id`` matches ``/api/users/42``;
- ``*`` inside a pattern matches any one segment: ``/api/*/profile`` matches ``/api/7/profile``;
- a trailing ``*`` matches one or more further segments: ``/api/users/*`` matches ``/api/users/1`` and
  ``/api/users/a/b/c``, but not ``/api/users`` nor ``/api/user``; ``/*`` alone matches every path but ``/``.

When several patterns match, the most specific wins: the one whose first differing segment is a literal
rather than a parameter, a parameter rather than a trailing ``*``; then the longer pattern. A request is
labelled with the winning pattern exactly as configured.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

PARAM = ":"
WILDCARD = "*"
MAX_PATTERN_LENGTH = 500  # FlexGate's routes.path is VARCHAR(500)


def segments(path: str) -> list[str]:
    """The non-empty segments of ``path`` without its query string or fragment."""
    bare = path.split("?", 1)[0].split("#", 1)[0]
    return [part for part in bare.split("/") if part]


@dataclass
class _Node:
    """One level of the pattern trie: literal children, one parameter child, and what ends here."""

    literals: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    exact: str | None = None  # a pattern that ends at this node
    rest: str | None = None  # a pattern ``.../*`` that matches one or more further segments


class RoutePatterns:
    """A set of route patterns, matched by walking a trie of their segments."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns: tuple[str, ...] = tuple(dict.fromkeys(p.strip() for p in patterns if valid(p)))
        self._root = _Node()
        for pattern in self.patterns:
            self._add(pattern)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RoutePatterns) and set(self.patterns) == set(other.patterns)

    def __hash__(self) -> int:
        return hash(frozenset(self.patterns))

    def _add(self, pattern: str) -> None:
        parts = segments(pattern)
        node = self._root
        for i, part in enumerate(parts):
            if part == WILDCARD and i == len(parts) - 1:
                if node.rest is None:
                    node.rest = pattern
                return
            if part == WILDCARD or part.startswith(PARAM):
                node.param = node.param or _Node()
                node = node.param
            else:
                node = node.literals.setdefault(part, _Node())
        if node.exact is None:
            node.exact = pattern

    def match(self, path: str) -> str | None:
        """The most specific pattern matching ``path``, as configured; None when none does."""
        if not self.patterns:
            return None
        return _walk(self._root, segments(path), 0)


def _walk(node: _Node, parts: list[str], i: int) -> str | None:
    """Depth-first, most specific branch first: literal, then parameter, then a trailing wildcard."""
    if i == len(parts):
        return node.exact
    child = node.literals.get(parts[i])
    if child is not None:
        found = _walk(child, parts, i + 1)
        if found is not None:
            return found
    if node.param is not None:
        found = _walk(node.param, parts, i + 1)
        if found is not None:
            return found
    return node.rest


def valid(pattern: str) -> bool:
    """True for a pattern this module can match: starts with ``/``, at most MAX_PATTERN_LENGTH characters."""
    pattern = pattern.strip()
    return pattern.startswith("/") and len(pattern) <= MAX_PATTERN_LENGTH and "?" not in pattern
