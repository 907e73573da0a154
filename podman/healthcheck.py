#!/usr/bin/env python3
"""Container health for podman/Containerfile (installed as flexgate-healthcheck): healthy when
GET http://127.0.0.1:$PORT$HEALTHCHECK_PATH answers 200, or when HEALTHCHECK_PATH is empty (worker, release).
One word on PATH, because `podman kube play` splits a probe's command line on spaces."""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    path = os.environ.get("HEALTHCHECK_PATH", "/healthz")
    if not path:
        return 0
    url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return 0 if reply.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
