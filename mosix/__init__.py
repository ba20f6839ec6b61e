"""mosix: MOSIX process migration and queueing for containers on Kubernetes."""

__version__ = "0.1.0"
