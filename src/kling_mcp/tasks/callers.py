"""Who a call is from: the token its upstream requests carry, and whose tasks it may see.

On stdio there is one user: the server's own token, and every task is theirs (owner ""). A hosted
server (streamable HTTP) serves many: each request brings its user's AceDataCloud token as
`Authorization: Bearer ...`, used for that request's upstream calls and nowhere else. Tasks are
partitioned by a keyed hash of the token (the key is a secret every replica reads from the shared
journal), so the token itself is never stored, and one user never sees another's tasks.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from kling_mcp.api.client import KlingClient

OWNER_KEY = "owner-key"
"""The name of the journal's secret that keys the hash from token to owner."""


@dataclass(frozen=True)
class Caller:
    client: KlingClient
    """The API client with this caller's token."""
    owner: str
    """Whose tasks: "" for the one local user, a keyed hash of the token when hosted."""


class MissingToken(Exception):
    """A hosted request brought no token, and the server shares none."""


def bearer_token(headers: Mapping[str, str] | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    value = (headers or {}).get("authorization", "")
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def owner_of(token: str, key: bytes) -> str:
    """The owner id of `token`'s tasks: not reversible to the token, the same on every replica."""
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:32]
