"""Session fixtures for every tier. The real-Kubernetes ones (kube_apiserver, kube_cluster, kube_crds)
live in tests/realkube.py, loaded here as a plugin; see its docstring."""

pytest_plugins = [f"{__package__}.realkube" if __package__ else "realkube"]
