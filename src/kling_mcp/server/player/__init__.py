"""The video player shown in the chat: an MCP Apps resource (`ui://kling/player.html`).

Hosts that speak MCP Apps (extension `io.modelcontextprotocol/ui`) render `player.html`
in a sandboxed iframe next to the result of any tool whose `_meta` names it (`tool_meta()`),
and hand it the tool's input and result. It plays the finished video inline, counts the time
while a task runs, explains a failure, and calls `kling_get_task` / `kling_extend_video`
back through the host. Clients without MCP Apps see the tools' usual text and structured
content: nothing here changes a result.

The host applies the resource's CSP, so the player declares where videos come from:
AceDataCloud's and Kling's CDNs, and the emulator's loopback origin in demo mode.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from mcp.server.apps import Apps, ResourceCsp

from kling_mcp.settings import Settings

PLAYER_URI = "ui://kling/player.html"

VIDEO_CDN_DOMAINS = ("https://*.acedata.cloud", "https://*.klingai.com", "https://*.kling.ai")
"""Where AceDataCloud's signed video links point: its own CDN, or Kling's."""

DEMO_MEDIA_ORIGIN = "http://127.0.0.1:*"
"""Demo mode's emulator serves videos from a loopback port picked when the server starts."""

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@functools.cache
def player_html() -> str:
    """The player: one self-contained HTML document (inline CSS and JS, nothing fetched)."""
    return resources.files(__name__).joinpath("player.html").read_text(encoding="utf-8")


def media_domains(api_base_url: str, demo: bool) -> list[str]:
    """The origins the player may load videos from, as CSP sources.

    An API base URL on a loopback host (`kling-mcp emulator`) serves its own videos, so its
    origin is added too.
    """
    domains = list(VIDEO_CDN_DOMAINS)
    if demo:
        domains.append(DEMO_MEDIA_ORIGIN)
    base = urlsplit(api_base_url)
    if base.hostname in LOOPBACK_HOSTS:
        host_and_port = base.netloc.rpartition("@")[2]  # never a user:password part
        domains.append(f"{base.scheme}://{host_and_port}")
    return domains


def player_extension(settings: Settings) -> Apps:
    """The MCP Apps extension serving the player; pass it to `MCPServer(extensions=[...])`."""
    apps = Apps()
    apps.add_html_resource(
        PLAYER_URI,
        player_html(),
        name="kling-player",
        title="Kling video player",
        description="Plays a Kling video in the chat, shows a running task's progress or why it failed.",
        csp=ResourceCsp(resource_domains=media_domains(settings.api_base_url, settings.demo)),
        prefers_border=False,
    )
    return apps


def tool_meta() -> dict[str, Any]:
    """The `_meta` of every generation tool and kling_get_task: their results open in the player."""
    return {"ui": {"resourceUri": PLAYER_URI}}
