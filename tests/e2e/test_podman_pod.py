"""podman/: build the image (base images from Debian packages with mmdebstrap) and start the whole pod with
`make pod` as a user would: the release step as an init container, 3 NATS nodes, PostgreSQL, 2 web, 2 publishers,
nginx; then use it as a client would, with the API token from where `make pod` said it is."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from flexgate_stream.devstack.processes import free_port
from tests.e2e.support import ROOT, SSEClient
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800), pytest.mark.slow(120)]

POD_YAML = ROOT / "podman" / "flexgate-pod.yaml"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "podman" / "containers.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=check)


def make(target: str, timeout: float, *arguments: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["make", target, *arguments], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def require_podman() -> None:
    """Skip, with one sentence, where podman cannot build and run containers."""
    missing = [tool for tool in ("podman", "mmdebstrap", "runc", "make") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install podman runc mmdebstrap), "
                    "so the pod test is skipped.")
    if os.geteuid() != 0:
        pytest.skip("the pod test needs rootful podman (run as root), so it is skipped.")
    # Both Debian bases (and the wheels) at once: `make pod` finds them built, as it would after `make image`.
    make("build/base.tar", 900, "-j3", "build/services-base.tar", "build/wheels/.done")
    podman("import", "build/base.tar", "localhost/flexgate-base:bookworm", timeout=300)
    probe = podman("run", "--rm", "localhost/flexgate-base:bookworm", "true", check=False)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        pytest.skip(f"podman cannot run containers on this machine ({reason}), so the pod test is skipped.")


def token_file_from(output: str) -> Path:
    """The API token's file, as `make pod` names it in its last lines."""
    found = re.search(r"^API token[^:\n]*: (/\S+)$", output, re.M)
    assert found, f"make pod does not say where the API token is:\n{output[-1500:]}"
    return Path(found.group(1))


def assert_private(path: Path, mode: int) -> None:
    """``path`` belongs to this user and has exactly ``mode``: nobody else can read it."""
    info = path.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), mode), f"{path}: {oct(info.st_mode)}"


def pod_states(name: str) -> tuple[str, str, list[str]]:
    """The pod's state for `podman pod inspect` and `podman pod ps`, and each container's name and state."""
    inspected = podman("pod", "inspect", name, "--format", "{{.State}}").stdout.strip()
    listed = podman("pod", "ps", "--filter", f"name=^{name}$", "--format", "{{.Status}}").stdout.strip()
    ctrs = json.loads(podman("ps", "-a", "--filter", f"pod={name}", "--format", "json").stdout)
    return inspected, listed, sorted(f"{ctr['Names'][0]} {ctr['State']}" for ctr in ctrs)


def test_make_pod_leaves_a_pod_its_user_can_use():
    require_podman()
    name, port = f"flexgate-test-{uuid.uuid4().hex[:8]}", free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        made = make("pod", 1500, f"POD_NAME={name}", f"POD_PORT={port}")
        token_file = token_file_from(made.stdout)
        assert_private(token_file, 0o600)
        assert_private(token_file.parent, 0o700)
        auth = {"Authorization": f"Bearer {token_file.read_text().strip()}"}

        seen: list[str] = []

        def healthy() -> dict | None:
            try:
                reply = requests.get(url + "/api/stream/stats", headers=auth, timeout=5)
            except requests.RequestException as exc:
                seen[:] = [str(exc)]
                return None
            seen[:] = [reply.text[:2000]]
            assert reply.status_code != 401, f"port {port} refuses the token of {token_file}"
            body = reply.json() if reply.headers.get("Content-Type", "").startswith("application/json") else {}
            live = [p for p in body.get("data", {}).get("publishers", []) if p["live"]]
            return body if reply.status_code == 200 and body.get("success") and len(live) == 2 else None

        try:
            wait_until(healthy, 180, "the pod's stats: NATS connected, fresh snapshots, two live publishers", 1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {seen}; pod: {podman('ps', '-a', '--pod').stdout}") from None
        inspected, listed, containers = pod_states(name)
        assert (inspected, listed) == ("Running", "Running"), containers
        assert all(line.endswith(" running") for line in containers), containers
        assert not [line for line in containers if "-release " in line], "the release step should be gone"
        assert requests.get(url + "/api/stream/stats", timeout=5).status_code == 401  # the token is required
        metrics = requests.get(url + "/metrics", timeout=5).text
        assert re.search(r'^flexgate_stream_jetstream_stream_replicas\{stream="METRICS"\} 3\.0$', metrics, re.M)
        stream = SSEClient(url + "/api/stream/metrics", headers=auth, read_timeout=30)
        try:
            assert stream.next().json()["type"] == "connected"
            ids = [int(e.id) for e in stream.data_events(2)]
            assert ids[1] > ids[0]
        finally:
            stream.close()
        assert podman("exec", f"{name}-web-1", "id", "-u").stdout.strip() == "10001"
        assert podman("healthcheck", "run", f"{name}-web-1", check=False).returncode == 0
        for n in (1, 2):  # two publishers on one R3 stream, started on an upgraded schema: no failed tick
            log = podman("logs", f"{name}-publisher-{n}").stderr + podman("logs", f"{name}-publisher-{n}").stdout
            assert "took" in log and "Traceback" not in log and "in process" not in log, log[-2000:]
            assert "release step" not in log, log[-2000:]
    finally:
        podman("pod", "rm", "--force", name, timeout=120, check=False)
        podman("secret", "rm", f"{name}-secrets", check=False)
        shutil.rmtree(ROOT / "build" / "pod" / name, ignore_errors=True)


def test_pod_file_keeps_secrets_out():
    text = POD_YAML.read_text()
    assert not re.search(r"(?i)(password|token)\s*:\s*\S", text.replace("key: nats-password", "")
                         .replace("key: postgres-password", "").replace("key: api-tokens", ""))
    assert "secretKeyRef" in text
    assert Path(ROOT / "podman" / "Containerfile").read_text().count("USER 10001") == 1
