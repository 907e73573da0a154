"""Route folding: a request path becomes its route, e.g. ``/api/users/123?x=1`` -> ``/api/users/:id``.

The same rule exists twice, as a PostgreSQL expression (used by the aggregation, so only the
folded names leave the database) and in Python (for tests and for callers that fold one path).
"""

from __future__ import annotations

import re

ID_PLACEHOLDER = ":id"
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# A segment that is all digits, a UUID, or 16+ hex characters (object ids, hashes) is an id.
ID_SEGMENT = f"([0-9]+|{_UUID}|[0-9a-fA-F]{{16,}})"
_PY_ID = re.compile(f"/{ID_SEGMENT}(?=/|$)")
MAX_ROUTE_LENGTH = 200


def fold_route(path: str | None) -> str:
    """The route of ``path``: query string and fragment dropped, id-like segments replaced by ``:id``."""
    bare = path or ""
    if "?" in bare or "#" in bare:
        bare = bare.split("?", 1)[0].split("#", 1)[0]
    folded = _PY_ID.sub("/" + ID_PLACEHOLDER, bare)
    folded = folded.rstrip("/") or "/"
    return folded[:MAX_ROUTE_LENGTH]


def route_sql(column: str = "path") -> str:
    """A PostgreSQL expression equal to ``fold_route(column)`` (PostgreSQL ARE syntax)."""
    bare = f"split_part(split_part(coalesce({column}, ''), '?', 1), '#', 1)"
    folded = f"regexp_replace({bare}, '/{ID_SEGMENT}(?=/|$)', '/{ID_PLACEHOLDER}', 'g')"
    return f"left(coalesce(nullif(rtrim({folded}, '/'), ''), '/'), {MAX_ROUTE_LENGTH})"
