"""How a paid tool call becomes an MCP task: the Tasks extension opens a handoff for a call whose
client takes task handles, and the tool, instead of waiting, starts the task and leaves its journal
entry there (see tasks_extension.py)."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from kling_mcp.tasks.journal import TaskRecord


@dataclass
class Handoff:
    """Open for a tools/call whose client takes a task handle; the tool leaves its entry here."""

    record: TaskRecord | None = None


handoff: contextvars.ContextVar[Handoff | None] = contextvars.ContextVar("kling_mcp_handoff", default=None)
"""The current tools/call's handoff, when its client opted in to Tasks (None otherwise)."""
