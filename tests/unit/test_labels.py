"""Route patterns, labels and the cardinality limit (pure units)."""

from __future__ import annotations

import logging

import pytest

from flexgate_stream.messages import OVERFLOW
from flexgate_stream.tick.labels import Cardinality, Labeller, Limit
from flexgate_stream.tick.route_patterns import RoutePatterns

pytestmark = pytest.mark.timeout(10)

GATEWAY = RoutePatterns(["/api/*", "/api/users/:id", "/api/users/:userId/posts/:postId", "/api/*/profile",
                         "/health", "/shop/items/*", "/shop/items/:slug/reviews"])


@pytest.mark.parametrize(("path", "label"), [
    ("/api/users/42", "/api/users/:id"),
    ("/api/users/42/posts/7?x=1", "/api/users/:userId/posts/:postId"),
    ("/api/orders/profile", "/api/*/profile"),
    ("/api/orders/9/profile", "/api/*"),
    ("/api/users/profile", "/api/users/:id"),  # a literal segment beats a parameter
    ("/api/orders", "/api/*"),
    ("/api/a/b/c/d", "/api/*"),
    ("/health", "/health"),
    ("/health/", "/health"),
    ("/shop/items/p-3f9a1c2b7/reviews", "/shop/items/:slug/reviews"),
    ("/shop/items/p-3f9a1c2b7/photos/2", "/shop/items/*"),
    ("/shop/items", None),  # a trailing * needs one more segment
    ("/api", None),
    ("/apiv2/users", None),
    ("/healthz", None),
])
def test_the_most_specific_pattern_wins(path, label):
    assert GATEWAY.match(path) == label


def test_a_catch_all_pattern_matches_everything_but_the_root():
    everything = RoutePatterns(["/*"])
    assert everything.match("/x/y") == "/*"
    assert everything.match("/") is None


def test_patterns_compare_as_sets_and_skip_what_is_not_a_path():
    assert RoutePatterns(["/a", "/b"]) == RoutePatterns(["/b", "/a", "/a"])
    assert RoutePatterns(["api/*", "", "/x?y"]).patterns == ()


def test_the_labeller_falls_back_to_id_folding_and_forgets_old_labels_when_patterns_change():
    labeller = Labeller(RoutePatterns(["/api/users/:id"]))
    assert labeller("/api/users/7") == "/api/users/:id"
    assert labeller("/shop/orders/123") == "/shop/orders/:id"
    assert labeller(None) == "/"
    assert labeller.use(RoutePatterns(["/shop/*"])) is True
    assert labeller("/shop/orders/123") == "/shop/*"
    assert labeller("/api/users/7") == "/api/users/:id"  # folded, the pattern is gone
    assert labeller.use(RoutePatterns(["/shop/*"])) is False


def test_a_limit_keeps_the_first_labels_and_counts_the_rest_under_overflow(caplog):
    limit = Limit("routes", 2)
    with caplog.at_level(logging.WARNING):
        assert [limit.admit(label, 100) for label in ("/a", "/b", "/c", "/a", "/d")] == [
            "/a", "/b", OVERFLOW, "/a", OVERFLOW]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 distinct routes" in warnings[0] and "FLEXGATE_MAX_ROUTES" in warnings[0]


def test_a_label_that_left_the_day_makes_room_for_a_new_one():
    limit = Limit("routes", 1)
    assert limit.admit("/old", 100) == "/old"
    assert limit.admit("/new", 200) == OVERFLOW
    limit.expire(150)
    assert limit.admit("/new", 200) == "/new"


def test_rows_over_the_limit_are_counted_under_overflow_as_they_are_folded():
    cardinality = Cardinality(max_routes=1, max_upstreams=1)
    route, upstream = cardinality.filters
    rows = [("/a", "svc"), ("/b", "svc"), ("/c", "other"), ("/a", "other")]
    assert [(route(r, 5), upstream(u, 5)) for r, u in rows] == [
        ("/a", "svc"), (OVERFLOW, "svc"), (OVERFLOW, OVERFLOW), ("/a", OVERFLOW)]
