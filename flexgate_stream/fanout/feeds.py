"""Feeds: which JetStream stream and subject a client stream follows, and its overrun policy."""

from __future__ import annotations

from dataclasses import dataclass

from flexgate_stream.fanout.channel import Policy
from flexgate_stream.messages import (
    ALERT_SUBJECT_PREFIX,
    ALERTS_STREAM,
    METRICS_STREAM,
    ROUTES_STREAM,
    SUMMARY_SUBJECT,
    route_subject,
    route_token,
    upstream_subject,
)


@dataclass(frozen=True)
class Feed:
    """One followed subject: its channel key, stream, subject and policy."""

    key: str
    stream: str
    subject: str
    policy: Policy
    shared: bool  # followed for the worker's life; otherwise dropped when its last client leaves

    @property
    def label(self) -> str:
        """The feed's name in metrics: every per-route feed counts as ``route``, every per-upstream one as
        ``upstream``."""
        return self.key if self.shared else self.key.split(":", 1)[0]


ROUTE_KEY_PREFIX = "route:"
UPSTREAM_KEY_PREFIX = "upstream:"
GROUP_KEY_PREFIXES = (ROUTE_KEY_PREFIX, UPSTREAM_KEY_PREFIX)  # the feeds FLEXGATE_MAX_ROUTE_FEEDS counts
SUMMARY = Feed("metrics", METRICS_STREAM, SUMMARY_SUBJECT, Policy.LATEST, shared=True)
ALERTS = Feed("alerts", ALERTS_STREAM, ALERT_SUBJECT_PREFIX + ">", Policy.EVERY, shared=True)


def route_feed(route: str) -> Feed:
    """The per-route snapshots of ``route``."""
    return Feed(ROUTE_KEY_PREFIX + route_token(route), ROUTES_STREAM, route_subject(route), Policy.LATEST, shared=False)


def upstream_feed(upstream: str) -> Feed:
    """The per-upstream snapshots of ``upstream`` (kept in the same stream as the per-route ones)."""
    return Feed(UPSTREAM_KEY_PREFIX + route_token(upstream), ROUTES_STREAM, upstream_subject(upstream), Policy.LATEST,
                shared=False)


def group_feed(kind: str, name: str) -> Feed:
    """The per-route (``kind`` "routes") or per-upstream ("upstreams") snapshots of ``name``."""
    return upstream_feed(name) if kind == "upstreams" else route_feed(name)
