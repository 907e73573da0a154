"""The web tier's live fan-out (gevent): the NATS bridge, the per-worker hub, and each client's SSE stream."""
