"""`kling-mcp try` and `kling-mcp doctor`, as a user runs them.

`try` runs the real server in-process with a real MCP client session; demo runs use its built-in
emulator, `--real` runs an emulator started here (real loopback HTTP) so what reached the "API"
can be counted. `doctor` runs against emulators too, with a made-up home directory holding the
client config files, and a PATH that has (or lacks) `uvx`; the command its entries print is started
for real (a stand-in `uvx` runs this checkout, as `uvx --from <checkout>` would).
"""

from __future__ import annotations

import io
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from kling_mcp import __version__, doctor
from kling_mcp.doctor import client_configs, run_doctor
from kling_mcp.emulator import Emulator, Fault, serve_emulator
from kling_mcp.server.tools.catalog import TOOL_SPECS
from kling_mcp.settings import TOKEN_HELP, Settings
from kling_mcp.trial import TrialRequest, run_trial, trial_settings

pytestmark = pytest.mark.anyio

TOKEN = "sk-cli-test-9b2e4d"
WRONG_TOKEN = "sk-cli-WRONG-1c7f0a"
REPO = Path(__file__).resolve().parents[1]
TOOL_COUNT = len(TOOL_SPECS)


class Terminal(io.StringIO):
    """Standard input typed at a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def folders(tmp_path: Path) -> Settings:
    """Settings whose journal and videos live in this test's own directory."""
    return Settings(data_dir=tmp_path / "data", output_dir=tmp_path / "videos", poll_interval=0.1)


@pytest.fixture
async def api() -> AsyncIterator[Emulator]:
    emulator = Emulator(token=TOKEN, task_seconds=0.3)
    async with serve_emulator(emulator):
        yield emulator


def with_api(settings: Settings, api: Emulator, token: str | None = TOKEN) -> Settings:
    assert api.base_url
    return Settings(**{**vars(settings), "api_base_url": api.base_url, "api_token": token})


async def trial(
    settings: Settings, request: TrialRequest, stdin: io.StringIO | None = None
) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = await run_trial(
        trial_settings(settings, request), request, stdin=stdin or io.StringIO(), stdout=stdout, stderr=stderr
    )
    return code, stdout.getvalue(), stderr.getvalue()


# --- try ------------------------------------------------------------------------------------


async def test_try_demo_makes_a_video_with_progress_on_stderr(folders: Settings) -> None:
    code, out, err = await trial(folders, TrialRequest("a cat surfing at sunset", demo_seconds=0.6))

    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    where, url = lines
    assert where.startswith("Video file: ")
    # Demo videos are kept apart from real ones, in the output directory's demo folder.
    assert saved_in(Path(where.removeprefix("Video file: ")), folders.output_dir / "demo")
    assert url.startswith("Video URL: http://127.0.0.1:")
    assert url.endswith(".mp4")
    progress = [line for line in err.splitlines() if line.startswith("[")]
    assert progress, err
    assert all(line.count("#") + line.count("-") >= 30 for line in progress)
    assert "nothing was charged" in err


async def test_try_demo_hints_at_commands_that_start_this_installation(
    folders: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no uvx: the hints name this installation's console script
    code, _, err = await trial(folders, TrialRequest("a cat surfing", demo_seconds=0.2))

    assert code == 0, err
    real = next(line for line in err.splitlines() if line.startswith("A real Kling video"))
    command = shlex.split(real.split(": ", 1)[1])
    assert command[-3:] == ["try", "--real", "a cat surfing"]
    assert Path(command[0]).is_absolute()
    done = await anyio.run_process([*command[:-3], "--version"], check=False)
    assert done.stdout.decode().strip() == f"kling-mcp {__version__}", done.stderr
    assert f"Your MCP client's entry: {shlex.join(command[:-3])} doctor" in err


def saved_in(video: Path, folder: Path) -> bool:
    return video.is_file() and video.parent == folder


async def test_try_demo_failed_video_exits_1_with_the_reason(folders: Settings) -> None:
    code, out, err = await trial(folders, TrialRequest("a storm [fail]", demo_seconds=0.2))

    assert code == 1
    assert out == ""
    assert "task_failed" in err


async def test_try_rejects_a_duration_the_model_cannot_make_before_anything_is_sent(
    folders: Settings,
) -> None:
    code, out, err = await trial(folders, TrialRequest("a fox", model="kling-v2-master", duration=7))

    assert code == 1
    assert out == ""
    assert "duration" in err


async def test_try_real_without_a_token_says_how_to_set_it(folders: Settings) -> None:
    code, out, err = await trial(folders, TrialRequest("a fox", real=True, confirmed=True))

    assert (code, out) == (1, "")
    assert TOKEN_HELP in err


async def test_try_real_says_what_it_spends_and_needs_yes_without_a_terminal(
    folders: Settings, api: Emulator
) -> None:
    settings = with_api(folders, api)
    code, out, err = await trial(settings, TrialRequest("a fox", real=True, duration=10))

    assert (code, out) == (1, "")
    assert "one paid Kling task" in err
    assert "model kling-v2-master, mode std, 10 s" in err
    assert "--yes" in err
    assert api.submissions == []


async def test_try_real_asks_at_a_terminal_and_no_sends_nothing(folders: Settings, api: Emulator) -> None:
    code, _, err = await trial(with_api(folders, api), TrialRequest("a fox", real=True), Terminal("n\n"))

    assert code == 1
    assert "Go ahead? [y/N]" in err
    assert "nothing was charged" in err
    assert api.submissions == []


async def test_try_real_after_yes_at_a_terminal_makes_one_paid_video(
    folders: Settings, api: Emulator
) -> None:
    request = TrialRequest("a fox in the snow", real=True, model="kling-v2-6")
    code, out, err = await trial(with_api(folders, api), request, Terminal("y\n"))

    assert code == 0, err
    assert len(api.submissions) == 1
    assert api.submissions[0]["model"] == "kling-v2-6"
    assert "Video URL: " in out
    assert TOKEN not in out + err


async def test_try_real_with_a_rejected_token_exits_1_with_the_api_words(
    folders: Settings, api: Emulator
) -> None:
    request = TrialRequest("a fox", real=True, confirmed=True)
    code, out, err = await trial(with_api(folders, api, token=WRONG_TOKEN), request)

    assert (code, out) == (1, "")
    assert "rejected the API token" in err
    assert WRONG_TOKEN not in err


def test_try_command_from_the_shell(tmp_path: Path) -> None:
    env = clean_env(KLING_DATA_DIR=str(tmp_path / "data"), KLING_OUTPUT_DIR=str(tmp_path / "videos"))
    done = subprocess.run(
        [sys.executable, "-m", "kling_mcp", "try", "a cat surfing at sunset", "--seconds", "0.5"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "Video URL: http://127.0.0.1:" in done.stdout
    assert "Task " in done.stderr
    assert "Video URL" not in done.stderr


# --- doctor ---------------------------------------------------------------------------------


def executable(path: Path, script: str) -> Path:
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def uvx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable `uvx`, alone on PATH, that runs this checkout's server (as `uvx --from` would)."""
    path = executable(tmp_path / "bin" / "uvx", f'exec "{sys.executable}" -m kling_mcp')
    monkeypatch.setenv("PATH", str(path.parent))
    return path


@pytest.fixture
def entries_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the tests of the other checks: starting the entries' command takes seconds, and its own
    tests (below) start it for real."""

    async def not_started(command: list[str]) -> doctor.Check:
        return doctor.Check(doctor.ENTRY_CHECK, "info", "not started in this test")

    monkeypatch.setattr(doctor, "entry_check", not_started)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


async def diagnose(settings: Settings, home: Path, *, demo: bool = False) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_doctor(settings, demo=demo, out=out, env={}, home=home, platform="linux")
    return code, out.getvalue()


def line(report: str, name: str) -> str:
    found = [text for text in report.splitlines() if f"] {name}" in text]
    assert len(found) == 1, report
    return found[0]


async def test_doctor_demo_is_all_well_and_prints_entries_with_absolute_paths(
    folders: Settings, home: Path, uvx: Path
) -> None:
    code, report = await diagnose(folders, home, demo=True)

    assert code == 0, report
    assert report.rstrip().endswith("All is well.")
    assert "[ ok ] API reachable" in report
    assert "[ ok ] API token (ACEDATACLOUD_API_TOKEN): set and accepted" in report
    assert "[ ok ] Task journal" in report
    assert f"[ ok ] Video folder (KLING_OUTPUT_DIR): {folders.output_dir} is writable" in report
    entry = json.loads(section(report, "Claude Desktop"))["mcpServers"]["kling"]
    assert entry == {
        "command": str(uvx),
        "args": ["--from", str(REPO), "kling-mcp"],
        "env": {"ACEDATACLOUD_API_TOKEN": "your-token"},
    }
    vscode = json.loads(section(report, "VS Code"))["servers"]["kling"]
    assert vscode["command"] == str(uvx)
    assert vscode["env"]["ACEDATACLOUD_API_TOKEN"] == "${input:acedatacloud-token}"
    assert f"-- {uvx} --from {REPO} kling-mcp" in section(report, "Claude Code")
    assert line(report, "Entries below") == (
        f"[ ok ] Entries below: {uvx} --from {REPO} kling-mcp starts and lists {TOOL_COUNT} tools"
    )


def section(report: str, client: str) -> str:
    """The entry printed for `client`: the lines after its heading, up to the next blank line."""
    after = report.split(f"\n{client}", 1)[1].split(":\n", 1)[1]
    return after.split("\n\n", 1)[0]


async def test_doctor_accepted_token_over_http_never_shows_the_token(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None, api: Emulator
) -> None:
    settings = with_api(folders, api)
    code, report = await diagnose(Settings(**{**vars(settings), "platform_token": "platform-77aa"}), home)

    assert code == 0, report
    assert "set and accepted" in report
    assert "[ ok ] Upload token (ACEDATACLOUD_PLATFORM_TOKEN): set" in report
    assert TOKEN not in report
    assert "platform-77aa" not in report
    assert api.queried_ids == [[doctor.MADE_UP_TASK_ID]]
    assert api.submissions == []


async def test_doctor_rejected_token_fails_with_the_fix(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None, api: Emulator
) -> None:
    code, report = await diagnose(with_api(folders, api, token=WRONG_TOKEN), home)

    assert code == 1
    token = line(report, "API token")
    assert token.startswith("[FAIL]")
    assert "rejected (HTTP 401, invalid_token" in token
    assert TOKEN_HELP in report
    assert WRONG_TOKEN not in report


async def test_doctor_without_a_token_says_how_to_set_it(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None, api: Emulator
) -> None:
    code, report = await diagnose(with_api(folders, api, token=None), home)

    assert code == 1
    assert line(report, "API token") == "[FAIL] API token (ACEDATACLOUD_API_TOKEN): not set"
    assert "[ ok ] API reachable" in report
    assert TOKEN_HELP in report


async def test_doctor_unreachable_api(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(**{**vars(folders), "api_base_url": closed, "api_token": TOKEN})
    code, report = await diagnose(settings, home)

    assert code == 1
    assert line(report, "API reachable").startswith(f"[FAIL] API reachable: no answer from {closed}")
    assert line(report, "API token").startswith("[warn]")
    assert TOKEN not in report


async def test_doctor_gives_up_on_a_slow_api_at_its_short_timeout(
    folders: Settings,
    home: Path,
    uvx: Path,
    entries_not_started: None,
    api: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor, "READ_TIMEOUT", 0.2)
    api.inject("/kling/tasks", Fault.delay(3))
    code, report = await diagnose(with_api(folders, api), home)

    assert code == 1
    assert "timed out: 3 s to connect, 0.2 s to answer" in line(report, "API reachable")


async def test_doctor_names_an_output_folder_it_cannot_use(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = Settings(**{**vars(folders), "output_dir": blocker / "videos"})
    code, report = await diagnose(settings, home, demo=True)

    assert code == 1
    assert line(report, "Video folder") == (
        f"[FAIL] Video folder (KLING_OUTPUT_DIR): {blocker} is a file, not a directory"
    )
    assert "set KLING_OUTPUT_DIR to a directory you can write to" in report


async def test_doctor_warns_when_the_video_disk_is_nearly_full(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "LOW_DISK_BYTES", 1 << 62)
    code, report = await diagnose(folders, home, demo=True)

    assert code == 1
    assert line(report, "Video folder").startswith("[warn]")
    assert "GB free" in line(report, "Video folder")


async def test_doctor_warns_about_an_upload_token_that_is_not_a_platform_token(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None
) -> None:
    settings = Settings(**{**vars(folders), "platform_token": "sk-not-a-platform-token"})
    code, report = await diagnose(settings, home, demo=True)

    assert code == 1
    assert line(report, "Upload token").startswith("[warn]")
    assert "sk-not-a-platform-token" not in report


async def test_doctor_without_uvx_passes_with_entries_that_start_this_installation(
    folders: Settings, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, report = await diagnose(folders, home, demo=True)

    assert code == 0, report
    assert line(report, "uvx").startswith("[info] uvx: not on PATH")
    command = json.loads(section(report, "Cursor"))["mcpServers"]["kling"]
    script = Path(sys.executable).parent / "kling-mcp"
    assert command == {"command": str(script), "args": [], "env": {"ACEDATACLOUD_API_TOKEN": "your-token"}}
    assert section(report, "Claude Code").endswith(f"-- {script}")
    assert (
        line(report, "Entries below") == f"[ ok ] Entries below: {script} starts and lists {TOOL_COUNT} tools"
    )


async def test_doctor_fails_when_the_entries_command_does_not_start(
    folders: Settings, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = executable(tmp_path / "bin" / "uvx", 'echo "uv: no interpreter found" >&2; exit 2')
    monkeypatch.setenv("PATH", str(broken.parent))
    code, report = await diagnose(folders, home, demo=True)

    assert code == 1
    failed = line(report, "Entries below")
    assert failed.startswith(f"[FAIL] Entries below: {broken} --from {REPO} kling-mcp did not start")
    assert "uv: no interpreter found" in failed


def test_no_entry_names_a_package_to_download(tmp_path: Path) -> None:
    """Every command starts something on this machine: a file by its absolute path, never `uvx kling-mcp`."""
    script = Path(sys.executable).parent / "kling-mcp"
    for uvx in (None, "/opt/uv/bin/uvx"):
        for checkout in (None, REPO):
            command = doctor.launch_command(uvx, checkout)
            assert Path(command[0]).is_absolute(), command
            assert command == ([uvx, "--from", str(REPO), "kling-mcp"] if uvx and checkout else [str(script)])


async def test_doctor_reads_the_client_configs_on_this_machine(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None
) -> None:
    desktop = home / ".config" / "Claude" / "claude_desktop_config.json"
    desktop.parent.mkdir(parents=True)
    desktop.write_text(json.dumps({"mcpServers": {"video": {"command": "uvx", "args": ["kling-mcp"]}}}))
    cursor = home / ".cursor" / "mcp.json"
    cursor.parent.mkdir()
    cursor.write_text('{"mcpServers": {"kling": {"command": "uvx",}}}')
    vscode = home / ".config" / "Code" / "User" / "mcp.json"
    vscode.parent.mkdir(parents=True)
    vscode.write_text(json.dumps({"servers": {"github": {"command": "gh"}}}))
    (home / ".claude.json").write_text(
        json.dumps({"projects": {"/src/app": {"mcpServers": {"kling": {"command": "uvx"}}}}})
    )
    code, report = await diagnose(folders, home, demo=True)

    assert code == 1
    assert (
        line(report, "Claude Desktop config")
        == f"[ ok ] Claude Desktop config: {desktop} has a kling entry: video"
    )
    assert line(report, "Cursor config").startswith(f"[FAIL] Cursor config: {cursor} is not valid JSON")
    assert (
        line(report, "VS Code config")
        == f"[info] VS Code config: {vscode} has no kling entry yet: add the one below"
    )
    assert line(report, "Claude Code config").endswith("has a kling entry: kling (/src/app)")


async def test_doctor_lists_missing_configs_without_failing(
    folders: Settings, home: Path, uvx: Path, entries_not_started: None
) -> None:
    code, report = await diagnose(folders, home, demo=True)

    assert code == 0, report
    cursor = home / ".cursor" / "mcp.json"
    assert line(report, "Cursor config") == f"[info] Cursor config: {cursor} not found"


def test_client_config_paths_per_operating_system(tmp_path: Path) -> None:
    mac = {config.client: config.path for config in client_configs("darwin", tmp_path, {})}
    windows = {
        config.client: config.path
        for config in client_configs("win32", tmp_path, {"APPDATA": str(tmp_path / "Roaming")})
    }

    support = tmp_path / "Library" / "Application Support"
    assert mac["Claude Desktop"] == support / "Claude" / "claude_desktop_config.json"
    assert mac["VS Code"] == support / "Code" / "User" / "mcp.json"
    assert windows["Claude Desktop"] == tmp_path / "Roaming" / "Claude" / "claude_desktop_config.json"
    assert windows["VS Code"] == tmp_path / "Roaming" / "Code" / "User" / "mcp.json"
    assert mac["Cursor"] == windows["Cursor"] == tmp_path / ".cursor" / "mcp.json"
    assert mac["Claude Code"] == tmp_path / ".claude.json"


def test_doctor_command_from_the_shell(tmp_path: Path, home: Path, uvx: Path) -> None:
    env = clean_env(
        HOME=str(home),
        PATH=str(uvx.parent),
        KLING_DATA_DIR=str(tmp_path / "data"),
        KLING_OUTPUT_DIR=str(tmp_path / "videos"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "kling_mcp", "doctor", "--demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "All is well." in done.stdout


def clean_env(**env: str) -> dict[str, str]:
    """This process's environment without any kling-mcp setting, plus `env`."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ACEDATACLOUD_", "KLING_")) and key != "LOG_LEVEL"
    }
    return {**inherited, **env}
