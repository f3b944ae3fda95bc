#!/usr/bin/env python3
"""Check (and with --install, install) the system packages the test suite and `make run` need.

Uses apt-get when running as root on Debian; otherwise prints the one command that installs them.
Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# binary -> Debian package
REQUIRED = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "chromium": "chromium",  # the dashboard's browser tests (Playwright drives Debian's chromium)
    "prometheus": "prometheus",  # real Prometheus server in the deploy and dashboard tests
    "promtool": "prometheus",  # checks the Prometheus config and unit-tests the alerts
}


def missing() -> dict[str, str]:
    return {binary: pkg for binary, pkg in REQUIRED.items() if shutil.which(binary) is None}


def install(packages: list[str]) -> bool:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", *packages], check=True, env=env, stdout=subprocess.DEVNULL)
    return True


def main() -> int:
    need = missing()
    if not need:
        return 0
    packages = sorted(set(need.values()))
    if "--install" in sys.argv and install(packages):
        need = missing()
        if not need:
            return 0
    print(
        f"streamq: missing {', '.join(sorted(need))}; install with: sudo apt-get install -y {' '.join(packages)}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
