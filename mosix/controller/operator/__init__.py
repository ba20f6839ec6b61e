"""The Kopf operator: the Kubernetes twin of the local cluster's loop (`mosix.local.loop`).

Handlers are thin: Kopf says when, `mosix.controller.round` decides and writes. `operator/main.py`
imports `handlers` so they register; the rest is plain code the handlers call.
"""
