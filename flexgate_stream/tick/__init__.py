"""The publisher's tick (no gevent, no Flask): aggregation, snapshot shaping, alert rules, stream set-up."""
