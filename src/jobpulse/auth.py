"""Bearer tokens: HS256 JWTs with ``sub`` (the owner id) and ``exp``, signed with the deployment's secret.

Host applications mint tokens with the same secret (:func:`mint_token` shows how). Verification on the
progress path must cost no SQL and no Redis call, and must stay cheap under thousands of polls a second,
so verified tokens are remembered in process for a short while (never past their ``exp``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections import OrderedDict

import jwt

from jobpulse.errors import AuthenticationError

__all__ = ["TokenVerifier", "bearer_token", "check_url_signature", "mint_token", "url_signature"]

ALGORITHM = "HS256"

MAX_OWNER_CHARS = 255  # the owner columns' size
_EXPIRES = re.compile(r"[0-9]{1,12}")  # ASCII digits only (str.isdigit also takes "²"); up to year 33658
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes of HMAC-SHA256, base64url without padding


def mint_token(secret: str, owner: str, ttl_seconds: int, *, now: float | None = None) -> str:
    """A token for ``owner`` that expires ``ttl_seconds`` from now."""
    issued = int(time.time() if now is None else now)
    return jwt.encode({"sub": owner, "iat": issued, "exp": issued + ttl_seconds}, secret, algorithm=ALGORITHM)


def bearer_token(header: str | bytes | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header, or 401."""
    if header is None:
        raise AuthenticationError("Missing bearer token.", code="missing_token")
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("The Authorization header must be 'Bearer <token>'.", code="invalid_token")
    return token


def url_signature(secret: str, path: str, expires: int) -> str:
    """The signature that lets a URL be fetched without a token until ``expires`` (a Unix time): what a
    ``<video src>`` needs, since a media element cannot send an Authorization header."""
    message = f"jobpulse-url|{path}|{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def check_url_signature(
    secret: str, path: str, expires: str, signature: str, *, now: float | None = None
) -> None:
    """Raise :class:`AuthenticationError` unless ``signature`` signs ``path`` until ``expires`` (ahead).

    Both come from a URL: ``expires`` must be a Unix time in ASCII digits and ``signature`` the unpadded
    base64url of a SHA-256 HMAC, checked before either is converted or compared.
    """
    if _EXPIRES.fullmatch(expires) is None or _SIGNATURE.fullmatch(signature) is None:
        raise AuthenticationError("The link is not valid.", code="invalid_signature")
    if int(expires) < (time.time() if now is None else now):
        raise AuthenticationError("The link has expired; fetch the record again.", code="link_expired")
    if not hmac.compare_digest(url_signature(secret, path, int(expires)), signature):
        raise AuthenticationError("The link is not valid.", code="invalid_signature")


class TokenVerifier:
    """Verifies tokens and remembers the good ones for ``cache_seconds`` (bounded; the oldest goes first)."""

    def __init__(self, secret: str, *, cache_seconds: float = 60.0, cache_size: int = 10_000) -> None:
        self._secret = secret
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        # token -> (owner, trust until: min(exp, verified_at + cache_seconds))
        self._cache: OrderedDict[str, tuple[str, float]] = OrderedDict()
        # a raw Authorization header -> (owner as UTF-8, the same trust until), for the poll path
        self._headers: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    def owner_of_header(self, header: bytes | None) -> bytes:
        """The owner (UTF-8) that a raw ``Authorization: Bearer`` header names, or 401: :meth:`owner`
        cached by the header's bytes, so a poll neither parses the header nor encodes the owner."""
        if header is not None:
            hit = self._headers.get(header)
            if hit is not None and time.time() < hit[1]:
                return hit[0]
        token = bearer_token(header)
        owner = self.owner(token).encode()
        trusted = self._cache.get(token)
        if header is not None and trusted is not None:  # the same steps as owner()'s, one dict op each
            self._headers[header] = (owner, trusted[1])
            while len(self._headers) > self._cache_size:
                try:
                    self._headers.popitem(last=False)
                except KeyError:
                    break
        return owner

    def owner(self, token: str) -> str:
        """The owner id a valid token names; raises :class:`AuthenticationError` otherwise."""
        # The event loop and threadpool threads call this at once: every cache step is one atomic dict
        # operation that tolerates another thread's (pop with a default, no check-then-delete), so no lock
        # is needed on the hot path.
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            self._cache.pop(token, None)
        owner, exp = self._verify(token)
        if self._cache_size and self._cache_seconds > 0:
            self._cache[token] = (owner, min(exp, now + self._cache_seconds))
            while len(self._cache) > self._cache_size:
                try:
                    self._cache.popitem(last=False)
                except KeyError:  # another thread emptied it meanwhile
                    break
        return owner

    def _verify(self, token: str) -> tuple[str, float]:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthenticationError("The token has expired.", code="token_expired") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError("The token is not valid.", code="invalid_token") from exc
        owner = claims["sub"]
        if not isinstance(owner, str) or not owner:
            raise AuthenticationError("The token names no owner.", code="invalid_token")
        if len(owner) > MAX_OWNER_CHARS or not owner.isprintable():
            # What the owner columns (String(255)) can store; a NUL or a control character is no id.
            raise AuthenticationError("The token's owner id is not valid.", code="invalid_token")
        return owner, float(claims["exp"])
