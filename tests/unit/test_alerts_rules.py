from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flexgate_stream.errors import ConfigError
from flexgate_stream.tick.alerts import DEFAULT_RULES, DEFAULT_RULES_FILE, AlertTracker, Rule, load_rules, observe
from flexgate_stream.tick.figures import SERIES_BUCKETS, RouteFigures, Stats, WindowFigures

END = datetime(2026, 1, 1, tzinfo=UTC)


def figures(errors: int, requests: int = 100, route_errors: int = 0, p99: float = 50.0) -> WindowFigures:
    last = Stats(requests=requests, success=requests - errors, server_errors=errors, latency_count=requests,
                 latency_sum=requests * 10.0, percentiles=(10.0, 40.0, p99))
    last_route = Stats(requests=40, server_errors=route_errors)
    route = RouteFigures(stats=Stats(requests=40), buckets={SERIES_BUCKETS - 1: last_route})
    return WindowFigures(END, Stats(), 0, {}, {SERIES_BUCKETS - 1: last}, {"/api/users/:id": route}, {})


def test_conf_file_holds_the_built_in_defaults():
    assert DEFAULT_RULES_FILE.is_file()
    assert load_rules() == list(DEFAULT_RULES)


def test_environment_overrides_single_values():
    rules = load_rules(None, "error-rate-critical.above=20, p99-latency-warning.enabled=false,"
                             "error-rate-warning.severity=info")
    by_name = {r.name: r for r in rules}
    assert by_name["error-rate-critical"].above == 20.0
    assert "p99-latency-warning" not in by_name
    assert by_name["error-rate-warning"].severity == "info"


@pytest.mark.parametrize("overrides", ["nope.above=1", "error-rate-warning.above=x", "error-rate-warning.colour=red",
                                       "error-rate-warning.severity=loud", "error-rate-warning.enabled=maybe",
                                       "error-rate-warning.above"])
def test_bad_override_is_one_sentence_naming_the_variable(overrides):
    with pytest.raises(ConfigError, match="^FLEXGATE_ALERT_OVERRIDES") as err:
        load_rules(None, overrides)
    assert "\n" not in str(err.value)


def test_rules_file_is_validated(tmp_path):
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rule]]\nname = "x"\nmetric = "colour"\nabove = 1\n')
    with pytest.raises(ConfigError, match="metric must be one of"):
        load_rules(bad)
    bad.write_text("[[rule]\n")
    with pytest.raises(ConfigError, match="cannot read alert rules"):
        load_rules(bad)


def test_fires_once_and_resolves_once():
    rules = [Rule("err", "errorRate", 5.0, "warning", scope="summary")]
    tracker = AlertTracker()
    assert tracker.step(observe(rules, figures(errors=1), []), "t0") == []
    fired = tracker.step(observe(rules, figures(errors=8), []), "t1")
    assert [(a["state"], a["value"], a["threshold"], a["startedAt"]) for _k, a in fired] == [("firing", 8.0, 5.0, "t1")]
    assert tracker.step(observe(rules, figures(errors=9), []), "t2") == []
    resolved = tracker.step(observe(rules, figures(errors=2), []), "t3")
    assert [(a["state"], a["startedAt"], a["at"], a["id"]) for _k, a in resolved] == [
        ("resolved", "t1", "t3", "err.all.resolved@t3")]


def test_per_route_rules_and_minimum_requests():
    rules = [Rule("err", "errorRate", 5.0, scope="routes", min_requests=30)]
    changes = AlertTracker().step(observe(rules, figures(errors=50, route_errors=20), ["/api/users/:id"]), "t")
    assert [(a["route"], a["value"]) for _k, a in changes] == [("/api/users/:id", 50.0)]
    few = [Rule("err", "errorRate", 5.0, scope="routes", min_requests=41)]
    assert AlertTracker().step(observe(few, figures(errors=50, route_errors=20), ["/api/users/:id"]), "t") == []


def test_latency_rule_and_no_data():
    rules = [Rule("slow", "p99Latency", 1000.0)]
    tracker = AlertTracker()
    assert [a["state"] for _k, a in tracker.step(observe(rules, figures(0, p99=1500.0), []), "t1")] == ["firing"]
    empty = WindowFigures(END, Stats(), 0, {}, {}, {}, {})
    assert [a["value"] for _k, a in tracker.step(observe(rules, empty, []), "t2")] == [None]


def test_an_alert_nobody_observes_any_more_resolves():
    tracker = AlertTracker()
    tracker.step(observe([Rule("err", "errorRate", 5.0)], figures(errors=10), []), "t1")
    changes = tracker.step([], "t2")
    assert [(k, a["state"], a["rule"]) for k, a in changes] == [("err.all", "resolved", "err")]


def test_adopted_alert_is_not_announced_again():
    rules = [Rule("err", "errorRate", 5.0, scope="summary")]
    first = AlertTracker().step(observe(rules, figures(errors=10), []), "t1")
    (key, firing), = first
    other = AlertTracker()
    other.adopt(key, firing)
    assert other.step(observe(rules, figures(errors=10), []), "t2") == []
    assert [a["startedAt"] for _k, a in other.step(observe(rules, figures(errors=0), []), "t3")] == ["t1"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_threshold_that_is_not_a_finite_number_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="^FLEXGATE_ALERT_OVERRIDES: rule 'error-rate-warning': above must be"):
        load_rules(None, f"error-rate-warning.above={value}")
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nname = "x"\nmetric = "errorRate"\nabove = {value}\n')
    with pytest.raises(ConfigError, match="rule 'x': above must be a finite number"):
        load_rules(rules)
