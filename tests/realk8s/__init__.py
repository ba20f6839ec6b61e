"""Tests against real Kubernetes; a package so that its module names never clash with other tiers."""
