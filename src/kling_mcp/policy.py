"""What differs between kling-mcp for one user on their own machine and kling-mcp hosted for many,
decided once at start (`Policy.of(settings)`) and asked by name wherever it matters.

On a user's machine (stdio) there is one user with the server's own token: their local files may
be uploaded, their videos are saved to their disk, and the server follows their tasks with no call
waiting, also after a restart. Hosted (streamable HTTP), every request brings its user's token:
the server touches no files of its own disk for anyone, keeps no user's token beyond a request,
and so brings a user's unwatched tasks up to date on that user's next request instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from kling_mcp.errors import KlingMcpError
from kling_mcp.settings import Settings


class NotOnAHostedServer(KlingMcpError):
    """A hosted server does not do this: it reads and writes no files of its own disk."""


@dataclass(frozen=True)
class Policy:
    hosted: bool
    saves_videos: bool
    """Succeeded videos are saved into the output directory."""

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(hosted=settings.hosted, saves_videos=settings.auto_download and not settings.hosted)

    @property
    def uses_local_disk(self) -> bool:
        """Local files may be read for uploads, and videos and frames written."""
        return not self.hosted

    @property
    def follows_unwaited(self) -> bool:
        """A task no call waits for is followed with the server's own token."""
        return not self.hosted

    @property
    def takes_over_on_request(self) -> bool:
        """Each request first brings its user's tasks that no replica watches up to date."""
        return self.hosted

    def refuse_local_disk(self, what: str, instead: str) -> None:
        """Raise, on a hosted server, that it does not do `what` (a clause), and what to do `instead`."""
        if self.hosted:
            raise NotOnAHostedServer(f"This is a hosted kling-mcp, which {what}: {instead}")
