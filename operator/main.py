"""The mosix operator, run by `kopf run operator/main.py --all-namespaces --peering=mosix`.

Importing the handlers registers them with Kopf; this folder has no __init__.py, so it never
shadows the standard library's `operator`.
"""

from mosix.controller.operator import handlers

__all__ = ["handlers"]
