"""The player in a real browser, under a host that is not ours.

Headless Chromium (Debian's `chromium`) driven by Playwright loads `tests/browser/host.html`:
ext-apps' own `AppBridge` (bundled here with esbuild from `tests/browser/node_modules`), which
mounts the player exactly as the server serves it (read through an MCP client) in a sandboxed
iframe under the CSP built from its `_meta.ui.csp`. Videos come from the emulator over loopback.

Needs: `/usr/bin/chromium` (apt-get install chromium), `pip install playwright` and
`npm ci --prefix tests/browser`. Without them these tests fail and say which is missing.
`KLING_UPDATE_SCREENSHOT=1` also saves the finished card as the README's `docs/player.png`.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.server.mcpserver import MCPServer
from mcp.types import TextResourceContents

from kling_mcp.emulator import Emulator, serve_emulator
from kling_mcp.server.player import PLAYER_URI, player_extension
from kling_mcp.settings import Settings

if TYPE_CHECKING:
    from playwright.async_api import Frame, Page

pytestmark = pytest.mark.anyio

BROWSER_DIR = Path(__file__).parent / "browser"
README_SCREENSHOT = Path(__file__).parents[1] / "docs" / "player.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROMPT = "A cat surfing a long wave at sunset, golden light, slow motion"
SAVED_TO = "/home/ada/Videos/Kling/cat-surfing.mp4"


@dataclass(frozen=True)
class Player:
    """The player resource as a client reads it."""

    html: str
    csp: dict[str, Any]


async def served_player(settings: Settings) -> Player:
    server = MCPServer("player-browser-test", extensions=[player_extension(settings)])
    apps = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
    async with Client(server, extensions=[apps]) as client:
        (contents,) = (await client.read_resource(PLAYER_URI)).contents
    assert isinstance(contents, TextResourceContents)
    assert contents.meta is not None
    return Player(contents.text, contents.meta["ui"]["csp"])


def video_task(state: str, **fields: Any) -> dict[str, Any]:
    """A VideoTask as the generation tools and kling_get_task answer it."""
    task: dict[str, Any] = {
        "task_id": "task-1",
        "state": state,
        "upstream_state": {"succeeded": "succeed", "failed": "failed"}.get(state, "processing"),
        "video_url": None,
        "video_id": None,
        "duration": None,
        "trace_id": "trace-1",
        "error": None,
        "waited_seconds": 0,
        "next_step": "",
        "demo": True,
        "file_path": None,
        "prompt": PROMPT,
        "model": "kling-v2-master",
        "mode": "std",
        "tool": "kling_generate_video",
    }
    return {**task, **fields}


def tool_result(task: dict[str, Any]) -> dict[str, Any]:
    return {
        "content": [{"type": "text", "text": f"Task {task['task_id']}: {task['state']}"}],
        "structuredContent": task,
    }


@dataclass(frozen=True)
class Card:
    """One player iframe in the test host, and what the host saw it do."""

    host: Host
    index: int
    frame: Frame

    async def input(self, arguments: dict[str, Any]) -> None:
        await self.host.page.evaluate("([i, a]) => kling.sendToolInput(i, a)", [self.index, arguments])

    async def result(self, task: dict[str, Any]) -> None:
        await self.send_result(tool_result(task))

    async def send_result(self, result: dict[str, Any]) -> None:
        await self.host.page.evaluate("([i, r]) => kling.sendToolResult(i, r)", [self.index, result])

    async def reply(self, tool: str, task: dict[str, Any]) -> None:
        """Script the host's answer when the player calls `tool`."""
        await self.host.page.evaluate(
            "([i, t, r]) => kling.reply(i, t, r)", [self.index, tool, tool_result(task)]
        )

    async def record(self) -> dict[str, Any]:
        record: dict[str, Any] = await self.host.page.evaluate("(i) => kling.record(i)", self.index)
        return record

    async def text(self, selector: str) -> str:
        return await self.frame.locator(selector).inner_text()

    async def wait_for_text(self, selector: str, pattern: str) -> None:
        await self.frame.locator(selector).filter(has_text=re.compile(pattern)).wait_for()

    async def background(self) -> tuple[int, ...]:
        color: str = await self.frame.evaluate(
            "getComputedStyle(document.getElementById('card')).backgroundColor"
        )
        return tuple(int(part) for part in re.findall(r"\d+", color)[:3])

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.host.page.locator("iframe").nth(self.index).screenshot(path=path)


@dataclass(frozen=True)
class Host:
    page: Page

    async def load(self, player: Player, *, width: int = 360, **host_context: Any) -> Card:
        index: int = await self.page.evaluate(
            "(options) => kling.load(options)",
            {"html": player.html, "csp": player.csp, "hostContext": host_context, "width": width},
        )
        frame = await (await self.page.locator("iframe").nth(index).element_handle()).content_frame()
        assert frame is not None
        return Card(self, index, frame)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Chromium is missing: install Debian's package (apt-get install -y chromium).")
    return path


@pytest.fixture(scope="session")
def host_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host.html and the host bundled with esbuild (AppBridge and its dependencies), served on loopback.

    Loopback like the emulator: Chromium blocks a page on a public address from loading
    loopback media (Private Network Access), and the player's iframe shares its host's address.
    """
    esbuild = BROWSER_DIR / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail(f"The test host's npm packages are missing: run `npm ci --prefix {BROWSER_DIR}`.")
    out = tmp_path_factory.mktemp("host")
    command = [str(esbuild), "host.js", "--bundle", "--format=iife", f"--outfile={out / 'host.bundle.js'}"]
    subprocess.run(command, cwd=BROWSER_DIR, check=True, capture_output=True)
    shutil.copy(BROWSER_DIR / "host.html", out / "host.html")
    handler = functools.partial(_QuietFiles, directory=str(out))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/host.html"
        server.shutdown()
        thread.join()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not worth a line on stderr."""


@pytest.fixture
async def host(host_url: str) -> AsyncIterator[Host]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.fail(
            "Playwright is missing: .venv/bin/pip install playwright (the browser is Debian's chromium)."
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 420, "height": 900}, device_scale_factor=2)
            await page.goto(host_url)
            yield Host(page)
        finally:
            await browser.close()


@pytest.fixture
async def finished_video() -> AsyncIterator[dict[str, Any]]:
    """A finished task's result from the emulator: its video_url is served over loopback."""
    async with (
        serve_emulator(Emulator(token=None, task_seconds=0)) as base_url,
        httpx.AsyncClient(base_url=base_url, headers={"authorization": "Bearer demo"}) as api,
    ):
        body = {"action": "text2video", "prompt": PROMPT, "async": True}
        task_id = (await api.post("/kling/videos", json=body)).json()["task_id"]
        task = (await api.post("/kling/tasks", json={"action": "retrieve", "id": task_id})).json()
        yield task["response"]


def succeeded(video: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The VideoTask of the emulator's finished `video`, with `fields` changed."""
    found = {
        "task_id": video["task_id"],
        "video_url": video["video_url"],
        "video_id": video["video_id"],
        "duration": float(video["duration"]),
        "trace_id": video["trace_id"],
        "waited_seconds": 41.5,
        "next_step": "Download the video: its link expires.",
        "file_path": SAVED_TO,
    }
    return video_task("succeeded", **{**found, **fields})


async def wait_until_playing(card: Card) -> None:
    video = card.frame.locator("#video")
    await card.frame.wait_for_function("() => document.getElementById('video').readyState >= 2")
    await video.evaluate("(v) => { v.muted = true; return v.play(); }")
    await card.frame.wait_for_function("() => document.getElementById('video').currentTime > 0.3")


async def tab_order(card: Card) -> list[str]:
    """The player's controls in the order Tab reaches them, from the host page's first focus."""
    order: list[str] = []
    for _ in range(30):
        await card.host.page.keyboard.press("Tab")
        active = await card.frame.evaluate(
            "document.hasFocus() ? document.activeElement.textContent || document.activeElement.id : ''"
        )
        if active and active not in order:
            order.append(active)
    return order


async def test_a_finished_video_plays_inline_and_its_buttons_ask_the_host(
    host: Host, finished_video: dict[str, Any], tmp_path: Path
) -> None:
    card = await host.load(await served_player(Settings(demo=True)), theme="light")
    task = succeeded(finished_video)
    await card.input({"prompt": PROMPT, "model": "kling-v2-master"})
    await card.result(task)

    assert await card.text("#state") == "Ready"
    assert await card.text("#prompt") == PROMPT
    facts = await card.text("#facts")
    assert "5.1 s" in facts
    assert SAVED_TO in facts
    await card.frame.wait_for_function("() => document.getElementById('video').readyState >= 2")
    assert await card.frame.locator("#video").evaluate("(v) => [v.videoWidth, v.videoHeight]") == [64, 36]
    await wait_until_playing(card)
    await card.frame.locator("#video").evaluate("(v) => v.pause()")
    await card.screenshot(tmp_path / "succeeded.png")
    if os.environ.get("KLING_UPDATE_SCREENSHOT") == "1":
        await card.screenshot(README_SCREENSHOT)

    assert await tab_order(card) == ["video", "Download", "Check again", "extend-prompt", "Extend"]
    await card.frame.locator("#download").focus()
    await host.page.keyboard.press("Enter")
    extended = video_task(
        "running", task_id="task-2", prompt="The cat rides the wave to the beach", waited_seconds=50
    )
    await card.reply("kling_extend_video", extended)
    await card.frame.locator("#extend-prompt").fill("The cat rides the wave to the beach")
    await card.frame.locator("#extend-prompt").press("Enter")
    await card.wait_for_text("#state", "Running")
    assert await card.text("#prompt") == "The cat rides the wave to the beach"
    await card.reply("kling_get_task", succeeded(finished_video, task_id="task-2", duration=10.033))
    await card.frame.get_by_role("button", name="Check again").click()
    await card.wait_for_text("#state", "Ready")
    assert "10 s" in await card.text("#facts")

    record = await card.record()
    assert record["links"] == [finished_video["video_url"]]
    assert record["calls"] == [
        {
            "name": "kling_extend_video",
            "arguments": {
                "video_id": finished_video["video_id"],
                "prompt": "The cat rides the wave to the beach",
            },
        },
        {"name": "kling_get_task", "arguments": {"task_id": "task-2"}},
    ]


async def test_a_running_task_shows_its_prompt_model_and_a_live_clock(host: Host, tmp_path: Path) -> None:
    card = await host.load(await served_player(Settings(demo=True)), theme="light")
    await card.input({"prompt": PROMPT, "model": "kling-v2-master", "mode": "pro"})
    await card.wait_for_text("#state", "Running")
    assert await card.text("#model") == "kling-v2-master · pro"
    assert await card.text("#prompt") == PROMPT
    assert re.fullmatch(r"Generating… 0:0\d", await card.text("#elapsed"))
    assert not await card.frame.locator("#check").is_visible(), "nothing to check before the task id is known"

    await card.result(video_task("running", waited_seconds=50, next_step="Call kling_get_task with task-1."))
    await card.wait_for_text("#elapsed", r"Generating… 0:5\d")
    shown = await card.text("#elapsed")
    await card.frame.wait_for_function(
        "(shown) => document.getElementById('elapsed').textContent !== shown", arg=shown
    )
    assert await card.text("#upstream") == "Kling: processing"
    assert await card.text("#next") == "Call kling_get_task with task-1."
    assert await card.frame.locator("#check").is_visible()
    await card.screenshot(tmp_path / "running.png")


async def test_a_failed_task_says_why_the_trace_id_and_what_to_do(host: Host, tmp_path: Path) -> None:
    card = await host.load(await served_player(Settings(demo=True)), theme="light")
    failure = {"code": "moderation_blocked", "message": "The request was blocked by the content policy."}
    next_step = "Change the prompt and generate again; nothing was charged."
    await card.result(video_task("failed", error=failure, trace_id="trace-77", next_step=next_step))

    await card.wait_for_text("#state", "Failed")
    alert = card.frame.get_by_role("alert")
    assert "The request was blocked by the content policy." in await alert.inner_text()
    assert "Code: moderation_blocked" in await alert.inner_text()
    assert "trace-77" in await card.text("#facts")
    assert await card.text("#next") == next_step
    assert not await card.frame.locator("#video").is_visible()
    await card.screenshot(tmp_path / "failed.png")

    error = {"content": [{"type": "text", "text": "kling_get_task: task_id is required."}], "isError": True}
    await card.send_result(error)
    await card.wait_for_text("#notice", "task_id is required")


async def test_the_card_follows_the_host_theme_then_the_system_one(
    host: Host, finished_video: dict[str, Any], tmp_path: Path
) -> None:
    player = await served_player(Settings(demo=True))
    card = await host.load(player, theme="dark")
    await host.page.evaluate("document.body.classList.add('dark')")
    await card.result(succeeded(finished_video))
    await card.frame.wait_for_function("() => document.getElementById('video').readyState >= 2")
    assert max(await card.background()) < 60
    await card.screenshot(tmp_path / "succeeded-dark.png")

    await host.page.evaluate("kling.setTheme(0, 'light')")
    await card.frame.wait_for_function("() => document.documentElement.dataset.theme === 'light'")
    assert min(await card.background()) > 200

    await host.page.emulate_media(color_scheme="dark")
    system = await host.load(player)
    assert max(await system.background()) < 60
    styled = await host.load(
        player, theme="light", styles={"variables": {"--color-background-primary": "rgb(1, 2, 3)"}}
    )
    assert await styled.background() == (1, 2, 3)


async def test_each_card_keeps_its_own_result_fits_320px_and_reports_its_size(
    host: Host, finished_video: dict[str, Any]
) -> None:
    player = await served_player(Settings(demo=True))
    first = await host.load(player, width=320, theme="light")
    second = await host.load(player, width=320, theme="light")
    await first.result(succeeded(finished_video))
    await second.result(
        video_task("failed", task_id="task-9", error={"code": "task_failed", "message": "No video."})
    )

    await first.wait_for_text("#state", "Ready")
    await second.wait_for_text("#state", "Failed")
    assert finished_video["task_id"] in await first.text("#facts")
    assert "task-9" in await second.text("#facts")
    assert "task-9" not in await first.text("#facts")
    await first.frame.wait_for_function("() => document.getElementById('video').readyState >= 1")
    for card in (first, second):
        assert await card.frame.evaluate("document.documentElement.scrollWidth") <= 320
        await host.page.wait_for_function(
            "(i) => { const r = kling.record(i); "
            "return r.sizes.length > 0 && Math.abs(r.height - r.sizes.at(-1)) <= 1; }",
            arg=card.index,
        )
        height = (await card.record())["height"]
        assert await card.frame.evaluate("document.documentElement.scrollHeight") <= height + 1


async def test_the_host_blocks_videos_from_origins_the_csp_does_not_name(
    host: Host, finished_video: dict[str, Any]
) -> None:
    outside_demo = await served_player(
        Settings(api_token="sk-test", api_base_url="https://api.acedata.cloud")
    )
    assert not any("127.0.0.1" in domain for domain in outside_demo.csp["resourceDomains"])
    card = await host.load(outside_demo, theme="light")
    await card.result(succeeded(finished_video))
    await card.wait_for_text("#notice", "did not load")
