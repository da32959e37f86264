"""JWT: HS256 and RS256, exp required, issuer/audience, roles; refusals are 401/403."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tamma.config import Settings
from tests.api.conftest import JWT_SECRET, auth, running_api, token, with_sections


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def status(http: httpx.AsyncClient, tok: str | None) -> int:
    headers = {"authorization": f"Bearer {tok}"} if tok is not None else {}
    return (await http.get("/api/v1/tasks", headers=headers)).status_code


async def test_hs256_refusals(http: httpx.AsyncClient, api_settings: Settings) -> None:
    now = int(time.time())
    good = token(api_settings, "viewer")
    assert await status(http, good) == 200
    assert await status(http, None) == 401
    alg_none = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'role': 'admin', 'exp': now + 600})}."
    assert await status(http, alg_none) == 401
    expired = jwt.encode({"role": "admin", "exp": now - 10}, JWT_SECRET, algorithm="HS256")
    resp = await http.get("/api/v1/tasks", headers={"authorization": f"Bearer {expired}"})
    assert resp.status_code == 401 and "expired" in resp.json()["detail"]
    assert resp.headers["www-authenticate"] == "Bearer"
    wrong_key = jwt.encode({"role": "admin", "exp": now + 60}, "another-secret-of-enough-length-000", algorithm="HS256")
    assert await status(http, wrong_key) == 401
    no_exp = jwt.encode({"role": "admin"}, JWT_SECRET, algorithm="HS256")
    assert await status(http, no_exp) == 401
    no_role = jwt.encode({"exp": now + 60}, JWT_SECRET, algorithm="HS256")
    assert await status(http, no_role) == 401
    bogus_role = jwt.encode({"exp": now + 60, "role": "root"}, JWT_SECRET, algorithm="HS256")
    assert await status(http, bogus_role) == 401
    # Insufficient role: a viewer may read but not start or change config.
    created = await http.post(
        "/api/v1/tasks", json={"repository": "github:a/b", "issue": 1}, headers=auth(api_settings, "viewer")
    )
    assert created.status_code == 403 and "operator" in created.json()["detail"]
    put = await http.put("/api/v1/config", json={}, headers=auth(api_settings, "operator"))
    assert put.status_code == 403


async def test_rs256_with_issuer_and_audience(api_settings: Settings, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    (tmp_path / "pub.pem").write_text(public)
    s = with_sections(
        api_settings,
        api={
            "jwt_algorithm": "RS256",
            "jwt_public_key": str(tmp_path / "pub.pem"),
            "jwt_private_key": private,
            "jwt_issuer": "tamma-test",
            "jwt_audience": "tamma-api",
            "jwt_secret": None,
        },
    )
    now = int(time.time())
    with running_api(s, tmp_path / "t.toml") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            assert await status(http, token(s, "viewer")) == 200
            wrong_aud = jwt.encode(
                {"role": "admin", "exp": now + 60, "iss": "tamma-test", "aud": "other"}, private, algorithm="RS256"
            )
            assert await status(http, wrong_aud) == 401
            wrong_iss = jwt.encode(
                {"role": "admin", "exp": now + 60, "iss": "x", "aud": "tamma-api"}, private, algorithm="RS256"
            )
            assert await status(http, wrong_iss) == 401
            # Algorithm confusion: an HS256 token "signed" with the public key must fail.
            head = b64({"alg": "HS256", "typ": "JWT"})
            body = b64({"role": "admin", "exp": now + 60, "iss": "tamma-test", "aud": "tamma-api"})
            mac = hmac.new(public.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
            confused = f"{head}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
            assert await status(http, confused) == 401
