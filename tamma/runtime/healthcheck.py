"""`python -m tamma.runtime.healthcheck [server|worker]`: the container image's HEALTHCHECK.

One image runs either role, so the check finds the role from the container's first process
(`tamma server` or `tamma worker`) unless told, and asks that role's readiness endpoint: the
server's `/ready` on `api.port`, the worker's `/ready` on `worker.health_address`. Standard
library only, so a check costs a Python start and one local request. Exit 0 ready, 1 not.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def role_of_first_process(cmdline: Path = Path("/proc/1/cmdline")) -> str:
    try:
        argv = cmdline.read_bytes().split(b"\0")
    except OSError:
        return "worker"
    return "server" if b"server" in argv else "worker"


def ready_url(role: str, env: dict[str, str]) -> str:
    if role == "server":
        return f"http://127.0.0.1:{env.get('TAMMA_API__PORT') or '3000'}/ready"
    address = env.get("TAMMA_WORKER__HEALTH_ADDRESS", "")
    if not address:
        raise SystemExit("worker.health_address is not set (TAMMA_WORKER__HEALTH_ADDRESS): nothing to check")
    return f"http://127.0.0.1:{address.rpartition(':')[2]}/ready"


def main(argv: list[str]) -> int:
    role = argv[0] if argv else role_of_first_process()
    url = ready_url(role, dict(os.environ))
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            print(f"{role} ready ({answer.status})")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{role} not ready ({exc.code}): {exc.read(300).decode(errors='replace')}")
    except OSError as exc:
        print(f"{role} does not answer at {url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
