"""JWT: HS256, RS256 and ES256, keys from an identity provider's JWKS, exp required, issuer/audience,
roles, revocation by token id; refusals are 401/403, an unreachable identity provider 503."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm
from pydantic import ValidationError

from tamma.api import auth as api_auth
from tamma.config import Settings
from tamma.tokens import token_id
from tests.api.conftest import JWT_SECRET, auth, running_api, token, with_sections
from tests.standins.http import Reply, Request, serve


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _pems(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """The private key (PKCS8) and its public key (SubjectPublicKeyInfo), as PEM text."""
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public.decode()


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
    private, public = _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))
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


def _ec() -> tuple[str, str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    return (*_pems(key), key)


async def test_es256_tokens_are_minted_and_verified_and_nothing_else_passes(
    api_settings: Settings, tmp_path: Path
) -> None:
    private, public, _ = _ec()
    s = with_sections(
        api_settings,
        api={"jwt_algorithm": "ES256", "jwt_public_key": public, "jwt_private_key": private, "jwt_secret": None},
    )
    now = int(time.time())
    with running_api(s, tmp_path / "t.toml") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            minted = token(s, "viewer")
            assert jwt.get_unverified_header(minted)["alg"] == "ES256"
            assert await status(http, minted) == 200
            other, _, _ = _ec()  # a key the server does not trust
            assert await status(http, jwt.encode({"role": "admin", "exp": now + 60}, other, algorithm="ES256")) == 401
            rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            assert await status(http, jwt.encode({"role": "admin", "exp": now + 60}, rsa_key, algorithm="RS256")) == 401


def _forged(key: str, algorithm: str, kid: str) -> str:
    """An admin token that names `kid` but is signed by `key`, not by the identity provider."""
    claims = {"tamma_role": "admin", "exp": int(time.time()) + 60}
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


class _IdP:
    """A team's identity provider as far as Tamma sees it: a JWKS document on 127.0.0.1."""

    def __init__(self) -> None:
        self.keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        self.fetches = 0
        self.down = False

    def add_key(self, kid: str) -> None:
        self.keys[kid] = _ec()[2]

    def token(self, kid: str, **claims: object) -> str:
        body = {"sub": "alice@example.com", "tamma_role": "operator", "exp": int(time.time()) + 600, **claims}
        return jwt.encode(body, self.keys[kid], algorithm="ES256", headers={"kid": kid})

    def __call__(self, req: Request) -> Reply:
        self.fetches += 1
        if self.down:
            return Reply(503, {"error": "down"})
        jwks = []
        for kid, key in self.keys.items():
            jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            jwks.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
        return Reply(200, {"keys": jwks})


async def test_tokens_from_a_teams_identity_provider_are_verified_by_its_published_keys(
    api_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_auth, "JWKS_COOLDOWN_S", 1.0)
    idp = _IdP()
    idp.add_key("2026-12")
    with serve(idp) as keys:
        s = with_sections(
            api_settings,
            api={"jwt_algorithm": "ES256", "jwks_url": f"{keys.url}/jwks.json", "jwt_role_claim": "tamma_role"},
        )
        with running_api(s, tmp_path / "t.toml") as url:
            async with httpx.AsyncClient(base_url=url) as http:
                assert await status(http, idp.token("2026-12")) == 200
                viewer_only = idp.token("2026-12", tamma_role="viewer")
                created = await http.post(
                    "/api/v1/tasks",
                    json={"repository": "github:a/b", "issue": 1},
                    headers={"authorization": f"Bearer {viewer_only}"},
                )
                assert created.status_code == 403  # the role comes from the IdP's claim
                # an expired token sends the user to the IdP, not to `tamma token create`
                expired = await http.get(
                    "/api/v1/tasks",
                    headers={"authorization": f"Bearer {idp.token('2026-12', exp=int(time.time()) - 60)}"},
                )
                detail = expired.json()["detail"]
                assert expired.status_code == 401 and "identity provider" in detail, detail
                assert "tamma token create" not in detail
                # the IdP rotates its key: a token with the new kid is accepted (the set is fetched again)
                idp.add_key("2027-01")
                await asyncio.sleep(1.1)  # the refetch cooldown (30 s outside this test)
                assert await status(http, idp.token("2027-01")) == 200
                # Refusals: an HS256 token (Tamma's own secret) naming the IdP's kid
                assert await status(http, _forged(JWT_SECRET, "HS256", "2026-12")) == 401
                before = idp.fetches
                for i in range(20):  # kids the IdP never published: refused, and no hammering of the IdP
                    assert await status(http, _forged(_ec()[0], "ES256", f"k{i}")) == 401
                assert idp.fetches - before <= 2
                # a token signed by another key naming a real kid fails on the signature
                assert await status(http, _forged(_ec()[0], "ES256", "2026-12")) == 401
                # the IdP withdraws a key (compromised): its tokens stop passing once the set expires
                monkeypatch.setattr(api_auth, "JWKS_LIFESPAN_S", 0.5)
                api_auth._JWKS.clear()
                still = idp.token("2026-12")
                assert await status(http, still) == 200
                del idp.keys["2026-12"]
                await asyncio.sleep(1.2)
                assert await status(http, still) == 401
    # Config: a JWKS with an HMAC algorithm, or over plain http to another host, is refused
    with pytest.raises(ValidationError, match="RS256 or ES256"):
        with_sections(api_settings, api={"jwks_url": "https://idp.example.com/jwks.json"})
    with pytest.raises(ValidationError, match="must be https"):
        with_sections(api_settings, api={"jwt_algorithm": "RS256", "jwks_url": "http://idp.example.com/jwks.json"})


async def test_an_identity_provider_that_cannot_be_reached_is_503_not_a_refusal(
    api_settings: Settings, tmp_path: Path
) -> None:
    idp = _IdP()
    idp.add_key("k1")
    with serve(idp) as keys:
        url_ = f"{keys.url}/jwks.json"
    # the server is gone now: the keys cannot be fetched
    s = with_sections(api_settings, api={"jwt_algorithm": "ES256", "jwks_url": url_, "jwt_role_claim": "tamma_role"})
    with running_api(s, tmp_path / "t.toml") as url:
        async with httpx.AsyncClient(base_url=url) as http:
            r = await http.get("/api/v1/tasks", headers={"authorization": f"Bearer {idp.token('k1')}"})
    assert r.status_code == 503 and "api.jwks_url" in r.json()["detail"]


async def test_a_revoked_token_is_refused_from_the_next_request_without_a_restart(
    http: httpx.AsyncClient, api_settings: Settings
) -> None:
    leaked, kept = token(api_settings, "operator"), token(api_settings, "viewer")
    assert await status(http, leaked) == 200
    jti = token_id(leaked)
    assert jti and jti != token_id(kept)
    admin = auth(api_settings, "admin")
    put = await http.put("/api/v1/config", json={"api": {"revoked_tokens": [jti]}}, headers=admin)
    assert put.status_code == 200, put.text
    r = await http.get("/api/v1/tasks", headers={"authorization": f"Bearer {leaked}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert await status(http, kept) == 200
