"""The MCP Apps player as a client sees it: the resource, its CSP, the tools' `_meta`, and plain results."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID, client_supports_apps
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import TextResourceContents

from kling_mcp.server.app import create_server
from kling_mcp.server.player import PLAYER_URI, media_domains, player_extension, player_html, tool_meta
from kling_mcp.settings import Settings

CDNS = ["https://*.acedata.cloud", "https://*.klingai.com", "https://*.kling.ai"]
APPS_CLIENT = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
TASK = {"task_id": "task-1", "state": "running", "next_step": "Call kling_get_task with task_id task-1."}


class _Outline(HTMLParser):
    """The tags and attributes of a document, and the text of its <style> and <script> elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self.tags and self.tags[-1][0] in ("style", "script"):
            self.inline.append(data)


def _outline(html: str) -> _Outline:
    outline = _Outline()
    outline.feed(html)
    return outline


def test_the_player_is_one_small_document_that_fetches_nothing() -> None:
    html = player_html()
    outline = _outline(html)
    fetching = [(tag, attrs) for tag, attrs in outline.tags if "src" in attrs or tag == "link"]
    assert fetching == [], "the player must inline its CSS and JS"
    assert not any("@import" in text or "url(" in text for text in outline.inline)
    assert [tag for tag, _ in outline.tags].count("script") == 1
    assert len(html.encode()) < 12.5 * 1024


def test_the_video_element_plays_inline_with_a_poster_frame() -> None:
    videos = [attrs for tag, attrs in _outline(player_html()).tags if tag == "video"]
    assert len(videos) == 1
    assert {"controls", "playsinline"} <= videos[0].keys()
    assert videos[0]["preload"] == "metadata"
    assert "#t=0.1" in player_html()


def test_every_control_is_a_labelled_button_or_field() -> None:
    tags = _outline(player_html()).tags
    labelled = {attrs["for"] for tag, attrs in tags if tag == "label"}
    fields = [attrs["id"] for tag, attrs in tags if tag == "input"]
    assert fields == ["extend-prompt"]
    assert set(fields) <= labelled
    assert all(attrs.get("type") in ("button", "submit") for tag, attrs in tags if tag == "button")


@pytest.mark.parametrize(
    ("base_url", "demo", "extra"),
    [
        ("https://api.acedata.cloud", False, []),
        ("https://api.acedata.cloud", True, ["http://127.0.0.1:*"]),
        ("http://127.0.0.1:8765", False, ["http://127.0.0.1:8765"]),
        ("http://localhost:9000/", False, ["http://localhost:9000"]),
        ("http://[::1]:9000", False, ["http://[::1]:9000"]),
        ("https://kling-proxy.example.com:8443", False, []),
    ],
)
def test_videos_may_come_from_the_cdns_and_a_local_emulator(
    base_url: str, demo: bool, extra: list[str]
) -> None:
    assert media_domains(base_url, demo) == CDNS + extra


def test_tool_meta_points_at_the_player_and_is_a_fresh_dict_each_time() -> None:
    meta = tool_meta()
    assert meta == {"ui": {"resourceUri": PLAYER_URI}}
    meta["ui"]["resourceUri"] = "ui://elsewhere"
    assert tool_meta()["ui"]["resourceUri"] == PLAYER_URI


def _server(settings: Settings, seen: list[bool]) -> MCPServer:
    server = MCPServer("player-test", extensions=[player_extension(settings)])

    @server.tool(meta=tool_meta())
    def kling_get_task(task_id: str, ctx: Context) -> dict[str, Any]:
        seen.append(client_supports_apps(ctx))
        return {**TASK, "task_id": task_id}

    return server


@pytest.mark.anyio
async def test_a_client_with_apps_reads_the_player_with_its_mime_type_and_csp() -> None:
    async with Client(_server(Settings(demo=True), []), extensions=[APPS_CLIENT]) as client:
        assert client.server_capabilities.extensions == {EXTENSION_ID: {}}
        listed = [
            resource for resource in (await client.list_resources()).resources if resource.uri == PLAYER_URI
        ]
        tools = (await client.list_tools()).tools
        read = (await client.read_resource(PLAYER_URI)).contents
    assert len(listed) == 1
    assert listed[0].mime_type == APP_MIME_TYPE
    assert tools[0].meta == {"ui": {"resourceUri": PLAYER_URI}}
    assert len(read) == 1
    assert isinstance(read[0], TextResourceContents)
    assert read[0].mime_type == APP_MIME_TYPE
    assert read[0].text == player_html()
    assert read[0].meta is not None
    assert read[0].meta["ui"]["csp"] == {"resourceDomains": [*CDNS, "http://127.0.0.1:*"]}


@pytest.mark.anyio
async def test_outside_demo_mode_the_csp_names_only_the_cdns() -> None:
    settings = Settings(api_token="sk-test", api_base_url="https://api.acedata.cloud")
    async with Client(_server(settings, [])) as client:
        read = (await client.read_resource(PLAYER_URI)).contents[0]
    assert read.meta is not None
    assert read.meta["ui"]["csp"] == {"resourceDomains": CDNS}


@pytest.mark.anyio
@pytest.mark.parametrize(("extensions", "supports_apps"), [([], False), ([APPS_CLIENT], True)])
async def test_results_are_the_same_plain_results_with_or_without_apps(
    extensions: list[Any], supports_apps: bool
) -> None:
    seen: list[bool] = []
    async with Client(_server(Settings(demo=True), seen), extensions=extensions) as client:
        result = await client.call_tool("kling_get_task", {"task_id": "task-7"})
    assert seen == [supports_apps]
    assert result.is_error is False
    assert result.structured_content == {**TASK, "task_id": "task-7"}
    assert '"task_id": "task-7"' in result.content[0].text  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_the_server_offers_the_player_and_links_it_from_every_tool_that_answers_a_video() -> None:
    async with Client(create_server(Settings()), extensions=[APPS_CLIENT]) as client:
        offered = client.server_capabilities.extensions
        assert offered == {EXTENSION_ID: {}, "io.modelcontextprotocol/tasks": {}}
        resources = {resource.uri for resource in (await client.list_resources()).resources}
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert PLAYER_URI in resources
    linked = {name for name, tool in tools.items() if tool.meta == {"ui": {"resourceUri": PLAYER_URI}}}
    unlinked = {"kling_get_tasks_batch", "kling_list_tasks", "kling_list_models"}
    unlinked |= {"kling_extract_frame", "kling_join_videos"}  # a frame, a joined file: not a task
    assert linked == set(tools) - unlinked
    assert {"kling_generate_video_from_image", "kling_get_task"} <= linked
