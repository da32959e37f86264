"""Which forge a working copy belongs to, from its origin remote and the credentials at hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from tamma.config import Settings
from tamma.demo import make_sample_repo
from tamma.errors import ConfigError
from tamma.runtime.wiring import detect_repo
from tests.standins.git_remote import git


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return make_sample_repo(tmp_path / "work")


def with_origin(path: Path, url: str) -> Path:
    git(path, "remote", "add", "origin", url)
    return path


@pytest.mark.parametrize(
    "url", ["https://github.com/octo/hello.git", "git@github.com:octo/hello.git", "https://github.com/octo/hello"]
)
def test_github_remote_with_token(clone: Path, url: str, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, github={"token": "ghp_x"})
    assert detect_repo(s, with_origin(clone, url)).key == "github:octo/hello"


def test_gitlab_self_hosted_with_namespaces(clone: Path, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, gitlab={"token": "glpat-x", "base_url": "https://git.corp"})
    ref = detect_repo(s, with_origin(clone, "git@git.corp:acme/platform/web.git"))
    assert ref.key == "gitlab:acme/platform/web"


def test_no_token_or_no_remote_means_local(clone: Path, tmp_path: Path) -> None:
    assert detect_repo(Settings(data_dir=tmp_path), clone).platform == "local"
    with_origin(clone, "https://github.com/octo/hello.git")
    assert detect_repo(Settings(data_dir=tmp_path), clone).platform == "local"


def test_allowlist_refuses_other_repositories(clone: Path, tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, github={"token": "ghp_x"}, webhooks={"repositories": ["github:octo/other"]})
    with pytest.raises(ConfigError, match=r"not in webhooks\.repositories"):
        detect_repo(s, with_origin(clone, "https://github.com/octo/hello.git"))


def test_vendor_token_variables_are_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tamma.config import load_settings

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_from_env")
    monkeypatch.setenv("TAMMA_GITHUB__BASE_URL", "https://ghe.corp/api/v3")
    s = load_settings(data_dir=tmp_path)
    assert s.github.token is not None and s.github.token.get_secret_value() == "ghp_from_env"
    assert s.github.base_url == "https://ghe.corp/api/v3"
