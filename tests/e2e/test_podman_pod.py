"""podman/: build the image (base images from Debian packages with mmdebstrap) and run the whole pod with
`podman kube play`: 3 NATS nodes, PostgreSQL, release, 2 web, 2 publishers, nginx; then use it as a client would."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from flexgate_stream.devstack.processes import free_port
from tests.e2e.support import ROOT, SSEClient
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

POD_YAML = ROOT / "podman" / "flexgate-pod.yaml"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "podman" / "containers.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=check)


def make(target: str, timeout: float) -> None:
    done = subprocess.run(["make", target], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def require_podman() -> None:
    """Skip, with one sentence, where podman cannot build and run containers."""
    missing = [tool for tool in ("podman", "mmdebstrap", "runc", "make") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install podman runc mmdebstrap), "
                    "so the pod test is skipped.")
    if os.geteuid() != 0:
        pytest.skip("the pod test needs rootful podman (run as root), so it is skipped.")
    make("build/base.tar", 900)
    podman("import", "build/base.tar", "localhost/flexgate-base:bookworm", timeout=300)
    probe = podman("run", "--rm", "localhost/flexgate-base:bookworm", "true", check=False)
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
        pytest.skip(f"podman cannot run containers on this machine ({reason}), so the pod test is skipped.")


def new_secret() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("pod_secret", ROOT / "podman" / "pod_secret.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.pod_secret()


def render_pod(name: str, secret: str, port: int) -> str:
    text = POD_YAML.read_text()
    swaps = [("hostPort: 8080", f"hostPort: {port}"), ("\n  name: flexgate\n", f"\n  name: {name}\n")]
    for old, new in swaps:
        assert text.count(old) == 1, f"{POD_YAML.name} should hold {old!r} once"
        text = text.replace(old, new)
    assert text.count("name: flexgate-secrets,") >= 5
    # Ticks of 1 s instead of 5 s for the web servers and the publishers: the first snapshots come in seconds.
    replicas = '        - {name: FLEXGATE_STREAM_REPLICAS, value: "3"}\n'
    assert text.count(replicas) == 4, f"{POD_YAML.name} should set FLEXGATE_STREAM_REPLICAS in 4 containers"
    text = text.replace(replicas, replicas + '        - {name: FLEXGATE_TICK_SECONDS, value: "1"}\n')
    return text.replace("name: flexgate-secrets,", f"name: {secret},")


def test_the_pod_serves_live_snapshots_through_nginx(tmp_path):
    require_podman()
    make("image", 1500)
    name, port = f"flexgate-test-{uuid.uuid4().hex[:8]}", free_port()
    secret = new_secret()
    token = base64.b64decode(secret["api-tokens"]).decode()
    (tmp_path / "secret.json").write_text(json.dumps(secret))
    podman("secret", "create", name, str(tmp_path / "secret.json"))
    (tmp_path / "pod.yaml").write_text(render_pod(name, name, port))
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        podman("kube", "play", str(tmp_path / "pod.yaml"), timeout=300)

        seen: list[str] = []

        def healthy() -> dict | None:
            try:
                reply = requests.get(url + "/api/stream/stats", headers=auth, timeout=5)
            except requests.RequestException as exc:
                seen[:] = [str(exc)]
                return None
            seen[:] = [reply.text[:2000]]
            if reply.status_code == 401:
                raise AssertionError(f"port {port} answers with another token: not our pod")
            body = reply.json() if reply.headers.get("Content-Type", "").startswith("application/json") else {}
            live = [p for p in body.get("data", {}).get("publishers", []) if p["live"]]
            return body if body.get("success") and len(live) == 2 else None

        try:
            wait_until(healthy, 180, "the pod's stats: NATS connected, fresh snapshots, two live publishers", 1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answer: {seen}; pod: {podman('ps', '-a', '--pod').stdout}") from None
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
        release = podman("inspect", f"{name}-release", "--format", "{{.State.Status}} {{.State.ExitCode}}")
        assert release.stdout.split() == ["exited", "0"]
        for n in (1, 2):  # two publishers on one R3 stream: each window stored once, without failed ticks
            log = podman("logs", f"{name}-publisher-{n}").stderr + podman("logs", f"{name}-publisher-{n}").stdout
            assert "took" in log and "Traceback" not in log and "in process" not in log, log[-2000:]
    finally:
        # Stopped first: podman 4.3's `pod rm --force` alone takes 10 s here, stop and rm about 4 s.
        podman("pod", "stop", name, timeout=120, check=False)
        podman("pod", "rm", "--force", name, timeout=120, check=False)
        podman("secret", "rm", name, check=False)
        (tmp_path / "secret.json").unlink(missing_ok=True)


def test_pod_file_keeps_secrets_out():
    text = POD_YAML.read_text()
    assert not re.search(r"(?i)(password|token)\s*:\s*\S", text.replace("key: nats-password", "")
                         .replace("key: postgres-password", "").replace("key: api-tokens", ""))
    assert "secretKeyRef" in text
    assert Path(ROOT / "podman" / "Containerfile").read_text().count("USER 10001") == 1
