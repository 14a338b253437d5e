"""`kling-mcp doctor`: is this machine ready, and what exactly goes into each client's config?

One line per check (ok, warn or FAIL, with the fix), then the MCP client config files found on
this machine and the entry to paste into each. The entries start this installation as it is: `uvx
--from <checkout>` when it runs from a source checkout (and uv is installed), otherwise the absolute
path of its own console script; never a package name that may not be published. Paths are absolute:
GUI apps on macOS do not see a shell's PATH, so a bare `uvx` there fails with `spawn uvx ENOENT`.
The entries' command is started once, as a client would, and must list its tools.

The API token is checked with one free request (a lookup of a made-up task: "not found" means the
token was accepted). Every network call has short timeouts, and the token never appears in the output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

import anyio

from kling_mcp import __version__
from kling_mcp.api.errors import ADVICE, ErrorKind, kind_for
from kling_mcp.settings import TOKEN_HELP, Settings

Status = Literal["ok", "info", "warn", "fail"]
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 5.0
MADE_UP_TASK_ID = "kling-mcp-doctor-00000000"
LOW_DISK_BYTES = 1024**3
DEMO_TOKEN = "doctor-demo-token"
TOKEN_PLACEHOLDER = "your-token"
UV_INSTALL = "pip install uv (or see https://docs.astral.sh/uv/getting-started/installation/)"
ENTRY_START_SECONDS = 120.0
"""How long the entries' command may take to start and list its tools (a first `uvx --from` builds)."""
STDERR_SHOWN = 300
SETTING_PREFIXES = ("ACEDATACLOUD_", "KLING_")
ENTRY_CHECK = "Entries below"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def render(self) -> str:
        label = {"ok": " ok ", "info": "info", "warn": "warn", "fail": "FAIL"}[self.status]
        line = f"[{label}] {self.name}: {self.detail}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line


# --- The API and the token ------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What the API answered a lookup of a made-up task; `status` None: no answer at all."""

    status: int | None
    code: str | None = None
    message: str = ""


async def probe_api(settings: Settings) -> Probe:
    import httpx

    headers = {"accept": "application/json", "user-agent": f"kling-mcp/{__version__} doctor"}
    if settings.api_token:
        headers["authorization"] = f"Bearer {settings.api_token}"
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    async with httpx.AsyncClient(base_url=settings.api_base_url, headers=headers, timeout=timeout) as http:
        try:
            response = await http.post("/kling/tasks", json={"id": MADE_UP_TASK_ID, "action": "retrieve"})
        except httpx.TimeoutException:
            waited = f"timed out: {CONNECT_TIMEOUT:g} s to connect, {READ_TIMEOUT:g} s to answer"
            return Probe(None, message=waited)
        except httpx.TransportError as error:
            return Probe(None, message=_redact(f"{type(error).__name__}: {error}", settings))
    code, message = _error_of(response)
    return Probe(response.status_code, code, _redact(message, settings))


def _error_of(response: Any) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return (str(error["code"]) if error.get("code") else None), str(error.get("message") or "")
    return None, str(error or "")


def _redact(text: str, settings: Settings) -> str:
    for secret in (settings.api_token, settings.platform_token, settings.database_url):
        if secret:
            text = text.replace(secret, "***")
    return text


def reachability_check(settings: Settings, probe: Probe) -> Check:
    name = "API reachable"
    if probe.status is None:
        return Check(
            name,
            "fail",
            f"no answer from {settings.api_base_url} ({probe.message})",
            "check the network (a proxy or firewall?) and ACEDATACLOUD_API_BASE_URL",
        )
    return Check(name, "ok", f"{settings.api_base_url} answered (HTTP {probe.status})")


def token_check(settings: Settings, probe: Probe) -> Check:
    name = "API token (ACEDATACLOUD_API_TOKEN)"
    if not settings.api_token:
        return Check(name, "fail", "not set", TOKEN_HELP)
    if probe.status is None:
        return Check(name, "warn", "set, but not checked: the API could not be reached")
    kind = kind_for(probe.status, probe.code) if probe.status >= 400 else ErrorKind.NOT_FOUND
    if kind is ErrorKind.NOT_FOUND:
        return Check(name, "ok", "set and accepted by the API")
    said = f"HTTP {probe.status}{', ' + probe.code if probe.code else ''}"
    verdict = "rejected" if kind is ErrorKind.AUTH else "not usable"
    return Check(name, "fail", f"{verdict} ({said}: {probe.message or 'no message'})", ADVICE[kind])


def platform_token_check(settings: Settings) -> Check:
    name = "Upload token (ACEDATACLOUD_PLATFORM_TOKEN)"
    if not settings.platform_token:
        return Check(name, "info", "not set: uploads of local files use the API token")
    if not settings.platform_token.startswith("platform-"):
        return Check(
            name,
            "warn",
            "set, but it does not start with 'platform-' as AceDataCloud's platform tokens do",
            "create a platform token at https://platform.acedata.cloud (console, platform tokens)",
        )
    return Check(name, "ok", "set")


# --- Folders --------------------------------------------------------------------------------


def _nearest_existing(directory: Path) -> Path:
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            return candidate
    return Path(directory.anchor)


def writable_problem(directory: Path) -> str | None:
    """Why files cannot be written in `directory` (or made there once it is created), or None."""
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"cannot write in {existing} ({error.strerror or error})"
    return None


async def journal_check(settings: Settings) -> Check:
    """The journal the server would open, opened: the SQLite file in KLING_DATA_DIR, or PostgreSQL."""
    from kling_mcp.tasks.store import open_journal

    if settings.database_url:
        name, fix = "Task journal (KLING_DATABASE_URL)", "check KLING_DATABASE_URL and that the database runs"
    else:
        name, fix = "Task journal (KLING_DATA_DIR)", "set KLING_DATA_DIR to a directory you can write to"
        problem = writable_problem(settings.data_dir)
        if problem:
            return Check(name, "fail", problem, fix)
    try:
        journal = await open_journal(settings.data_dir, settings.database_url)
    except Exception as error:  # whatever stops the server's journal stops the server: report it
        return Check(name, "fail", f"cannot be opened: {_redact(str(error), settings)}", fix)
    path = journal.path
    await journal.aclose()
    if settings.database_url:
        return Check(name, "ok", "the PostgreSQL journal opens")
    if path is None or str(path) == ":memory:":
        return Check(name, "fail", f"could not be created in {settings.data_dir}: tasks kept in memory", fix)
    return Check(name, "ok", f"{path} opens")


def output_check(settings: Settings) -> Check:
    name = "Video folder (KLING_OUTPUT_DIR)"
    problem = writable_problem(settings.output_dir)
    if problem:
        return Check(name, "fail", problem, "set KLING_OUTPUT_DIR to a directory you can write to")
    free = shutil.disk_usage(_nearest_existing(settings.output_dir)).free
    detail = f"{settings.output_dir} is writable, {free / 1024**3:.1f} GB free"
    if free < LOW_DISK_BYTES:
        return Check(name, "warn", detail, "free some space, or set KLING_OUTPUT_DIR to a larger disk")
    return Check(name, "ok", detail)


# --- MCP clients ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    client: str
    path: Path
    servers_key: str
    """The key that holds the servers: "mcpServers", or "servers" in VS Code."""


def client_configs(platform: str, home: Path, env: Mapping[str, str]) -> list[ClientConfig]:
    """Where each client keeps its user-wide MCP config on `platform` (a `sys.platform` value)."""
    if platform == "darwin":
        app_data = home / "Library" / "Application Support"
    elif platform == "win32":
        app_data = Path(env.get("APPDATA") or home / "AppData" / "Roaming")
    else:
        app_data = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return [
        ClientConfig("Claude Desktop", app_data / "Claude" / "claude_desktop_config.json", "mcpServers"),
        ClientConfig("Cursor", home / ".cursor" / "mcp.json", "mcpServers"),
        ClientConfig("VS Code", app_data / "Code" / "User" / "mcp.json", "servers"),
        ClientConfig("Claude Code", home / ".claude.json", "mcpServers"),
    ]


def client_config_check(config: ClientConfig) -> Check:
    name = f"{config.client} config"
    if not config.path.is_file():
        return Check(name, "info", f"{config.path} not found")
    try:
        content = json.loads(config.path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return Check(
            name,
            "fail",
            f"{config.path} is not valid JSON ({error})",
            f"fix the file: {config.client} ignores every server in a config it cannot read",
        )
    entries = kling_entries(content, config.servers_key)
    if entries:
        return Check(name, "ok", f"{config.path} has a kling entry: {', '.join(entries)}")
    return Check(name, "info", f"{config.path} has no kling entry yet: add the one below")


def kling_entries(content: object, servers_key: str) -> list[str]:
    """Names of the servers in a config that run kling-mcp (Claude Code's projects included)."""
    if not isinstance(content, dict):
        return []
    found = [name for name, entry in _servers(content, servers_key) if _runs_kling(name, entry)]
    projects = content.get("projects")
    if isinstance(projects, dict):
        for project, settings in projects.items():
            if isinstance(settings, dict):
                servers = _servers(settings, servers_key)
                found += [f"{name} ({project})" for name, entry in servers if _runs_kling(name, entry)]
    return found


def _servers(content: Mapping[str, Any], servers_key: str) -> list[tuple[str, object]]:
    servers = content.get(servers_key)
    return list(servers.items()) if isinstance(servers, dict) else []


def _runs_kling(name: str, entry: object) -> bool:
    return "kling" in name.lower() or "kling-mcp" in json.dumps(entry)


# --- The entries to paste -------------------------------------------------------------------


def this_checkout() -> Path | None:
    """The kling-mcp source checkout this installation runs from: the one its code is in (an editable
    install, or src/ itself), or the one uv built it from for this run (`uvx --from <checkout>`)."""
    source, editable = _installed_from()
    built_for_this_run = source if source is not None and (editable or "UV" in os.environ) else None
    for candidate in (Path(__file__).resolve().parents[2], built_for_this_run):
        if candidate is not None and _is_kling_checkout(candidate):
            return candidate
    return None


def _installed_from() -> tuple[Path | None, bool]:
    """The local directory this installation was built from (PEP 610), and whether it is editable."""
    try:
        direct_url = json.loads(metadata.distribution("kling-mcp").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        return None, False
    url = direct_url.get("url", "") if isinstance(direct_url, dict) else ""
    if not url.startswith("file://"):
        return None, False
    return Path(url2pathname(urlsplit(url).path)), bool(direct_url.get("dir_info", {}).get("editable"))


def _is_kling_checkout(directory: Path) -> bool:
    pyproject = directory / "pyproject.toml"
    return pyproject.is_file() and bool(
        re.search(r'^name\s*=\s*"kling-mcp"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
    )


def find_uvx() -> str | None:
    """`uvx` on PATH, or beside the `uv` that launched this run."""
    found = shutil.which("uvx")
    if found is None and os.environ.get("UV"):
        found = shutil.which("uvx", path=str(Path(os.environ["UV"]).parent))
    return found


def launch_command(uvx: str | None, checkout: Path | None) -> list[str]:
    """The command that starts this installation, with absolute paths."""
    if checkout is not None and uvx is not None:
        return [uvx, "--from", str(checkout), "kling-mcp"]
    script = Path(sysconfig.get_path("scripts")) / (
        "kling-mcp.exe" if sys.platform == "win32" else "kling-mcp"
    )
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "kling_mcp"]


def this_command() -> list[str]:
    """The command that starts this installation, as the entries and hints give it."""
    return launch_command(find_uvx(), this_checkout())


def uvx_check(uvx: str | None, checkout: Path | None, command: Sequence[str]) -> Check:
    """uvx is needed only by entries that use it: a missing one is a note, not a problem."""
    if uvx is not None and command[0] == uvx:
        return Check(
            "uvx", "ok", f"{uvx} (the entries use this absolute path: GUI apps do not see your PATH)"
        )
    if checkout is not None:
        return Check("uvx", "info", f"not on PATH: the entries start {command[0]} ({UV_INSTALL} for uvx)")
    return Check("uvx", "info", f"not needed: the entries start {command[0]}")


async def entry_check(command: Sequence[str]) -> Check:
    """Start the entries' command once, as an MCP client would, and list its tools.

    It runs in demo mode with its journal and videos in a scratch directory: starting it sends
    nothing to the API and touches none of the user's tasks or files.
    """
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    shown = shlex.join(command)
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryFile("w+") as errors:
        env = {name: value for name, value in os.environ.items() if not name.startswith(SETTING_PREFIXES)}
        env |= {"KLING_DEMO": "1", "KLING_DATA_DIR": scratch, "KLING_OUTPUT_DIR": scratch}
        server = StdioServerParameters(command=command[0], args=list(command[1:]), env=env, cwd=scratch)
        try:
            with anyio.fail_after(ENTRY_START_SECONDS):
                async with Client(stdio_client(server, errlog=errors)) as client:
                    tools = (await client.list_tools()).tools
        except Exception as error:  # whatever stops it (no such file, a crash, a timeout) is the finding
            errors.seek(0)
            said = errors.read().strip()[-STDERR_SHOWN:]
            detail = f"{shown} did not start: {innermost(error)!r}{f'; it said: {said}' if said else ''}"
            return Check(ENTRY_CHECK, "fail", detail, f"run it by hand to see why: {shown} --version")
    return Check(ENTRY_CHECK, "ok", f"{shown} starts and lists {len(tools)} tools")


def innermost(error: BaseException) -> BaseException:
    """The error itself, not a task group's wrapper around it."""
    inner: tuple[BaseException, ...] = getattr(error, "exceptions", ())
    return innermost(inner[0]) if len(inner) == 1 else error


def client_entries(command: Sequence[str]) -> dict[str, str]:
    """The text to add to each client's config (or, for Claude Code, the command to run)."""
    server = {"command": command[0], "args": list(command[1:])}
    token_env = {"ACEDATACLOUD_API_TOKEN": TOKEN_PLACEHOLDER}
    token_prompt = {
        "type": "promptString",
        "id": "acedatacloud-token",
        "description": "AceDataCloud API token",
        "password": True,
    }
    vscode = {
        "inputs": [token_prompt],
        "servers": {
            "kling": {
                "type": "stdio",
                **server,
                "env": {"ACEDATACLOUD_API_TOKEN": "${input:acedatacloud-token}"},
            }
        },
    }
    claude_code = ["claude", "mcp", "add", "kling", "--env", f"ACEDATACLOUD_API_TOKEN={TOKEN_PLACEHOLDER}"]
    return {
        "Claude Desktop": _json({"mcpServers": {"kling": {**server, "env": token_env}}}),
        "Cursor": _json({"mcpServers": {"kling": {**server, "env": token_env}}}),
        "VS Code": _json(vscode),
        "Claude Code": shlex.join([*claude_code, "--env", "KLING_DEFAULT_TIMEOUT=300", "--", *command]),
    }


def _json(value: object) -> str:
    return json.dumps(value, indent=2)


# --- The report -----------------------------------------------------------------------------


async def machine_checks(settings: Settings) -> list[Check]:
    probe = await probe_api(settings)
    return [
        reachability_check(settings, probe),
        token_check(settings, probe),
        platform_token_check(settings),
        await journal_check(settings),
        output_check(settings),
    ]


async def run_doctor(
    settings: Settings,
    *,
    demo: bool = False,
    out: TextIO = sys.stdout,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    platform: str = sys.platform,
) -> int:
    """Print every check, the clients' configs and their entries; 0 only when nothing is wrong."""
    if demo:
        checks = await _demo_checks(settings)
    else:
        checks = await machine_checks(settings)
    configs = client_configs(platform, home or Path.home(), os.environ if env is None else env)
    checks += [client_config_check(config) for config in configs]
    uvx, checkout = find_uvx(), this_checkout()
    command = launch_command(uvx, checkout)
    checks += [uvx_check(uvx, checkout, command), await entry_check(command)]
    out.write(f"kling-mcp {__version__} doctor{' (demo: against the built-in emulator)' if demo else ''}\n\n")
    out.write("\n".join(check.render() for check in checks) + "\n")
    paths = {config.client: config.path for config in configs}
    for client, entry in client_entries(command).items():
        where = f" ({paths[client]})" if client in paths and client != "Claude Code" else ""
        out.write(f"\n{client}{where}:\n{entry}\n")
    problems = [check for check in checks if check.status in ("warn", "fail")]
    if problems:
        out.write(f"\n{len(problems)} problem(s): see the fixes above.\n")
        return 1
    out.write("\nAll is well.\n")
    return 0


async def _demo_checks(settings: Settings) -> list[Check]:
    from kling_mcp.emulator import Emulator, serve_emulator

    async with serve_emulator(Emulator(token=DEMO_TOKEN)) as base_url:
        demo = dataclasses.replace(settings, api_base_url=base_url, api_token=DEMO_TOKEN)
        return await machine_checks(demo)
