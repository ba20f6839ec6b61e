"""One small client interface over the two places MOSIX objects live: Kubernetes, or the local cluster."""
