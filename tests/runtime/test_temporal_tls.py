"""Temporal beyond the embedded server: TLS with a private CA, mTLS and API keys (Temporal Cloud)
from the settings; a wrong one is a clear error, never a hang or a leaked key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tamma.config import Settings
from tamma.errors import ConfigError, TemporalUnavailable
from tamma.runtime.client import open_client, security


def temporal(tmp_path: Path, **fields: object) -> Settings:
    return Settings(data_dir=tmp_path, temporal=fields)


def test_plaintext_by_default(tmp_path: Path) -> None:
    assert security(temporal(tmp_path, address="t:7233").temporal) == {}


def test_mtls_reads_the_pem_files_and_names_the_server(tmp_path: Path) -> None:
    for name in ("crt", "key", "ca"):
        (tmp_path / f"c.{name}").write_bytes(f"-----BEGIN {name}-----\n".encode())
    t = temporal(
        tmp_path,
        address="ns.acct.tmprl.cloud:7233",
        tls_client_cert=tmp_path / "c.crt",
        tls_client_key=tmp_path / "c.key",
        tls_server_ca=tmp_path / "c.ca",
        tls_server_name="ns.acct.tmprl.cloud",
    ).temporal
    tls = security(t)["tls"]
    assert tls.client_cert == b"-----BEGIN crt-----\n" and tls.client_private_key == b"-----BEGIN key-----\n"
    assert tls.server_root_ca_cert == b"-----BEGIN ca-----\n" and tls.domain == "ns.acct.tmprl.cloud"


def test_an_api_key_turns_tls_on_and_is_a_redacted_secret(tmp_path: Path) -> None:
    s = temporal(tmp_path, address="x.tmprl.cloud:7233", api_key="tcld-key-0123456789")
    options = security(s.temporal)
    assert options["api_key"] == "tcld-key-0123456789" and options["tls"].client_cert is None
    assert "tcld-key-0123456789" in s.secrets()  # so logs, errors and sandboxes never show it
    assert "tcld-key-0123456789" not in repr(s) and "tcld-key-0123456789" not in s.model_dump_json()


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tls_client_cert and tls_client_key go together"):
        temporal(tmp_path, address="t:7233", tls_client_cert=tmp_path / "c.crt")


def test_an_unreadable_pem_names_the_setting(tmp_path: Path) -> None:
    t = temporal(tmp_path, address="t:7233", tls=True, tls_server_ca=tmp_path / "missing.pem").temporal
    with pytest.raises(ConfigError, match=r"temporal.tls_server_ca = .*missing.pem.* cannot be read"):
        security(t)


async def test_tls_to_a_plaintext_server_fails_fast_and_says_where(tmp_path: Path, temporal_address: str) -> None:
    """The real dev server speaks plaintext: a TLS client must fail with the address, not hang."""
    s = Settings(data_dir=tmp_path, temporal={"address": temporal_address, "tls": True, "connect_timeout_s": 5})
    with pytest.raises(TemporalUnavailable, match=f"cannot reach Temporal at {temporal_address}"):
        await open_client(s)
