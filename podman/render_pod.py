"""Print podman/flexgate-pod.yaml for one pod: its name, the host port of nginx and the podman secret it reads.

    python3 podman/render_pod.py NAME PORT SECRET > build/pod/NAME/pod.yaml

The pod's volumes are named after it too: `podman kube play` (4.3) keeps an emptyDir as a named volume called as
in the file, and reuses it when it exists, so two pods from one file would share their PostgreSQL and NATS data.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

POD_YAML = Path(__file__).with_name("flexgate-pod.yaml")


class RenderError(Exception):
    """The pod file or an argument is not what this script expects."""


def swap(text: str, old: str, new: str, count: int | None = 1) -> str:
    """``text`` with ``old`` replaced by ``new``, once ``old`` is found ``count`` times (None: at least once)."""
    found = text.count(old)
    if found == 0 or (count is not None and found != count):
        raise RenderError(f"{POD_YAML.name} holds {old!r} {found} times, not {count or 'at least once'}.")
    return text.replace(old, new)


def render_pod(name: str, port: int, secret: str, text: str | None = None) -> str:
    """The pod file with its name, nginx's host port, secret and volume names set."""
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
        raise RenderError(f"pod name {name!r}: use at most 63 lower-case letters, digits and '-'.")
    if not 1 <= port <= 65535:
        raise RenderError(f"port {port}: use a TCP port from 1 to 65535.")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}", secret):
        raise RenderError(f"secret name {secret!r}: use letters, digits, '_', '.' and '-'.")
    text = POD_YAML.read_text() if text is None else text
    text = swap(text, "\n  name: flexgate\n", f"\n  name: {name}\n")
    text = swap(text, "hostPort: 8080", f"hostPort: {port}")
    text = swap(text, "name: flexgate-secrets,", f"name: {secret},", count=None)
    volumes = re.findall(r"^    - \{name: ([a-z0-9-]+), emptyDir:", text, re.M)
    if not volumes:
        raise RenderError(f"{POD_YAML.name} lists no emptyDir volumes.")
    for volume in volumes:
        text = swap(text, f"{{name: {volume},", f"{{name: {name}-{volume},", count=None)
    return text


def main(argv: list[str]) -> int:
    """Print the pod file for the NAME, PORT and SECRET in ``argv``, or one sentence and exit 1."""
    if len(argv) != 3 or not argv[1].isdigit():
        print("usage: python3 podman/render_pod.py NAME PORT SECRET", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(render_pod(argv[0], int(argv[1]), argv[2]))
    except (RenderError, OSError) as exc:
        print(f"render_pod: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
