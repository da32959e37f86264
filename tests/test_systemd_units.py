"""The systemd units in deploy/systemd: `systemd-analyze verify` accepts them with no warning
(an unknown or misspelt directive is only a warning there, so any output fails this test), the
worker's stop timeout outlasts its drain, and the environment file's example holds only settings
that exist."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tamma.config import Settings, load_settings
from tamma.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "deploy" / "systemd"

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and os.environ.get("SYSTEMD_TEST_REQUIRE") != "1",
    reason="systemd-analyze is not installed (Debian: systemd); CI requires it (SYSTEMD_TEST_REQUIRE=1)",
)


def _directives(unit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@needs_systemd
def test_systemd_analyze_verifies_the_units_without_a_warning(tmp_path: Path) -> None:
    tamma = Path(sys.executable).parent / "tamma"
    assert tamma.exists(), "the tamma entry point of this environment"
    names = {"tamma-server.service": "tamma-server.service", "tamma-worker@.service": "tamma-worker@1.service"}
    for source, name in names.items():
        text = (UNITS / source).read_text()
        assert "ExecStart=/usr/bin/tamma " in text  # where the .deb puts it
        # verify checks that ExecStart's program exists: point it at this environment's tamma
        (tmp_path / name).write_text(text.replace("/usr/bin/tamma", str(tamma)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / n) for n in names.values())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout
    # and it would catch a misspelt directive (as a warning), which is why any output fails above
    bad = tmp_path / "bad.service"
    bad.write_text((tmp_path / "tamma-server.service").read_text().replace("KillSignal=", "KilSignal="))
    warned = subprocess.run(["systemd-analyze", "verify", "--man=no", str(bad)], capture_output=True, text=True)
    assert "Unknown key" in warned.stderr


def test_the_worker_unit_gives_the_drain_time_to_finish() -> None:
    worker = _directives(UNITS / "tamma-worker@.service")
    assert worker["ExecStart"] == "/usr/bin/tamma worker"
    assert worker["KillSignal"] == "SIGTERM"  # the signal that starts the drain
    assert float(worker["TimeoutStopSec"]) > Settings().worker.graceful_shutdown_s + 5
    # a bad config exits 2 (ConfigError): systemd must not restart it in a loop
    assert worker["RestartPreventExitStatus"] == str(ConfigError.exit_code)
    server = _directives(UNITS / "tamma-server.service")
    assert server["RestartPreventExitStatus"] == str(ConfigError.exit_code)
    for unit in (worker, server):  # both share one state folder and one settings folder
        assert unit["StateDirectory"] == "tamma" and "TAMMA_DATA_DIR=/var/lib/tamma" in unit["Environment"]


def test_the_environment_file_example_names_only_settings_that_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("TAMMA_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TAMMA_CONFIG", "")
    names = []
    for line in (UNITS / "tamma.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            names.append(key)
            if value:
                monkeypatch.setenv(key, value)
    settings = load_settings()  # as `tamma server` loads them: an unknown TAMMA_ variable or a bad value fails
    assert settings.temporal.address == "127.0.0.1:7233" and settings.webhooks.bot_login == "tamma-bot"
    assert all(n.startswith("TAMMA_") or n.endswith("_API_KEY") for n in names)
    monkeypatch.setenv("TAMMA_WEBHOKS__BOT_LOGIN", "x")  # the check above is a real one
    with pytest.raises(ConfigError, match="TAMMA_WEBHOKS__BOT_LOGIN"):
        load_settings()
