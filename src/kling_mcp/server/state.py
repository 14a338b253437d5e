"""What the server sets up once, in its lifespan, and every call shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from mcp.server.mcpserver import Context

from kling_mcp.api.client import KlingClient
from kling_mcp.policy import Policy
from kling_mcp.settings import Settings
from kling_mcp.tasks.callers import Caller, MissingToken, bearer_token, owner_of

if TYPE_CHECKING:
    from kling_mcp.server.roots import ClientRoots
    from kling_mcp.tasks.service import TaskService


@dataclass(frozen=True)
class AppState:
    settings: Settings
    policy: Policy
    client: KlingClient
    tasks: TaskService
    roots: ClientRoots
    owner_key: bytes
    """The key of the hash from a hosted user's token to the owner of their tasks."""

    def caller(self, ctx: Context[Any, Any]) -> Caller:
        """Who the call is from: the local user, or the hosted user whose token the request carries."""
        return self.caller_for(ctx.headers)

    def caller_for(self, headers: Mapping[str, str] | None) -> Caller:
        """Who a request with these headers is from (headers are None on stdio)."""
        if not self.policy.hosted:
            return Caller(self.client, owner="")
        token = bearer_token(headers) or self.settings.api_token
        if token is None:
            raise MissingToken("Send your AceDataCloud API token as 'Authorization: Bearer <token>'.")
        return Caller(self.client.with_token(token), owner=owner_of(token, self.owner_key))


def app_state(ctx: Context[Any, Any]) -> AppState:
    """The state of the server `ctx` belongs to."""
    return cast(AppState, ctx.request_context.lifespan_context)
