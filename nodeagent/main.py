"""The mosix node agent's entry script (the agent image runs it): see `mosix.agent.__main__`.

This folder has no __init__.py: it is an entry script, not a package.
"""

from __future__ import annotations

import sys

from mosix.agent import __main__ as agent

if __name__ == "__main__":
    sys.exit(agent.main())
