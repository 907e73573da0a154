"""The web tier's live fan-out (gevent): the NATS bridge, the channels and hub, each client's stream and writer."""
