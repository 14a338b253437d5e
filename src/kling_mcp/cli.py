"""The `kling-mcp` command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import sys

import anyio
from dotenv import load_dotenv

from kling_mcp import __version__
from kling_mcp.domain.capabilities import VIDEO_MODELS
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
    cli.add_argument(
        "--transport",
        choices=("stdio", "http"),
        default="stdio",
        help="stdio (default: one user, for a desktop client) or http: MCP's streamable HTTP at /mcp for "
        "a team, each request with its user's token (Authorization: Bearer ...)",
    )
    cli.add_argument("--host", default="127.0.0.1", help="with --transport http: address (default 127.0.0.1)")
    cli.add_argument("--port", type=int, default=8000, help="with --transport http: port (default 8000)")
    cli.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="with --transport http: a Host header to accept besides loopback (repeatable; PORT may be *)",
    )
    cli.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="with --transport http: a browser Origin to accept besides loopback (repeatable)",
    )
    commands = cli.add_subparsers(dest="command", metavar="COMMAND")
    emulator = commands.add_parser("emulator", help="run a local emulator of the Kling API over HTTP")
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    emulator.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    emulator.add_argument("--token", default=None, help="the only bearer token to accept (default: any)")
    emulator.add_argument(
        "--task-seconds", type=float, default=5.0, help="seconds until a task finishes (default 5)"
    )
    _add_try(commands)
    doctor = commands.add_parser(
        "doctor", help="check the token, the API, the folders and your MCP clients' configs; print entries"
    )
    doctor.add_argument("--demo", action="store_true", help="check against the built-in emulator instead")
    return cli


def _add_try(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trial = commands.add_parser(
        "try",
        help="make one video now, through a real MCP session (demo mode unless --real)",
        description="Make one video through the MCP server: a progress bar on stderr, then the video's "
        "file and link on stdout. Demo mode (no token, no cost) unless --real.",
    )
    trial.add_argument("prompt", help='what the video shows, e.g. "a cat surfing at sunset"')
    trial.add_argument(
        "--seconds", type=float, default=5.0, help="seconds the demo video takes to make (default 5)"
    )
    trial.add_argument("--model", choices=VIDEO_MODELS, help="Kling model (default KLING_DEFAULT_MODEL)")
    trial.add_argument("--duration", type=int, help="video length in seconds (default 5)")
    trial.add_argument(
        "--real",
        action="store_true",
        help="a real Kling video, with ACEDATACLOUD_API_TOKEN: costs credits",
    )
    trial.add_argument("--yes", action="store_true", help="with --real: agree to the cost without asking")


def run(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "emulator":
        from kling_mcp.emulator import run_emulator

        run_emulator(host=args.host, port=args.port, token=args.token, task_seconds=args.task_seconds)
        return
    settings = _settings()
    if args.command == "try":
        sys.exit(_try(settings, args))
    if args.command == "doctor":
        from kling_mcp.doctor import run_doctor

        sys.exit(anyio.run(functools.partial(run_doctor, settings, demo=args.demo)))
    if args.demo:
        settings = dataclasses.replace(settings, demo=True)
    if args.transport == "http":
        _serve_http(settings, args)
        return

    from kling_mcp.server.app import serve

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve, settings)


def _serve_http(settings: Settings, args: argparse.Namespace) -> None:
    from kling_mcp.server.hosting import serve_http

    # Hosted: many users, each with their own token; no local files in, no videos saved on this disk.
    hosted = dataclasses.replace(settings, hosted=True, auto_download=False)
    with contextlib.suppress(KeyboardInterrupt):
        serve_http(
            hosted,
            host=args.host,
            port=args.port,
            allowed_hosts=args.allow_host,
            allowed_origins=args.allow_origin,
        )


def _settings() -> Settings:
    load_dotenv(dotenv_path=".env", override=False)
    try:
        return Settings.from_env()
    except SettingsError as error:
        sys.exit(f"kling-mcp: {error}")


def _try(settings: Settings, args: argparse.Namespace) -> int:
    from kling_mcp.trial import TrialRequest, run_trial, trial_settings

    request = TrialRequest(
        prompt=args.prompt,
        model=args.model,
        duration=args.duration,
        real=args.real,
        demo_seconds=args.seconds,
        confirmed=args.yes,
    )
    try:
        return anyio.run(run_trial, trial_settings(settings, request), request)
    except KeyboardInterrupt:
        started = " A task already submitted keeps running at AceDataCloud." if request.real else ""
        sys.stderr.write(f"\nStopped.{started}\n")
        return 1
