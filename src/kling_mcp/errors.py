"""The root of every error kling-mcp raises on purpose.

Its message is written for the user: what went wrong, what was and was not sent or charged, and
what to do. A tool answers with it as it is (`server/tools/catalog.py` turns it into the tool's
error result in one place); anything else that escapes a tool is a bug, answered as one.
"""

NOTHING_SENT = "nothing was sent, nothing was charged"
"""What a refusal before any request says, in the same words wherever it is said."""


class KlingMcpError(Exception):
    """An expected failure, with the user's words for it."""
