"""`completion/complete`: what to type next for a prompt's argument, or for the task resource's task_id.

A prompt argument is completed from its suggestions (prompts.py), the `task_id` of
`kling://tasks/{task_id}` from the caller's newest tasks, so that a hosted user is offered their own
only. A reference to a prompt or a template the server does not have, or to an argument it does not
take, is invalid params (-32602). The SDK hands its completion handler the reference and the
argument but not the request, whose token names the caller: server middleware passes the request
along in a context variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    PromptReference,
    ResourceTemplateReference,
)

from kling_mcp.domain.fields import quote
from kling_mcp.server.prompts import PROMPTS, PromptSpec, prompt_arguments
from kling_mcp.server.state import AppState
from kling_mcp.server.tools.resources import TASK_TEMPLATE

MAX_VALUES = 100
"""The most values one completion may carry (the protocol's limit)."""
RECENT_TASKS = 200
"""How many of the caller's newest tasks completion looks through for a task id."""

_completing: ContextVar[ServerRequestContext[Any, Any] | None] = ContextVar(
    "kling_mcp_completing", default=None
)


def register_completion(server: MCPServer[Any], prompts: Sequence[PromptSpec] = PROMPTS) -> None:
    """Serve `completion/complete` on `server`, with the suggestions of `prompts`."""
    suggestions = {spec.name: spec.suggestions for spec in prompts}

    async def pass_request_along(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "completion/complete":
            return await call_next(ctx)
        token = _completing.set(ctx)
        try:
            return await call_next(ctx)
        finally:
            _completing.reset(token)

    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        if isinstance(ref, PromptReference):
            taken = prompt_arguments(await server.list_prompts(), ref.name)
            _check_argument(argument.name, list(taken), f"prompt {ref.name!r}")
            return _completion(
                _matching(suggestions.get(ref.name, {}).get(argument.name, ()), argument.value)
            )
        variables = await _template_variables(server, ref.uri)
        _check_argument(argument.name, variables, f"resource template {ref.uri!r}")
        if ref.uri == TASK_TEMPLATE:
            request = _completing.get()
            assert request is not None, "completion/complete reached its handler without the middleware"
            return _completion(await _task_ids(request, argument.value))
        return _completion([])

    server.middleware.append(pass_request_along)
    server.completion()(complete)  # type: ignore[no-untyped-call]  # the SDK's decorator is unannotated


async def _template_variables(server: MCPServer[Any], uri: str) -> list[str]:
    for template in await server.list_resource_templates():
        if template.uri_template == uri:
            return re.findall(r"{(\w+)}", uri)
    raise MCPError(
        INVALID_PARAMS,
        f"Unknown resource template {quote(uri)}: call resources/templates/list for the templates this "
        "server has.",
    )


def _check_argument(name: str, taken: list[str], owner: str) -> None:
    if name not in taken:
        raise MCPError(
            INVALID_PARAMS,
            f"The {owner} has no argument {quote(name)}: it takes {', '.join(taken) or 'none'}.",
        )


async def _task_ids(request: ServerRequestContext[Any, Any], typed: str) -> list[str]:
    """The caller's task ids that start with `typed`, newest first."""
    app = cast(AppState, request.lifespan_context)
    caller = app.caller_for(cast(Mapping[str, str] | None, getattr(request.request, "headers", None)))
    records, _ = await app.tasks.list(owner=caller.owner, limit=RECENT_TASKS)
    return [record.task_id for record in records if record.task_id and record.task_id.startswith(typed)]


def _matching(candidates: Sequence[str], typed: str) -> list[str]:
    """The candidates that start with `typed` (whatever the case), then those that contain it."""
    wanted = typed.casefold()
    starting = [candidate for candidate in candidates if candidate.casefold().startswith(wanted)]
    containing = [candidate for candidate in candidates if wanted in candidate.casefold()]
    return starting + [candidate for candidate in containing if candidate not in starting]


def _completion(values: list[str]) -> Completion:
    return Completion(values=values[:MAX_VALUES], total=len(values), has_more=len(values) > MAX_VALUES)
