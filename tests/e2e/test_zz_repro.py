from __future__ import annotations

import threading

import pytest

from tests.e2e.support import SSEClient

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_repro(web_server, nats_client):
    for _ in range(150):
        nats_client.publish_alert("warning", rule="fill")
    stop = threading.Event()
    live: list[int] = []

    def pump():
        while not stop.is_set() and len(live) < 300:
            live.append(nats_client.publish_alert("info", rule="during"))

    client = SSEClient(web_server.url + "/api/stream/alerts", params={"since": "1h"})
    t = threading.Thread(target=pump)
    t.start()
    events = []
    try:
        client.next()
        while True:
            e = client.next()
            events.append(e)
            assert e.event != "reset", (len(events), e.data)
            if live and e.id and int(e.id) >= 0 and len(events) > 450:
                break
    finally:
        stop.set()
        t.join()
        client.close()
        print(web_server.log_text()[-3000:])
