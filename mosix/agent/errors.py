"""The agent's exception types: each says which edge failed, so callers can tell a bug from a refusal."""

from __future__ import annotations


class AgentError(Exception):
    """Anything the agent could not do."""


class ImageError(AgentError):
    """An image could not be built, found or unpacked."""


class JobError(AgentError):
    """A request about a job is invalid in the job's present state (unknown, already running, ...)."""


class CheckpointError(AgentError):
    """A checkpoint set is missing, incomplete or does not match what was asked."""
