"""The operator's own settings: flags over environment over defaults, clear errors."""

from __future__ import annotations

import pytest

from chatcell_operator.config import ConfigError, from_args


def test_namespaces_from_flags_or_environment() -> None:
    assert from_args(["-n", "a", "--namespace", "b"], env={}).namespaces == ("a", "b")
    assert from_args([], env={"WATCH_NAMESPACE": "x, y"}).namespaces == ("x", "y")


def test_defaults_and_overrides() -> None:
    config = from_args(["-n", "a"], env={})
    assert config.drift_interval_s == 60
    assert config.liveness.endswith("/healthz")
    config = from_args(["-n", "a", "--liveness", ""], env={"CHATCELL_DRIFT_INTERVAL": "5"})
    assert config.drift_interval_s == 5
    assert config.liveness == ""


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "the operator is namespaced"),
        (["-n", "Bad_NS"], {}, "not a namespace"),
        (["-n", "a"], {"CHATCELL_DRIFT_INTERVAL": "soon"}, "must be a number"),
        (["-n", "a", "--drift-interval", "0"], {}, "between 1 and 86400"),
    ],
)
def test_bad_settings_are_named(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_args(argv, env=env)
