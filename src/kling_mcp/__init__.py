"""kling-mcp: an MCP server that makes Kling videos through the AceDataCloud API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kling-mcp")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0"


def main() -> None:
    """The `kling-mcp` command: serve MCP over stdio (or run the API emulator)."""
    from kling_mcp.cli import run

    run()
