"""Settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from feed.declarations import SettingsError
from feed.redaction import redact_url
from feed.settings import Settings, declarations, reference


def test_defaults_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///feed.db"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.heartbeat == 15.0
    assert settings.replay_limit == 1000
    assert settings.max_post_chars == 10_000
    assert settings.shutdown_timeout == 5.0


def test_values_are_read_and_converted() -> None:
    settings = Settings.from_env(
        {"FEED_PORT": "9001", "FEED_HEARTBEAT": "2.5", "FEED_HOST": "0.0.0.0", "OTHER": "x"}
    )
    assert (settings.port, settings.heartbeat, settings.host) == (9001, 2.5, "0.0.0.0")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FEED_PORT": "eighty"}, "FEED_PORT must be an integer, got 'eighty'"),
        ({"FEED_PORT": "70000"}, "FEED_PORT must be a port number"),
        ({"FEED_HEARTBEAT": "soon"}, "FEED_HEARTBEAT must be a number, got 'soon'"),
        ({"FEED_HEARTBEAT": "0"}, "FEED_HEARTBEAT must be between"),
        ({"FEED_REPLAY_LIMIT": "-1"}, "FEED_REPLAY_LIMIT must be a positive number"),
        ({"FEED_MAX_POST_CHARS": "0"}, "FEED_MAX_POST_CHARS must be a positive number"),
        ({"FEED_DATABASE_URL": "mysql://x/y"}, "FEED_DATABASE_URL must be a sqlite:/// or"),
        ({"FEED_DATABASE_URL": "feed.db"}, "FEED_DATABASE_URL must be a sqlite:/// or"),
        ({"FEED_BROKER_URL": "kafka://x"}, "FEED_BROKER_URL must be memory://"),
        ({"FEED_WORKERS": "0"}, "FEED_WORKERS must be between 1 and 64"),
        (
            {"FEED_WORKERS": "4"},
            "FEED_WORKERS=4 needs a broker shared by the workers: the memory broker",
        ),
        (
            {"FEED_BROKER_URL": "postgresql://db/feed"},
            "FEED_BROKER_URL is a PostgreSQL URL, but FEED_DATABASE_URL is not",
        ),
        (
            {"FEED_MAX_POST_CHARS": "20000"},
            "FEED_MAX_BODY_BYTES=65536 is too small for a post of FEED_MAX_POST_CHARS=20000",
        ),
        ({"FEED_LOG_LEVEL": "loud"}, "FEED_LOG_LEVEL must be one of"),
        ({"FEED_SHUTDOWN_TIMEOUT": "nan"}, "FEED_SHUTDOWN_TIMEOUT must be between"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)


def test_unknown_feed_variable_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    Settings.from_env({"FEED_HEARTBET": "3"})
    assert "FEED_HEARTBET" in caplog.text


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SettingsError, match="FEED_PAGE_SIZE"):
        Settings(page_size=0)


def test_passwords_are_hidden_from_logs() -> None:
    assert redact_url("postgresql://feed:s3cret@db/feed") == "postgresql://***@db/feed"
    assert redact_url("sqlite:///feed.db") == "sqlite:///feed.db"


def test_several_workers_with_a_shared_broker_are_accepted() -> None:
    settings = Settings.from_env(
        {
            "FEED_WORKERS": "4",
            "FEED_DATABASE_URL": "postgresql://feed@db/feed",
            "FEED_BROKER_URL": "postgresql://feed@db/feed",
        }
    )
    assert (settings.workers, settings.broker_kind) == (4, "postgresql")
    redis = Settings(workers=2, broker_url="rediss://cache:6380/0")
    assert redis.broker_kind == "redis"


def test_each_setting_is_one_declaration_with_its_type_check_and_meaning() -> None:
    declared = declarations()
    assert [d.name for d in declared] == [f.name for f in dataclasses.fields(Settings)]
    defaults = Settings()
    for d in declared:
        assert d.variable == f"FEED_{d.name.upper()}"
        assert d.kind in (str, int, float, bool), d.name
        assert type(getattr(defaults, d.name)) is d.kind, d.name
        assert d.accepts.words and d.meaning.endswith("."), d.name
        # The reference shows each declaration as it is.
        assert f"| {d.accepts.words} | {d.meaning} |" in reference()


@pytest.mark.parametrize("declared", declarations(), ids=lambda d: d.name)
def test_every_setting_refuses_a_value_of_another_type_naming_itself(declared: Any) -> None:
    wrong = [1, "x"] if declared.kind is bool else [object()]
    for value in wrong:
        with pytest.raises(SettingsError) as caught:
            Settings(**{declared.name: value})
        assert (
            str(caught.value)
            == f"{declared.variable} must be {declared.accepts.words}, {declared.got(value)}"
        )


def test_secrets_are_hidden_by_their_declaration() -> None:
    key = "k" * 40
    described = Settings(secret_key=key).describe()
    assert described["FEED_SECRET_KEY"] == "***"
    assert key not in str(described)
    assert [d.name for d in declarations() if d.secret] == ["secret_key"]


def test_the_configuration_reference_is_current() -> None:
    written = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    assert written == reference(), "run: feed config --reference > docs/configuration.md"
    for field in dataclasses.fields(Settings):
        assert f"`FEED_{field.name.upper()}`" in written
