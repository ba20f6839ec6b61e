"""The policy core: frozen snapshots in, decisions out.

Pure on purpose: no clock, no I/O, no Kubernetes. The operator and the local cluster both
build a `snapshot.Snapshot` and call `decide.decide`, so one tested piece of logic runs
everywhere, and the bench simulator drives exactly the code that production runs.
"""
