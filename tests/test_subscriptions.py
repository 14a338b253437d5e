"""Resource subscriptions, as a handshake-era client (2025-11-25) uses them: subscribed to a task's
resource, it hears when the task changes and reads it again; unsubscribed, it hears nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ResourceUpdatedNotification

from kling_mcp.emulator import Emulator
from tests.emulated import call, connect, emulated, eventually, structured

pytestmark = [
    pytest.mark.anyio,
    # The methods under test are the handshake era's: the SDK warns that 2026-07-28 removed them.
    pytest.mark.filterwarnings("ignore:resources/(un)?subscribe is removed"),
]


class Heard:
    """The resource URIs a client was told were updated, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))


def legacy_client(settings: Any, heard: Heard) -> Client:
    return connect(settings, mode="legacy", message_handler=heard)


async def test_a_subscribed_task_announces_its_changes_until_unsubscribed(tmp_path: Path) -> None:
    emulator = Emulator(task_seconds=0.6)
    heard = Heard()
    async with emulated(emulator, tmp_path) as settings, legacy_client(settings, heard) as client:
        resources = client.server_capabilities.resources
        assert resources is not None
        assert resources.subscribe is True
        first = structured(await call(client, "kling_generate_video", {"prompt": "a fox", "timeout": 0}))
        uri = f"kling://tasks/{first['task_id']}"
        await client.session.subscribe_resource(uri)
        await eventually(lambda: heard.uris.count(uri) >= 1, "an update of the subscribed task")
        done = await call(client, "kling_get_task", {"task_id": first["task_id"]})
        assert structured(done)["state"] == "succeeded"
        await client.session.unsubscribe_resource(uri)
        before = len(heard.uris)
        second = structured(await call(client, "kling_generate_video", {"prompt": "a hare", "timeout": 10}))
    assert second["state"] == "succeeded"  # its changes were seen by the server after the unsubscribe
    assert len(heard.uris) == before
    assert set(heard.uris) == {uri}
