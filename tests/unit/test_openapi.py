"""The OpenAPI document covers every route of the app and its schemas are valid JSON Schema 2020-12."""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator

from flexgate_stream import create_app
from flexgate_stream.settings import Settings
from flexgate_stream.web.openapi import document

pytestmark = pytest.mark.timeout(20)


def test_every_route_and_method_of_the_app_is_documented():
    app = create_app(Settings())
    paths = document()["paths"]
    seen = 0
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        assert path in paths, f"{rule.rule} is not in /api/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in paths[path], f"{method} {rule.rule} is not in /api/openapi.json"
            seen += 1
    assert seen == sum(len(ops) for ops in paths.values())  # and nothing documented that is not served


def test_the_document_is_served_and_every_schema_is_valid_2020_12():
    client = create_app(Settings()).test_client()
    served = client.get("/api/openapi.json")
    assert served.status_code == 200 and served.json["openapi"].startswith("3.1")
    for schema in served.json["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', served.get_data(as_text=True)))
    assert refs <= set(served.json["components"]["schemas"]), refs - set(served.json["components"]["schemas"])
