"""The control plane's shared half: MOSIX objects into policy snapshots, decisions into status patches.

Both loops (the Kopf operator, the local cluster's SQLite loop) use it, so they decide and act alike.
"""
