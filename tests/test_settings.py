"""Settings from the environment: defaults, every variable, and one clear line per malformed value."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kling_mcp import __version__
from kling_mcp.settings import DEFAULT_BASE_URL, Settings, SettingsError

OUR_VARIABLES = ("ACEDATACLOUD_", "KLING_", "LOG_LEVEL")


def settings_with(**changes: Any) -> Settings:
    """The default settings with only `changes` different."""
    return dataclasses.replace(Settings(), **changes)


def rejection(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})

    assert settings == Settings(
        api_token=None,
        api_base_url=DEFAULT_BASE_URL,
        default_model="kling-v2-master",
        default_mode="std",
        default_aspect_ratio="16:9",
        default_wait_seconds=50.0,
        poll_interval=1.0,
        connect_timeout=10.0,
        read_timeout=30.0,
        log_level="INFO",
        demo=False,
    )
    assert DEFAULT_BASE_URL == "https://api.acedata.cloud"


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("ACEDATACLOUD_API_TOKEN", "tok-abc", "api_token", "tok-abc"),
        ("ACEDATACLOUD_API_BASE_URL", "https://api.test", "api_base_url", "https://api.test"),
        ("ACEDATACLOUD_API_BASE_URL", "http://localhost:8765/", "api_base_url", "http://localhost:8765"),
        ("KLING_DEFAULT_MODEL", "kling-v3", "default_model", "kling-v3"),
        ("KLING_DEFAULT_MODE", "pro", "default_mode", "pro"),
        ("KLING_DEFAULT_MODE", " pro ", "default_mode", "pro"),
        ("KLING_DEFAULT_ASPECT_RATIO", "9:16", "default_aspect_ratio", "9:16"),
        ("KLING_DEFAULT_TIMEOUT", "120", "default_wait_seconds", 120.0),
        ("KLING_DEFAULT_TIMEOUT", "0", "default_wait_seconds", 0.0),
        ("KLING_POLL_INTERVAL", "2.5", "poll_interval", 2.5),
        ("KLING_CONNECT_TIMEOUT", "3", "connect_timeout", 3.0),
        ("KLING_READ_TIMEOUT", "45", "read_timeout", 45.0),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("LOG_LEVEL", "Warning", "log_level", "WARNING"),
        ("KLING_DEMO", "1", "demo", True),
        ("KLING_DEMO", "true", "demo", True),
        ("KLING_DEMO", "YES", "demo", True),
        ("KLING_DEMO", "on", "demo", True),
        ("KLING_DEMO", "0", "demo", False),
        ("KLING_DEMO", "off", "demo", False),
    ],
)
def test_each_variable_sets_its_setting_and_nothing_else(
    variable: str, value: str, field: str, expected: object
) -> None:
    assert Settings.from_env({variable: value}) == settings_with(**{field: expected})


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [
        ("ACEDATACLOUD_API_BASE_URL", "api.acedata.cloud", "http(s) URL"),
        ("ACEDATACLOUD_API_BASE_URL", "ftp://api.acedata.cloud", "http(s) URL"),
        ("KLING_DEFAULT_MODEL", "kling-v9", "kling-v2-master"),
        ("KLING_DEFAULT_MODE", "ultra", "std, pro, 4k"),
        ("KLING_DEFAULT_MODE", "PRO", "std, pro, 4k"),
        ("KLING_DEFAULT_ASPECT_RATIO", "4:3", "16:9, 9:16, 1:1"),
        ("KLING_DEFAULT_TIMEOUT", "soon", "not a number"),
        ("KLING_DEFAULT_TIMEOUT", "-1", "0 to 3600"),
        ("KLING_DEFAULT_TIMEOUT", "7200", "0 to 3600"),
        ("KLING_POLL_INTERVAL", "0", "0.05 to 60"),
        ("KLING_CONNECT_TIMEOUT", "10s", "not a number"),
        ("KLING_CONNECT_TIMEOUT", "0", "0.1 to 300"),
        ("KLING_READ_TIMEOUT", "601", "0.1 to 600"),
        ("KLING_READ_TIMEOUT", "nan", "0.1 to 600"),
        ("KLING_READ_TIMEOUT", "inf", "0.1 to 600"),
        ("LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING, ERROR"),
        ("KLING_DEMO", "maybe", "1 or 0"),
    ],
)
def test_a_malformed_value_is_rejected_naming_the_variable_and_what_is_allowed(
    variable: str, value: str, allowed: str
) -> None:
    message = rejection({variable: value})

    assert variable in message
    assert repr(value) in message
    assert allowed in message


def test_a_4k_default_mode_with_a_default_model_that_cannot_do_4k_names_both_variables() -> None:
    message = rejection({"KLING_DEFAULT_MODE": "4k", "KLING_DEFAULT_MODEL": "kling-v2-6"})

    assert "KLING_DEFAULT_MODEL" in message
    assert "KLING_DEFAULT_MODE" in message
    assert "kling-v3" in message


@pytest.mark.parametrize("model", ["kling-v3", "kling-v3-omni"])
def test_a_4k_default_mode_is_accepted_with_a_model_that_makes_4k(model: str) -> None:
    settings = Settings.from_env({"KLING_DEFAULT_MODE": "4k", "KLING_DEFAULT_MODEL": model})

    assert (settings.default_model, settings.default_mode) == (model, "4k")


@pytest.mark.parametrize(
    ("pasted", "token"),
    [
        ("", None),
        ("   ", None),
        ("abc123", "abc123"),
        ("  abc123\n", "abc123"),
        ("Bearer abc123", "abc123"),
        ("bearer   abc123 ", "abc123"),
    ],
)
def test_the_token_is_read_as_pasted_without_blanks_or_a_bearer_prefix(
    pasted: str, token: str | None
) -> None:
    assert Settings.from_env({"ACEDATACLOUD_API_TOKEN": pasted}).api_token == token


# --- The console script --------------------------------------------------------------------


def run_server(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m kling_mcp` in an empty directory (no .env) with only `env` of our variables."""
    inherited = {name: value for name, value in os.environ.items() if not name.startswith(OUR_VARIABLES)}
    return subprocess.run(
        [sys.executable, "-m", "kling_mcp", *args],
        env={**inherited, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KLING_DEFAULT_MODE": "ultra"}, "KLING_DEFAULT_MODE"),
        ({"KLING_DEFAULT_MODEL": "kling-v2-master", "KLING_DEFAULT_MODE": "4k"}, "KLING_DEFAULT_MODEL"),
    ],
)
def test_the_server_refuses_to_start_with_one_line_naming_the_variable(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    finished = run_server(tmp_path=tmp_path, **env)

    assert finished.returncode != 0
    assert finished.stdout == ""
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert named in lines[0]
    assert "Traceback" not in finished.stderr


def test_the_version_option_prints_the_version(tmp_path: Path) -> None:
    finished = run_server("--version", tmp_path=tmp_path)

    assert finished.returncode == 0
    assert finished.stdout.strip() == f"kling-mcp {__version__}"
