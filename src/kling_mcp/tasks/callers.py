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
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kling_mcp.api.client import KlingClient
from kling_mcp.errors import KlingMcpError

OWNER_KEY = "owner-key"
"""The name of the journal's secret that keys the hash from token to owner."""


@dataclass(frozen=True)
class Caller:
    client: KlingClient
    """The API client with this caller's token."""
    owner: str
    """Whose tasks: "" for the one local user, a keyed hash of the token when hosted."""


class MissingToken(KlingMcpError):
    """A hosted request brought no token, and the server shares none."""


MAX_TOKEN_LENGTH = 1024
_BEARER = re.compile(r"Bearer +([A-Za-z0-9._~+/-]+=*)", re.IGNORECASE)
"""RFC 6750's `Bearer b64token`: ASCII letters, digits and `-._~+/`, then any `=` padding."""


class BadAuthorization(ValueError):
    """An Authorization header that is not `Bearer <token>`: the request names no one for sure."""


def bearer_token(headers: Mapping[str, str] | None) -> str | None:
    """The token of the `Authorization: Bearer <token>` header; None when there is no such header.

    Raises BadAuthorization for any other Authorization (another scheme, no token, a token with
    characters RFC 6750 does not allow, non-ASCII among them, or longer than MAX_TOKEN_LENGTH),
    so that a malformed header is refused rather than read as no header at all.
    """
    value = (headers or {}).get("authorization")
    if value is None:
        return None
    matched = _BEARER.fullmatch(value.strip())
    if matched is None or len(matched[1]) > MAX_TOKEN_LENGTH:
        raise BadAuthorization(
            f"The Authorization header must be 'Bearer <token>': one ASCII token of at most "
            f"{MAX_TOKEN_LENGTH} letters, digits and -._~+/ characters."
        )
    return matched[1]


def owner_of(token: str, key: bytes) -> str:
    """The owner id of `token`'s tasks: not reversible to the token, the same on every replica."""
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()[:32]
