"""Tamma's version (from the installed package, which setuptools-scm made from git tags) and what
it says about itself: `tamma version`, /health, OpenAPI, worker identities, User-Agent headers."""

from __future__ import annotations

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

UNKNOWN = "0.0.0"


def tamma_version() -> str:
    try:
        return version("tamma")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return UNKNOWN


def user_agent() -> str:
    """What Tamma calls itself to forges and model APIs."""
    return f"tamma/{tamma_version()} (+https://github.com/tamma-dev/tamma)"


def versions() -> dict[str, str]:
    """Everything a bug report needs: Tamma, Python, the Temporal SDK and CLI, the platform."""
    from tamma.runtime.embedded import temporal_cli_version

    try:
        sdk = version("temporalio")
    except PackageNotFoundError:
        sdk = "not installed"
    return {
        "tamma": tamma_version(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "temporalio": sdk,
        "temporal_cli": temporal_cli_version(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "frozen": "yes" if getattr(sys, "frozen", False) else "no",
    }
