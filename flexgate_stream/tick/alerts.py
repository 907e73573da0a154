"""Alert rules: loaded from conf/alert-rules.toml (overridable by environment), evaluated every tick.

A rule fires when its metric over the last 5 minutes is above its threshold; a message goes out
once on firing and once on resolving. Firing state is shared between publishers through a KV
bucket (see workers/publisher.py), so a second publisher adopts a running alert instead of
announcing it again, and both derive the same message id for the same transition.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

from flexgate_stream.errors import ConfigError
from flexgate_stream.messages import Alert, route_token
from flexgate_stream.tick.figures import SERIES_BUCKET_SECONDS, Stats, WindowFigures

DEFAULT_RULES_FILE = Path(__file__).resolve().parents[2] / "conf" / "alert-rules.toml"
METRICS = ("errorRate", "avgLatency", "p50Latency", "p95Latency", "p99Latency", "requestsPerSecond")
SCOPES = ("summary", "routes", "all")
SEVERITIES = ("info", "warning", "critical")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Rule:
    """One alert rule: ``metric`` above ``above`` over the last 5 minutes, with enough requests."""

    name: str
    metric: str
    above: float
    severity: str = "warning"
    scope: str = "all"
    min_requests: int = 20
    enabled: bool = True


DEFAULT_RULES = (
    Rule("error-rate-warning", "errorRate", 5.0, "warning"),
    Rule("error-rate-critical", "errorRate", 10.0, "critical"),
    Rule("p99-latency-warning", "p99Latency", 1000.0, "warning"),
)


def load_rules(path: str | Path | None = None, overrides: str | None = None) -> list[Rule]:
    """Rules from ``path`` (default conf/alert-rules.toml, else built-in), with overrides applied."""
    source = Path(path) if path else DEFAULT_RULES_FILE
    if path or source.is_file():
        rules = _read_file(source, "FLEXGATE_ALERT_RULES" if path else str(source))
    else:
        rules = list(DEFAULT_RULES)
    rules = apply_overrides(rules, overrides)
    return [rule for rule in rules if rule.enabled]


def _read_file(source: Path, origin: str) -> list[Rule]:
    try:
        data = tomllib.loads(source.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{origin}: cannot read alert rules from {source} ({exc}).") from None
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: {source} must hold [[rule]] tables.")
    return [_rule(entry, origin) for entry in entries]


def _rule(entry: object, origin: str) -> Rule:
    known = {f.name for f in fields(Rule)}
    if not isinstance(entry, dict) or not {"name", "metric", "above"} <= entry.keys() or entry.keys() - known:
        raise ConfigError(f"{origin}: each rule needs name, metric and above, and only {', '.join(sorted(known))}.")
    try:
        rule = Rule(name=str(entry["name"]), metric=str(entry["metric"]), above=float(entry["above"]),
                    severity=str(entry.get("severity", "warning")), scope=str(entry.get("scope", "all")),
                    min_requests=int(entry.get("min_requests", 20)), enabled=bool(entry.get("enabled", True)))
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: rule {entry.get('name')!r} has a value of the wrong type.") from None
    return validated(rule, origin)


def validated(rule: Rule, origin: str) -> Rule:
    """``rule``, or a ConfigError naming ``origin`` and the bad field."""
    problems = [
        (not _NAME.match(rule.name), "name must be lowercase letters, digits, - or _"),
        (rule.metric not in METRICS, f"metric must be one of {', '.join(METRICS)}"),
        (rule.scope not in SCOPES, f"scope must be one of {', '.join(SCOPES)}"),
        (rule.severity not in SEVERITIES, f"severity must be one of {', '.join(SEVERITIES)}"),
        (rule.min_requests < 1, "min_requests must be at least 1"),
        (not math.isfinite(rule.above), "above must be a finite number"),  # it is published with the alert
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(f"{origin}: rule {rule.name!r}: {message}.")
    return rule


def apply_overrides(rules: list[Rule], overrides: str | None) -> list[Rule]:
    """Apply ``rule.field=value`` pairs (comma separated), as given in FLEXGATE_ALERT_OVERRIDES."""
    origin = "FLEXGATE_ALERT_OVERRIDES"
    by_name = {rule.name: rule for rule in rules}
    for pair in filter(None, (p.strip() for p in (overrides or "").split(","))):
        target, _, raw = pair.partition("=")
        name, _, key = target.strip().rpartition(".")
        if name not in by_name or key not in {"above", "severity", "scope", "min_requests", "enabled"} or not raw:
            raise ConfigError(f"{origin} must be rule.field=value pairs for known rules "
                              f"(fields: above, severity, scope, min_requests, enabled), got {pair!r}.")
        # The value has the field's type (_typed), which one depends on the key: validated() checks the result.
        changed: Rule = replace(by_name[name], **{key: _typed(key, raw.strip(), origin)})  # type: ignore[arg-type]
        by_name[name] = validated(changed, origin)
    return [by_name[rule.name] for rule in rules]


def _typed(key: str, raw: str, origin: str) -> object:
    try:
        if key == "above":
            return float(raw)
        if key == "min_requests":
            return int(raw)
    except ValueError:
        raise ConfigError(f"{origin}: {key} must be a number, got {raw!r}.") from None
    if key == "enabled":
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ConfigError(f"{origin}: enabled must be true or false, got {raw!r}.")
        return raw.lower() in ("true", "1", "yes", "on")
    return raw


def metric_value(stats: Stats | None, metric: str) -> float | None:
    """The value of ``metric`` over the last 5 minutes (one series bucket); None when there is nothing to measure."""
    if stats is None or stats.requests == 0:
        return None
    if metric == "errorRate":
        return stats.server_errors * 100.0 / stats.requests
    if metric == "requestsPerSecond":
        return stats.requests / SERIES_BUCKET_SECONDS
    if stats.latency_count == 0:
        return None
    if metric == "avgLatency":
        return stats.avg_latency
    return stats.percentiles[("p50Latency", "p95Latency", "p99Latency").index(metric)]


@dataclass(frozen=True)
class Observation:
    """One rule on one scope (all traffic, or one route) at one window end."""

    rule: Rule
    route: str | None
    value: float | None
    firing: bool

    @property
    def key(self) -> str:
        """The KV key of this alert's state (NATS KV key characters only)."""
        return f"{self.rule.name}.{route_token(self.route) if self.route else 'all'}"


def observe(rules: list[Rule], figures: WindowFigures, routes: list[str]) -> list[Observation]:
    """Evaluate every rule on the last 5 minutes of all traffic and of each of ``routes``."""
    scopes: list[tuple[str | None, Stats | None]] = [(None, figures.last_five_minutes())]
    scopes += [(route, figures.last_five_minutes(route)) for route in routes]
    found = []
    for rule in rules:
        for route, stats in scopes:
            if (route is None and rule.scope == "routes") or (route is not None and rule.scope == "summary"):
                continue
            value = metric_value(stats, rule.metric)
            enough = stats is not None and stats.requests >= rule.min_requests
            found.append(Observation(rule, route, value, enough and value is not None and value > rule.above))
    return found


class AlertTracker:
    """Remembers which alerts fire, and turns observations into firing/resolved messages."""

    def __init__(self) -> None:
        self.active: dict[str, Alert] = {}  # Observation.key -> the firing message

    def adopt(self, key: str, firing: Alert) -> None:
        """Take over an alert another publisher (or an earlier run) announced."""
        self.active.setdefault(key, firing)

    def step(self, observations: list[Observation], at: str) -> list[tuple[str, Alert]]:
        """(key, message) for each alert that starts or stops firing at window end ``at`` (ISO).

        An active alert no rule observes any more (its route left the busiest, its rule was removed)
        resolves with value None.
        """
        changes = []
        seen = set()
        for obs in observations:
            seen.add(obs.key)
            firing = self.active.get(obs.key)
            if obs.firing and firing is None:
                self.active[obs.key] = _alert(obs, "firing", at, at)
                changes.append((obs.key, self.active[obs.key]))
            elif not obs.firing and firing is not None:
                del self.active[obs.key]
                changes.append((obs.key, _resolved(firing, obs.value, at)))
        for key in [k for k in self.active if k not in seen]:
            changes.append((key, _resolved(self.active.pop(key), None, at)))
        return changes


def _alert(obs: Observation, state: Literal["firing", "resolved"], started: str, at: str) -> Alert:
    value = None if obs.value is None else round(obs.value, 3)
    return Alert(type="alert", id=f"{obs.key}.{state}@{at}", rule=obs.rule.name, severity=obs.rule.severity,
                 state=state, value=value, threshold=obs.rule.above, route=obs.route, startedAt=started, at=at)


def _resolved(firing: Alert, value: float | None, at: str) -> Alert:
    key = firing["id"].rsplit(".firing@", 1)[0]
    return Alert(type="alert", id=f"{key}.resolved@{at}", rule=firing["rule"], severity=firing["severity"],
                 state="resolved", value=None if value is None else round(value, 3),
                 threshold=firing["threshold"], route=firing["route"], startedAt=firing["startedAt"], at=at)
