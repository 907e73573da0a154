"""A three-node JetStream cluster from conf/nats-server-cluster.conf, for the HA tests.

Each node's file is the shipped one rendered with free ports, a temporary store and routes to the
other two (each replacement must match exactly once); the authorization block is dropped unless the
test asks for auth, and the commented tls block is switched on with test certificates when asked.
Nodes are checked to be our own by their server_name and stopped (or killed) by PID; a restarted node
keeps its name, ports and store, as it would in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import nats
import requests

from flexgate_stream.devstack.processes import dies_with_parent, free_port, stop_process, wait_for
from flexgate_stream.devstack.servers import answers_as

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_CONF = ROOT / "conf" / "nats-server-cluster.conf"
NATS_SERVER = str(Path(sys.executable).parent / "nats-server")
TLS_PATHS = ("/etc/flexgate/nats/server-cert.pem", "/etc/flexgate/nats/server-key.pem", "/etc/flexgate/nats/ca.pem")


@dataclass
class Secure:
    """User/password and the TLS files of a secured cluster."""

    user: str
    password: str
    ca: Path
    cert: Path
    key: Path

    def service_env(self) -> dict[str, str]:
        return {"NATS_USER": self.user, "NATS_PASSWORD": self.password, "NATS_TLS_CA": str(self.ca)}


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca-key.pem"
    cert, key, csr = folder / "server-cert.pem", folder / "server-key.pem", folder / "server.csr"
    ext = folder / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=flexgate test CA"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]
    for step in steps:
        subprocess.run([str(part) for part in step], check=True, capture_output=True, timeout=60)
    return ca, cert, key


class ClusterNode:
    """One nats-server of the cluster."""

    def __init__(self, index: int, folder: Path, cluster_name: str) -> None:
        self.index = index
        self.folder = folder
        self.name = f"{cluster_name}-n{index}"
        self.port, self.http_port, self.route_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def render(self, route_ports: list[int], secure: Secure | None) -> str:
        text = CLUSTER_CONF.read_text()
        swaps = [("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{self.port}"),
                 ("http: 127.0.0.1:8222", f"http: 127.0.0.1:{self.http_port}"),
                 ('store_dir: "/var/lib/flexgate/nats"', f'store_dir: "{self.folder / "store"}"'),
                 ("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{self.route_port}")]
        swaps += [(f"nats-route://nats-{i + 1}:6222", f"nats-route://127.0.0.1:{p}") for i, p in enumerate(route_ports)]
        if secure is None:
            block = re.search(r"\nauthorization \{[^}]*\}\n", text)
            assert block, "the cluster conf should hold an authorization block"
            swaps.append((block.group(0), "\n"))
        else:
            block = re.search(r"# tls \{\n(#.*\n)*?# \}\n", text)
            assert block, "the cluster conf should hold a commented tls block"
            swaps.append((block.group(0), re.sub(r"^# ?", "", block.group(0), flags=re.M)))
            swaps += list(zip(TLS_PATHS, (str(secure.cert), str(secure.key), str(secure.ca)), strict=True))
        for old, new in swaps:
            assert text.count(old) == 1, f"{CLUSTER_CONF.name} should hold {old!r} exactly once"
            text = text.replace(old, new)
        return text

    def start(self, secure: Secure | None, timeout: float = 20.0) -> None:
        env = {**os.environ, "NATS_SERVER_NAME": self.name}
        if secure is not None:
            env.update(NATS_USER=secure.user, NATS_PASSWORD=secure.password)
        args = [NATS_SERVER, "-c", str(self.folder / "node.conf")]
        with open(self.folder / "node.log", "ab") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=dies_with_parent(signal.SIGTERM))
        wait_for(self._answers, timeout, f"nats-server {self.name} (log: {self.folder / 'node.log'})", self.proc)

    def _answers(self) -> bool:
        return answers_as(self.port, self.name)

    def monitor(self, path: str) -> dict:
        return requests.get(f"http://127.0.0.1:{self.http_port}{path}", timeout=2).json()

    def web_connections(self) -> int:
        """How many web workers' bridges are connected to this node."""
        conns = self.monitor("/connz?limit=4096").get("connections") or []
        return sum(1 for c in conns if str(c.get("name", "")).startswith("flexgate-web-"))

    def kill(self) -> None:
        """SIGKILL, as a crash of the host would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, timeout=10)


class NatsCluster:
    """Three nodes with routes to each other."""

    def __init__(self, folder: Path, secure: Secure | None = None) -> None:
        name = f"flexgate-{uuid.uuid4().hex[:8]}"
        self.secure = secure
        self.nodes = [ClusterNode(i, folder / f"n{i}", name) for i in range(1, 4)]

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> NatsCluster:
        routes = [node.route_port for node in self.nodes]
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            (node.folder / "node.conf").write_text(node.render(routes, self.secure))
        for node in self.nodes:
            node.start(self.secure)
        wait_for(self._meta_leader, 30, "a JetStream meta leader")
        return self

    def _meta_leader(self) -> bool:
        try:
            return all(node.monitor("/jsz").get("meta_cluster", {}).get("leader") for node in self.nodes)
        except (requests.RequestException, ValueError):
            return False

    def node_named(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class ClusterProbe:
    """A NATS connection of the test's own (all nodes listed), on its own thread; never changes the streams."""

    def __init__(self, cluster: NatsCluster) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        opts: dict = {"servers": cluster.urls, "connect_timeout": 2, "max_reconnect_attempts": -1,
                      "reconnect_time_wait": 0.2, "error_cb": _ignore}
        if cluster.secure is not None:
            opts.update(user=cluster.secure.user, password=cluster.secure.password,
                        tls=ssl.create_default_context(cafile=str(cluster.secure.ca)))
        self.nc = self.run(nats.connect(**opts))
        self.js = self.nc.jetstream(timeout=3)

    def run(self, coro, timeout: float = 15.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stream(self, name: str):
        """stream_info, or None while it cannot be read (no leader yet, or missing)."""
        try:
            return self.run(self.js.stream_info(name), 5)
        except Exception:  # noqa: BLE001 - during an election every kind of error is possible
            return None

    def step_down(self, stream: str) -> None:
        self.run(self.nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=5))

    def messages(self, stream: str, first: int, last: int) -> list[dict]:
        """The stored messages first..last, decoded."""
        async def read() -> list[dict]:
            return [json.loads((await self.js.get_msg(stream, seq)).data) for seq in range(first, last + 1)]

        return self.run(read(), 60)

    def close(self) -> None:
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _ignore(exc: Exception) -> None:
    """Connection errors are expected while a node is down."""
