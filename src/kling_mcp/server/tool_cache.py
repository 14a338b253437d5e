"""The tool definitions, kept between starts.

A client lists the tools as soon as it has started the server. Building them (importing every
tool's module, then having pydantic write each model's JSON schema) is what used to make a first
`tools/list` slow, yet the definitions change only when what they are made of does: this code, the
Python, pydantic and MCP SDK versions that turn it into schemas, and the settings (defaults shown
in the schemas). So they are kept in one file of the data directory under a key made of all that,
much as Python keeps bytecode stamped with its source. Secret settings are no part of the key: no
definition may depend on one. A file with another key, unreadable or missing is written anew from
the built tools; one that cannot be written costs the next start the same time again, nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import pydantic
from mcp.types import Tool

import kling_mcp
from kling_mcp.errors import KlingMcpError
from kling_mcp.logs import logger
from kling_mcp.settings import Settings

SECRET_SETTINGS = frozenset({"api_token", "platform_token", "database_url"})
CACHE_FILE = Path("cache", "tool-definitions.json")
"""Under the data directory."""


def definitions_key(settings: Settings) -> str:
    """A digest of everything the tool definitions are made of (see the module's docstring)."""
    public = {
        field.name: getattr(settings, field.name)
        for field in dataclasses.fields(settings)
        if field.name not in SECRET_SETTINGS
    }
    versions = f"{sys.version} pydantic {pydantic.VERSION} mcp {version('mcp')}"
    digest = hashlib.blake2b(f"{versions}\0{public!r}".encode(), digest_size=16)
    package = Path(kling_mcp.__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(b"\0" + source.relative_to(package).as_posix().encode() + b"\0")
        digest.update(source.read_bytes())
    return digest.hexdigest()


def kept_definitions(settings: Settings, build: Callable[[], list[Tool]]) -> list[Tool]:
    """The definitions kept for this code and these settings, else `build()`'s, kept for next time."""
    path = settings.data_dir / CACHE_FILE
    key = definitions_key(settings)
    try:
        kept = json.loads(path.read_bytes())
        if kept["key"] == key:
            return [Tool.model_validate(definition) for definition in kept["tools"]]
    except (OSError, ValueError, LookupError, TypeError):
        pass  # none kept yet, or not in a form this code reads: built and kept anew
    definitions = build()
    _keep(path, key, definitions)
    return definitions


def _keep(path: Path, key: str, definitions: list[Tool]) -> None:
    from kling_mcp.clips.video import write_bytes_atomically  # not needed by a start that finds them kept

    tools = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in definitions]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomically(path, json.dumps({"key": key, "tools": tools}).encode())
    except (OSError, KlingMcpError) as error:
        logger.debug("The tool definitions could not be kept in %s: %s", path, error)
