"""A three-node NATS cluster loses the METRICS stream leader's node (SIGKILL) while 50 clients stream.

Real parts only: three nats-server nodes from conf/nats-server-cluster.conf, two ``workers.publisher``
processes on PostgreSQL, two gunicorn servers (2 workers each) whose bridges sit on different nodes,
FLEXGATE_STREAM_REPLICAS=3. Once without and once with user/password auth and TLS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import requests

from flexgate_stream.devstack.processes import dies_with_parent, stop_process
from flexgate_stream.messages import METRICS_STREAM
from flexgate_stream.requestlog import schema
from tests.e2e.nats_cluster import ClusterProbe, NatsCluster, Secure, make_certificates
from tests.e2e.support import ROOT, SSEClient, WebServer, open_spread
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.slow(25)]

CLIENTS = 50


class Recorder:
    """Reads one client's stream on a thread: every data id, every named event."""

    def __init__(self, client: SSEClient) -> None:
        self.client = client
        self.ids: list[int] = []
        self.named: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                event = self.client.next()
                if event.event == "message" and event.id is not None:
                    self.ids.append(int(event.id))
                elif event.event != "message":
                    self.named.append(event.event)
        except Exception:  # noqa: BLE001 - the test closed the stream, or it ended: what was read is checked
            return

    def close(self) -> None:
        self.client.close()
        self.thread.join(5)


def start_publisher(log: Path, env: dict[str, str]) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXGATE_", "NATS_", "DATABASE_"))}
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.publisher"], cwd=ROOT, env={**clean, **env},
                                stdout=subprocess.DEVNULL, stderr=out, preexec_fn=dies_with_parent(signal.SIGTERM))


def reconnects(web: WebServer) -> float:
    text = requests.get(web.url + "/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("flexgate_stream_nats_reconnects_total"))


def healthy_stats(web: WebServer) -> dict | None:
    body = requests.get(web.url + "/api/stream/stats", timeout=5).json()
    data = body["data"]
    live = [p for p in data["publishers"] if p["live"]]
    return data if body["success"] and data["connected"] and not data["stale"] and len(live) == 2 else None


def spread_bridges(cluster: NatsCluster, webs: list[WebServer]) -> list[int]:
    """Every bridge connected, on at least two nodes (a worker is restarted until the kernel's luck allows)."""
    expected = sum(web.workers for web in webs)
    for _attempt in range(15):
        counts = wait_until(lambda: (c := [n.web_connections() for n in cluster.nodes]) and sum(c) == expected and c,
                            30, "every web worker's bridge on a node")
        if sum(1 for c in counts if c) >= 2:
            return counts
        webs[0].kill_worker()
        wait_until(lambda: len(webs[0].worker_pids()) == webs[0].workers, 30, "gunicorn replacing the worker")
    raise AssertionError("the bridges would not spread over two nodes")


def lead_where_a_bridge_is(cluster: NatsCluster, probe: ClusterProbe) -> str:
    """Move the METRICS leader until its node serves a web worker's bridge; its name."""
    for _attempt in range(20):
        info = wait_until(lambda: probe.stream(METRICS_STREAM), 30, "METRICS stream info")
        leader = info.cluster.leader
        if leader and cluster.node_named(leader).web_connections():
            return leader
        probe.step_down(METRICS_STREAM)
        wait_until(lambda: (i := probe.stream(METRICS_STREAM)) and i.cluster.leader not in (None, leader), 30,  # noqa: B023
                   "a new METRICS leader")
    raise AssertionError("the METRICS leader never landed on a node with a web worker")


def all_current(probe: ClusterProbe) -> bool:
    info = probe.stream(METRICS_STREAM)
    return bool(info and info.cluster.leader and info.cluster.replicas and len(info.cluster.replicas) == 2
                and all(r.current and not r.offline for r in info.cluster.replicas))


def run_failover(cluster: NatsCluster, tmp_path: Path, db, database_url: str) -> None:
    schema.upgrade(db)
    env = {"NATS_SERVERS": ",".join(cluster.urls), "FLEXGATE_STREAM_REPLICAS": "3", "FLEXGATE_TICK_SECONDS": "1",
           **(cluster.secure.service_env() if cluster.secure else {})}
    publishers = [start_publisher(tmp_path / f"publisher{i}.log",
                                  {**env, "DATABASE_URL": database_url, "FLEXGATE_LOG_LEVEL": "INFO"})
                  for i in range(2)]
    probe = webs = recorders = None
    try:
        probe = ClusterProbe(cluster)
        wait_until(lambda: (i := probe.stream(METRICS_STREAM)) and i.config.num_replicas == 3 and i.state.last_seq >= 2,
                   60, "the publishers' METRICS stream with 3 replicas")
        webs = []
        for i in range(2):
            (tmp_path / f"web{i}").mkdir()
            webs.append(WebServer(env["NATS_SERVERS"], tmp_path / f"web{i}", env, workers=2).start(timeout=60))
        counts = spread_bridges(cluster, webs)
        leader = lead_where_a_bridge_is(cluster, probe)
        victim = cluster.node_named(leader)
        clients = [c for web in webs for c in open_spread(web.url + "/api/stream/metrics", CLIENTS // 2)]
        recorders = [Recorder(c) for c in clients]
        wait_until(lambda: all(len(r.ids) >= 2 for r in recorders), 30, "every client streaming")

        before = probe.stream(METRICS_STREAM).state.last_seq
        killed_at = time.monotonic()
        victim.kill()
        try:
            wait_until(lambda: (i := probe.stream(METRICS_STREAM)) and i.state.last_seq >= before + 3, 120,
                       "snapshots stored again after the leader's node died")
        except AssertionError as exc:
            tails = [(tmp_path / f"publisher{n}.log").read_text()[-1500:] for n in range(2)]
            raise AssertionError(f"{exc}; stream now {probe.stream(METRICS_STREAM)}; publishers: {tails}") from None
        recovered = time.monotonic() - killed_at
        middle = probe.stream(METRICS_STREAM).state.last_seq
        wait_until(lambda: all(r.ids and r.ids[-1] >= middle for r in recorders), 60,
                   "every client receiving snapshots while the node is down")
        victim.start(cluster.secure)
        wait_until(lambda: all_current(probe), 60, "the restarted node catching up")
        wait_until(lambda: probe.stream(METRICS_STREAM).state.last_seq >= middle + 3, 60, "snapshots after restart")
        last = probe.stream(METRICS_STREAM).state.last_seq
        wait_until(lambda: all(r.ids and r.ids[-1] >= last for r in recorders), 60, "every client reaching the end")

        for n, rec in enumerate(recorders):
            ids = [i for i in rec.ids if i <= last]
            assert ids == list(range(ids[0], last + 1)), f"client {n}: lost or repeated snapshots {ids}"
            assert "reset" not in rec.named and "shutdown" not in rec.named, (n, rec.named)
        first = min(r.ids[0] for r in recorders)
        stored = probe.messages(METRICS_STREAM, first, last)
        ends = [m["windowEnd"] for m in stored]
        assert len(set(ends)) == len(ends), "two publishers stored the same window twice"
        gaps = sum(round(_t(b) - _t(a)) - 1 for a, b in zip(ends, ends[1:], strict=False))
        for web in webs:
            wait_until(lambda web=web: healthy_stats(web), 30, "stats: connected, fresh, both publishers live")
        assert sum(reconnects(web) for web in webs) >= 1, "the bridges on the killed node should count a reconnect"
        for n in range(2):  # the other publisher's copy being stored is a duplicate, not a failure
            log = (tmp_path / f"publisher{n}.log").read_text()
            assert "duplicate message id is in process" not in log, log[-2000:]
        print(f"\nfailover: bridges per node {counts}, killed {leader}; stored again {recovered:.2f} s after the "
              f"kill; {last - first + 1} snapshots to each of {len(recorders)} clients, none lost or repeated; "
              f"{gaps} tick(s) not published during the election")
    finally:
        for web in webs or []:
            web.stop()  # ends every stream first: closing a stream that a reader is blocked on waits for its next frame
        for rec in recorders or []:
            rec.close()
        for proc in publishers:
            stop_process(proc, signal.SIGTERM, timeout=10)
        if probe is not None:
            probe.close()


def _t(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_leader_node_killed_and_restarted_while_fifty_clients_stream(tmp_path, db, database_url):
    cluster = NatsCluster(tmp_path / "nats").start()
    try:
        run_failover(cluster, tmp_path, db, database_url)
    finally:
        cluster.stop()


def test_the_same_with_user_password_auth_and_tls(tmp_path, db, database_url):
    ca, cert, key = make_certificates(tmp_path / "tls")
    secure = Secure(user="flexgate", password=uuid.uuid4().hex, ca=ca, cert=cert, key=key)
    cluster = NatsCluster(tmp_path / "nats", secure).start()
    try:
        varz = cluster.nodes[0].monitor("/varz")
        assert varz["tls_required"] and varz["auth_required"]
        with pytest.raises(Exception):  # noqa: B017 - the cluster refuses a client without credentials
            _anonymous_connect(cluster.urls[0])
        run_failover(cluster, tmp_path, db, database_url)
    finally:
        cluster.stop()


def _anonymous_connect(url: str) -> None:
    import asyncio

    import nats

    async def attempt() -> None:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
        await nc.close()

    asyncio.run(attempt())
