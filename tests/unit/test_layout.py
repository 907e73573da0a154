"""The package layout's rules: which room may import which, no circles, and the drivers each process loads."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = {"settings", "errors", "messages", "sse", "liveness", "backoff", "nats_link", "logs", "timestamps"}

# room -> rooms it must not import (a room is a sub-package, "contract" the shared root modules, or "workers")
FORBIDDEN = {
    "contract": {"tick", "requestlog", "fanout", "web", "server", "devstack", "workers", "cli"},
    "tick": {"fanout", "web", "server", "devstack", "workers", "cli"},
    "requestlog": {"tick", "fanout", "web", "server", "devstack", "workers"},
    "fanout": {"tick", "requestlog", "web", "server", "devstack", "workers", "cli"},
    "web": {"tick", "requestlog", "server", "devstack", "workers"},  # the Flask app knows nothing of gunicorn's
    "server": {"tick", "requestlog", "devstack", "workers", "cli"},
    "workers": {"fanout", "web", "server", "devstack", "cli"},
}


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "workers":
        return "workers"
    if parts[0] != "flexgate_stream" or len(parts) < 2:
        return None
    return "contract" if parts[1] in CONTRACT else parts[1]


def project_imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (at any depth of the file)."""
    found: dict[str, set[str]] = {}
    for base in ("flexgate_stream", "workers"):
        for path in (ROOT / base).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module)
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
                elif isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
            found[module] = {n for n in names if n.split(".")[0] in ("flexgate_stream", "workers")}
    modules = set(found)
    return {m: {n for n in deps if n in modules and n != m} for m, deps in found.items()}


def test_no_room_imports_one_it_must_not():
    wrong = []
    for module, deps in project_imports().items():
        for dep in deps:
            if room_of(dep) in FORBIDDEN.get(room_of(module) or "", set()):
                wrong.append(f"{module} -> {dep}")
    assert wrong == []


def test_no_import_circles():
    graph = project_imports()
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if dep == "flexgate_stream":
                continue  # the package itself: create_app imports the web tier lazily
            if state.get(dep) == "open":
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def loaded_modules(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sys.modules))"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=True)
    return {name.split(".")[0] for name in done.stdout.split()}


def test_the_web_app_never_loads_the_postgresql_driver():
    loaded = loaded_modules("from flexgate_stream import create_app\n"
                            "from flexgate_stream.settings import Settings\n"
                            "import flexgate_stream.fanout.bridge, flexgate_stream.server.gunicorn_hooks\n"
                            "app = create_app(Settings())")
    assert "flask" in loaded and "psycopg2" not in loaded


def test_the_publisher_never_loads_gevent_or_flask():
    loaded = loaded_modules("import workers.publisher")
    assert "nats" in loaded and not loaded & {"gevent", "flask", "werkzeug"}
