"""The `kling-mcp` command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

import anyio
from dotenv import load_dotenv

from kling_mcp import __version__
from kling_mcp.settings import Settings, SettingsError

DESCRIPTION = """MCP server for Kling video generation through the AceDataCloud API.
Speaks MCP over stdio: add it to Claude Desktop, Cursor, Claude Code or VS Code.
Settings come from the environment and a .env file in the working directory
(ACEDATACLOUD_API_TOKEN, KLING_DEFAULT_MODEL, ...; see the README)."""


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="kling-mcp", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_argument("--version", action="version", version=f"kling-mcp {__version__}")
    cli.add_argument(
        "--demo",
        action="store_true",
        help="run against a built-in emulator of the API: no token, no cost, fake videos (also KLING_DEMO=1)",
    )
    commands = cli.add_subparsers(dest="command", metavar="COMMAND")
    emulator = commands.add_parser("emulator", help="run a local emulator of the Kling API over HTTP")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    emulator.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    emulator.add_argument("--token", default=None, help="the only bearer token to accept (default: any)")
    emulator.add_argument(
        "--task-seconds", type=float, default=5.0, help="seconds until a task finishes (default 5)"
    )
    return cli


def run(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "emulator":
        from kling_mcp.emulator import run_emulator

        run_emulator(host=args.host, port=args.port, token=args.token, task_seconds=args.task_seconds)
        return
    load_dotenv(dotenv_path=".env", override=False)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        sys.exit(f"kling-mcp: {error}")
    if args.demo:
        settings = dataclasses.replace(settings, demo=True)

    from kling_mcp.server import serve

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, settings)
