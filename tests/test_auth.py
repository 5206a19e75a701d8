"""Bearer tokens: every protected endpoint answers 401 to a missing, expired, forged or unsigned token."""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import jwt
import pytest

from jobpulse.auth import TokenVerifier, mint_token
from jobpulse.errors import AuthenticationError
from tests.conftest import SECRET

job = str(uuid.uuid4())
PROTECTED = [
    ("GET", "/jobs/"),
    ("POST", "/jobs/"),
    ("GET", f"/jobs/{job}/"),
    ("GET", f"/jobs/{job}/progress/"),
    ("GET", f"/media/videos/{job}/progress/"),
    ("GET", f"/jobs/{job}/rows/"),
    ("POST", f"/jobs/{job}/cancel/"),
]
OPEN = ["/healthz", "/metrics", "/openapi.json"]


def _unsigned(owner: str) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part({'sub': owner, 'exp': int(time.time()) + 600})}."


BAD_TOKENS = {
    "missing": None,
    "expired": mint_token(SECRET, "alice", 60, now=time.time() - 3600),
    "wrong secret": mint_token("another-secret-another-secret-another", "alice", 600),
    "alg none": _unsigned("alice"),
    "garbage": "not.a.token",
    "no sub": jwt.encode({"exp": int(time.time()) + 600}, SECRET, algorithm="HS256"),
    "hs512": jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, SECRET + SECRET, algorithm="HS512"),
}


@pytest.mark.integration
@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_tokens_get_401_everywhere(client: httpx.AsyncClient, kind: str) -> None:
    token = BAD_TOKENS[kind]
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    for method, path in PROTECTED:
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 401, (kind, method, path, response.text)
        assert response.json()["error"]["code"] in {"missing_token", "invalid_token", "token_expired"}
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.integration
async def test_open_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    for path in OPEN:
        assert (await client.get(path)).status_code == 200, path


def test_verifier_caches_but_never_past_expiry() -> None:
    verifier = TokenVerifier(SECRET, cache_seconds=60)
    token = mint_token(SECRET, "alice", 2)
    assert verifier.owner(token) == "alice"
    assert verifier.owner(token) == "alice"  # from the cache
    time.sleep(2.1)
    with pytest.raises(AuthenticationError) as caught:
        verifier.owner(token)
    assert caught.value.code == "token_expired"


def test_verifier_cache_is_bounded() -> None:
    verifier = TokenVerifier(SECRET, cache_size=3)
    for n in range(10):
        verifier.owner(mint_token(SECRET, f"user{n}", 60))
    assert len(verifier._cache) == 3


def test_verifier_by_raw_header_caches_like_by_token() -> None:
    verifier = TokenVerifier(SECRET, cache_seconds=60, cache_size=3)
    token = mint_token(SECRET, "ålice", 2)
    header = f"Bearer {token}".encode()
    assert verifier.owner_of_header(header) == "ålice".encode()
    assert verifier.owner_of_header(header) == "ålice".encode()  # from the header cache
    assert verifier.owner_of_header(f"bearer  {token} ".encode()) == "ålice".encode()
    for bad in (None, b"", b"Basic abc", b"Bearer ", b"Bearer not-a-token"):
        with pytest.raises(AuthenticationError):
            verifier.owner_of_header(bad)
    for n in range(10):
        verifier.owner_of_header(f"Bearer {mint_token(SECRET, f'user{n}', 60)}".encode())
    assert len(verifier._headers) == 3
    time.sleep(2.1)
    with pytest.raises(AuthenticationError) as caught:
        verifier.owner_of_header(header)
    assert caught.value.code == "token_expired"
