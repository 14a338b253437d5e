"""Settings, read once at start from the environment and an optional `.env` file.

The AceDataCloud variable names are the vendor's own, so existing setups keep working.
A malformed value stops the server at start with one line naming the variable; a missing
token does not: the server starts and every call that needs the API says what to set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network
from pathlib import Path
from typing import TypeVar, get_args

import platformdirs

from kling_mcp.domain.capabilities import VIDEO_MODELS, AspectRatio, GenerationPlan, Mode, plan_problems

DEFAULT_BASE_URL = "https://api.acedata.cloud"
DEFAULT_PLATFORM_URL = "https://platform.acedata.cloud"
TOKEN_HELP = (
    "Set ACEDATACLOUD_API_TOKEN to your AceDataCloud API token "
    "(create one at https://platform.acedata.cloud, then add it to the server's env in your MCP config)."
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value the server cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    api_token: str | None = None
    api_base_url: str = DEFAULT_BASE_URL
    default_model: str = "kling-v2-master"
    default_mode: Mode = "std"
    default_aspect_ratio: AspectRatio = "16:9"
    default_wait_seconds: float = 50.0
    """How long a tool call waits for a task by default (Claude Desktop cancels calls after ~60 s)."""
    poll_interval: float = 1.0
    """The shortest gap between two status requests, however many calls wait."""
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    log_level: str = "INFO"
    demo: bool = False
    demo_task_seconds: float = 8.0
    """How long a demo video takes to "generate" in the built-in emulator."""
    platform_base_url: str = DEFAULT_PLATFORM_URL
    """Where local files are uploaded (AceDataCloud's file hosting)."""
    platform_token: str | None = None
    """The token for uploads; the API token is used when this is not set."""
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    """Where the task journal lives."""
    output_dir: Path = field(default_factory=lambda: default_output_dir())
    """Where finished videos are saved."""
    auto_download: bool = True
    input_dirs: tuple[Path, ...] = ()
    """Directories local files may be uploaded from, besides the client's roots."""
    daily_task_limit: int = 50
    """Paid tasks allowed per rolling 24 hours, counted across processes from the journal."""
    max_concurrent_tasks: int = 10
    """Paid tasks allowed to run at once."""
    database_url: str | None = None
    """A Postgres journal (for replicas sharing one); SQLite under data_dir when not set."""
    rate_limit_per_minute: int = 120
    """Requests per minute one token may make of a hosted server."""
    hosted: bool = False
    """Serving many users over HTTP, each with their own token (set by `--transport http`)."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses and networks (CIDR) of proxies whose X-Forwarded-For a hosted server believes."""
    header_timeout: float = 10.0
    """Seconds a hosted server's client has to send a request's headers."""
    body_timeout: float = 30.0
    """Seconds a hosted server's client has to send a request's body, once its headers arrived."""
    max_connections_per_address: int = 50
    """Connections one client address may hold open to a hosted server (trusted proxies excepted)."""

    @property
    def upload_token(self) -> str | None:
        return self.platform_token or self.api_token

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default: `os.environ`), raising SettingsError on a bad value."""
        env = os.environ if env is None else env
        read = _Reader(env)
        settings = cls(
            api_token=_clean_token(env.get("ACEDATACLOUD_API_TOKEN", "")),
            api_base_url=read.url("ACEDATACLOUD_API_BASE_URL", DEFAULT_BASE_URL),
            default_model=read.choice("KLING_DEFAULT_MODEL", "kling-v2-master", VIDEO_MODELS),
            default_mode=read.choice("KLING_DEFAULT_MODE", "std", get_args(Mode)),
            default_aspect_ratio=read.choice("KLING_DEFAULT_ASPECT_RATIO", "16:9", get_args(AspectRatio)),
            default_wait_seconds=read.number("KLING_DEFAULT_TIMEOUT", 50.0, low=0, high=3600),
            poll_interval=read.number("KLING_POLL_INTERVAL", 1.0, low=0.05, high=60),
            connect_timeout=read.number("KLING_CONNECT_TIMEOUT", 10.0, low=0.1, high=300),
            read_timeout=read.number("KLING_READ_TIMEOUT", 30.0, low=0.1, high=600),
            log_level=read.choice("LOG_LEVEL", "INFO", LOG_LEVELS, transform=str.upper),
            demo=read.flag("KLING_DEMO"),
            demo_task_seconds=read.number("KLING_DEMO_TASK_SECONDS", 8.0, low=0, high=600),
            platform_base_url=read.url("ACEDATACLOUD_PLATFORM_BASE_URL", DEFAULT_PLATFORM_URL),
            platform_token=_clean_token(env.get("ACEDATACLOUD_PLATFORM_TOKEN", "")),
            data_dir=read.directory("KLING_DATA_DIR") or default_data_dir(),
            output_dir=read.directory("KLING_OUTPUT_DIR") or default_output_dir(),
            auto_download=read.flag("KLING_AUTO_DOWNLOAD", default=True),
            input_dirs=read.directories("KLING_INPUT_DIRS"),
            daily_task_limit=read.count("KLING_DAILY_TASK_LIMIT", 50, low=0, high=100_000),
            max_concurrent_tasks=read.count("KLING_MAX_CONCURRENT_TASKS", 10, low=1, high=1000),
            database_url=read.database_url("KLING_DATABASE_URL"),
            rate_limit_per_minute=read.count("KLING_RATE_LIMIT", 120, low=1, high=100_000),
            trusted_proxies=read.networks("KLING_TRUSTED_PROXIES"),
            header_timeout=read.number("KLING_HEADER_TIMEOUT", 10.0, low=0.1, high=300),
            body_timeout=read.number("KLING_BODY_TIMEOUT", 30.0, low=0.1, high=3600),
            max_connections_per_address=read.count(
                "KLING_MAX_CONNECTIONS_PER_ADDRESS", 50, low=1, high=100_000
            ),
        )
        for problem in plan_problems(GenerationPlan(settings.default_model, settings.default_mode)):
            raise SettingsError(f"KLING_DEFAULT_MODEL / KLING_DEFAULT_MODE do not fit together: {problem}")
        return settings


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("kling-mcp", appauthor=False))


def default_output_dir() -> Path:
    return Path(platformdirs.user_videos_dir()) / "Kling"


def _clean_token(raw: str) -> str | None:
    token = raw.strip()
    if token.lower().startswith("bearer "):
        token = token[len("bearer ") :].strip()
    return token or None


@dataclass(frozen=True)
class _Reader:
    env: Mapping[str, str]

    def _get(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def choice(
        self, name: str, default: T, allowed: tuple[T, ...], transform: Callable[[str], str] = str
    ) -> T:
        value = self._get(name)
        if value is None:
            return default
        for option in allowed:
            if option == transform(value):
                return option
        options = ", ".join(str(option) for option in allowed)
        raise SettingsError(f"{name}={value!r} is not valid: use one of {options}.")

    def number(self, name: str, default: float, *, low: float, high: float) -> float:
        value = self._get(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r} is not a number of seconds.") from None
        if not low <= number <= high:
            raise SettingsError(f"{name}={value!r} is out of range: use {low:g} to {high:g} seconds.")
        return number

    def url(self, name: str, default: str) -> str:
        value = self._get(name)
        if value is None:
            return default
        scheme, _, host = value.partition("://")
        if scheme.lower() not in ("http", "https") or not host.strip("/"):
            raise SettingsError(f"{name}={value!r} is not an http(s) URL, e.g. {default}.")
        return value.rstrip("/")

    def count(self, name: str, default: int, *, low: int, high: int) -> int:
        value = self._get(name)
        if value is None:
            return default
        if not value.isdecimal() or not low <= int(value) <= high:
            raise SettingsError(f"{name}={value!r} is not valid: use a whole number from {low} to {high}.")
        return int(value)

    def database_url(self, name: str) -> str | None:
        value = self._get(name)
        if value is None:
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise SettingsError(
                f"{name} is not a Postgres URL: use postgresql://user:password@host/database."
            )
        return value

    def networks(self, name: str) -> tuple[str, ...]:
        """Comma-separated IP addresses or CIDR networks, written the standard way; none of them all."""
        value = self._get(name) or ""
        try:
            networks = [ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()]
        except ValueError:
            networks = None
        if networks is None or any(network.prefixlen == 0 for network in networks):
            raise SettingsError(
                f"{name}={value!r} is not valid: use IP addresses or networks, separated by commas "
                "(e.g. 10.0.0.5,172.16.0.0/12); no wildcard, and no network of every address."
            )
        return tuple(str(network) for network in networks)

    def directory(self, name: str) -> Path | None:
        value = self._get(name)
        return None if value is None else _absolute(name, value)

    def directories(self, name: str) -> tuple[Path, ...]:
        value = self._get(name) or ""
        return tuple(_absolute(name, part) for part in value.split(os.pathsep) if part.strip())

    def flag(self, name: str, default: bool = False) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={value!r} is not valid: use 1 or 0 (true or false).")


def _absolute(name: str, value: str) -> Path:
    path = Path(value.strip()).expanduser()
    if not path.is_absolute():
        raise SettingsError(f"{name}={value!r} is not an absolute directory path (or one starting with ~/).")
    return path
