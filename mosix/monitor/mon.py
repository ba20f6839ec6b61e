"""mon: the local cluster's nodes as bars (load, frozen, memory/swap, utilization), refreshed continuously."""

from __future__ import annotations

from mosix.cli import common, usage
from mosix.monitor import app, keys, sources

USAGE = (
    """usage: mon [cluster options]
Shows one bar per node (its number under it), refreshed every couple of seconds.
keys:
"""
    + "".join(f"  {key}  {what}\n" for key, what in keys.MON.help)
    + sources.OPTIONS_HELP
)


def parse(argv: list[str]) -> common.Common:
    opts = common.Common()
    i = 0
    while i < len(argv):
        used = common.take(argv, i, opts, allow_output=False)
        if not used:
            word = argv[i]
            raise usage.UsageError(word, "unknown option" if word.startswith("-") else "unexpected argument")
        i += used
    return opts


def _main(argv: list[str]) -> int:
    opts = parse(argv)
    if opts.help:
        print(USAGE, end="")
        return 0
    app.MonitorApp(keys.MON, [sources.from_common(opts)]).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("mon", USAGE, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
