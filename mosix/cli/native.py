"""native: run a program as a plain Linux process, outside the MOSIX discipline (it never migrates)."""

from __future__ import annotations

import os
import sys

from mosix.cli import usage

USAGE = "usage: native program [arguments]\n"


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("--help", "-h"):
        if not argv:
            raise usage.UsageError("", "no program given")
        print(USAGE, end="")
        return 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOSIX_JOB")}
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        print(f"native: {argv[0]}: {e.strerror}", file=sys.stderr)
        return 127


def main(argv: list[str] | None = None) -> int:
    return usage.run("native", USAGE, _main, argv)
