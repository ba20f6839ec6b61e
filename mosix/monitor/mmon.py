"""mmon: mon's views and many more (grid, I/O, network, speed/status/version/uptime), over several clusters."""

from __future__ import annotations

import dataclasses

from mosix.cli import common, usage
from mosix.monitor import app, colors, keys, sources

USAGE = (
    """usage: mmon [-c CLUSTER[,CLUSTER...]] [-h HOST] [cluster options]
"""
    + sources.CLUSTERS_HELP
    + """
  -h HOST           start on the cluster (of -c, else the default one) that has the node HOST
Colours: ~/.mmon.cfg, `key = colour` lines (e.g. load = green, frozen = red, background = black);
  keys: """
    + ", ".join(colors.KEYS)
    + """
keys:
"""
    + "".join(f"  {key}  {what}\n" for key, what in keys.MMON.help)
    + sources.OPTIONS_HELP
)


@dataclasses.dataclass
class Options:
    clusters: str | None = None
    host: str | None = None
    common: common.Common = dataclasses.field(default_factory=common.Common)


def _value(argv: list[str], i: int, flag: str) -> tuple[str, int]:
    word = argv[i]
    if len(word) > len(flag):
        return word[len(flag) :].removeprefix("="), 1
    if i + 1 < len(argv) and argv[i + 1]:
        return argv[i + 1], 2
    raise usage.UsageError(flag, "needs a value")


def parse(argv: list[str]) -> Options:
    opts = Options()
    i = 0
    while i < len(argv):
        used = common.take(argv, i, opts.common, allow_output=False)
        if used:
            i += used
            continue
        word = argv[i]
        if word.startswith("-c"):
            value, used = _value(argv, i, "-c")
            while value.endswith(",") and i + used < len(argv):  # mmon -c amos-01, bmos-01, cmos-01
                value += argv[i + used]
                used += 1
            opts.clusters = value
        elif word.startswith("-h"):
            opts.host, used = _value(argv, i, "-h")
        else:
            raise usage.UsageError(word, "unknown option" if word.startswith("-") else "unexpected argument")
        i += used
    return opts


def clusters(opts: Options) -> tuple[list[sources.Source], int]:
    """The clusters to watch and which to start on."""
    found = sources.parse_list(opts.clusters, opts.common) if opts.clusters else [sources.from_common(opts.common)]
    start = sources.find_host(found, opts.host) if opts.host else 0
    return found, start


def _main(argv: list[str]) -> int:
    opts = parse(argv)
    if opts.common.help:
        print(USAGE, end="")
        return 0
    found, start = clusters(opts)
    scheme, problems = colors.load()
    app.MonitorApp(keys.MMON, found, start=start, scheme=scheme, problems=problems).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    return usage.run("mmon", USAGE, _main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
