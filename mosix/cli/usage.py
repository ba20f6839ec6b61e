"""Usage errors name the flag and exit 2; store errors exit 1; nothing is created on either."""

from __future__ import annotations

import sys
from collections.abc import Callable

from mosix.client import store

USAGE_EXIT = 2


class UsageError(Exception):
    """Bad command line: the flag at fault and what is wrong with it."""

    def __init__(self, flag: str, message: str) -> None:
        self.flag = flag
        self.message = message
        super().__init__(f"{flag}: {message}" if flag else message)


class Refused(Exception):
    """A well-formed request the current state does not allow (exit 1): a job not in the queue, say."""


def run(prog: str, usage: str, body: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Runs a command's body, turning errors into the right message and exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return body(args)
    except UsageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        print(usage.rstrip(), file=sys.stderr)
        return USAGE_EXIT
    except (store.StoreError, Refused) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
