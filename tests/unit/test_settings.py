from __future__ import annotations

import pytest

from flexgate_stream.errors import ConfigError
from flexgate_stream.settings import DEFAULT_NATS, Settings


def test_defaults_without_environment():
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.nats_servers == (DEFAULT_NATS,)
    assert s.port == 8000
    assert s.requests_timezone == "UTC"
    assert s.api_tokens == ()


def test_nats_servers_comma_list_and_alias():
    s = Settings.from_env({"NATS_SERVERS": "nats://a:4222, nats://b:4223"})
    assert s.nats_servers == ("nats://a:4222", "nats://b:4223")
    assert Settings.from_env({"NATS_URL": "nats://c:1"}).nats_servers == ("nats://c:1",)
    assert Settings.from_env({"NATS_SERVERS": "127.0.0.1:4222"}).nats_servers == ("nats://127.0.0.1:4222",)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"NATS_SERVERS": "http://x:1"}, "NATS_SERVERS"),
        ({"NATS_URL": "nats://x:notaport"}, "NATS_URL"),
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY"),
        ({"FLEXGATE_REQUESTS_TIMEZONE": "Mars/Olympus"}, "FLEXGATE_REQUESTS_TIMEZONE"),
        ({"FLEXGATE_METRICS_PUBLIC": "maybe"}, "FLEXGATE_METRICS_PUBLIC"),
        ({"NATS_CREDS": "/nonexistent/user.creds"}, "NATS_CREDS"),
    ],
)
def test_malformed_value_names_the_variable(env, variable):
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    message = str(err.value)
    assert message.startswith(variable)
    assert "\n" not in message


def test_password_is_not_echoed():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"NATS_SERVERS": "http://user:s3cret@host:1"})
    assert "s3cret" not in str(err.value)


def test_require_database_names_the_variable():
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        Settings.from_env({}).require_database()


def test_settings_are_frozen():
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_bind_address_is_an_ip_or_host_name():
    assert Settings.from_env({}).bind_host is None
    assert Settings.from_env({"FLEXGATE_BIND": "127.0.0.1"}).bind_host == "127.0.0.1"
    assert Settings.from_env({"FLEXGATE_BIND": "[::1]"}).bind_host == "::1"
    assert Settings.from_env({"FLEXGATE_BIND": "web.internal"}).bind_host == "web.internal"
    with pytest.raises(ConfigError, match="FLEXGATE_BIND must be an IP address or a host name"):
        Settings.from_env({"FLEXGATE_BIND": "0.0.0.0:80"})
