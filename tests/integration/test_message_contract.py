"""The NATS message contract (flexgate_stream/messages.schema.json) against the TypedDicts and against
the messages a real ``workers.publisher`` stores in a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import typing
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from jsonschema import Draft202012Validator

from flexgate_stream import messages
from flexgate_stream.devstack.processes import dies_with_parent, stop_process
from flexgate_stream.devstack.servers import NatsServer
from flexgate_stream.messages import ALERTS_STREAM, INDEX_STREAM, METRICS_STREAM, PUBLISHERS_BUCKET, ROUTES_STREAM
from flexgate_stream.requestlog import schema
from flexgate_stream.web.params import gateway_event
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = json.loads((ROOT / "flexgate_stream" / "messages.schema.json").read_text())
pytestmark = pytest.mark.timeout(90)

SHAPES = ["Point", "Series", "Summary", "Window", "StatusCount", "Breakdown", "RecentWindow", "Snapshot", "Alert",
          "GatewayEvent", "PublisherBeat", "Cardinality", "IndexEntry", "GroupIndex"]


def validator(name: str) -> Draft202012Validator:
    """A validator for one shape, its references resolved inside the contract."""
    root = {key: value for key, value in CONTRACT.items() if key != "oneOf"}
    return Draft202012Validator({**root, "$ref": f"#/$defs/{name}"})


def problems(name: str, message: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(name).iter_errors(message)]


@pytest.mark.parametrize("name", SHAPES)
def test_schema_and_typeddict_name_the_same_fields(name):
    fields = set(typing.get_type_hints(getattr(messages, name)))
    definition = CONTRACT["$defs"][name]
    assert set(definition["properties"]) == fields
    assert set(definition["required"]) == fields


def test_the_contract_is_a_valid_2020_12_schema():
    Draft202012Validator.check_schema(CONTRACT)


def test_a_gateway_event_as_the_web_tier_stores_it_matches():
    event = gateway_event(b'{"event": "circuit_breaker.opened", "timestamp": 1767225600000, "data": {"route": "/a"}}')
    assert problems("GatewayEvent", event) == []


@pytest.mark.own_servers
def test_everything_a_real_publisher_stores_matches_the_contract(db, database_url, tmp_path):
    schema.upgrade(db)
    now = datetime.now(UTC)
    with db, db.cursor() as cur:  # half 503s: alerts fire on all traffic and on the route
        cur.execute("INSERT INTO requests (\"timestamp\", method, path, status_code, response_time_ms, upstream)"
                    " SELECT %s - make_interval(secs => i), 'GET', '/api/orders/' || i,"
                    " CASE WHEN i %% 2 = 0 THEN 503 ELSE 200 END, 10 + i, 'orders-svc'"
                    " FROM generate_series(1, 60) AS i", (now,))
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats.log").start()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXGATE_", "NATS_", "DATABASE_"))}
    with open(tmp_path / "publisher.log", "wb") as out:
        publisher = subprocess.Popen([sys.executable, "-m", "workers.publisher"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                     stderr=out, preexec_fn=dies_with_parent(signal.SIGTERM),
                                     env={**clean, "DATABASE_URL": database_url, "NATS_SERVERS": server.url,
                                          "FLEXGATE_TICK_SECONDS": "1"})
    try:
        found = wait_until(lambda: _enough(stored(server.url)), 45, "snapshots, route snapshots, alerts and a beat")
    finally:
        stop_process(publisher)
        server.stop()
    checked = 0
    for subject, body in found:
        name = _shape(subject)
        assert problems(name, body) == [], (subject, problems(name, body))
        checked += 1
    assert checked >= 8


def _shape(subject: str) -> str:
    if subject == "metrics.summary" or subject.startswith(("routes.", "upstreams.")):
        return "Snapshot"
    if subject.startswith("index."):
        return "GroupIndex"
    if subject.startswith("$KV." + PUBLISHERS_BUCKET):
        return "PublisherBeat"
    if subject.split(".", 1)[1] in ("info", "warning", "critical"):
        return "Alert"
    return "GatewayEvent"


def _enough(found: list[tuple[str, dict]]) -> list[tuple[str, dict]] | None:
    subjects = [s for s, _ in found]
    ok = (subjects.count("metrics.summary") >= 2 and any(s.startswith("routes.") for s in subjects)
          and any(s.startswith("upstreams.") for s in subjects) and "index.routes.0" in subjects
          and sum(s.startswith("alerts.") for s in subjects) >= 4 and any(s.startswith("$KV.") for s in subjects))
    return found if ok else None


def stored(url: str) -> list[tuple[str, dict]]:
    """Every message of our three streams and the publishers' bucket, decoded."""
    async def read() -> list[tuple[str, dict]]:
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        js = nc.jetstream()
        found = []
        try:
            for stream in (METRICS_STREAM, ROUTES_STREAM, INDEX_STREAM, ALERTS_STREAM, f"KV_{PUBLISHERS_BUCKET}"):
                try:
                    info = await js.stream_info(stream)
                except Exception:  # noqa: BLE001 - not created yet
                    continue
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    try:
                        msg = await js.get_msg(stream, seq)
                    except Exception:  # noqa: BLE001 - deleted (a KV value replaced) in between
                        continue
                    if msg.data:
                        found.append((msg.subject, json.loads(msg.data)))
        finally:
            await nc.close()
        return found

    return asyncio.run(read())
