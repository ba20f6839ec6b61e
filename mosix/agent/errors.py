"""The agent's exception types: each says which edge failed, so callers can tell a bug from a refusal."""

from __future__ import annotations

import pathlib


class AgentError(Exception):
    """Anything the agent could not do."""


class ImageError(AgentError):
    """An image could not be built, found or unpacked."""


class JobError(AgentError):
    """A request about a job is invalid in the job's present state (unknown, already running, ...)."""


class CheckpointError(AgentError):
    """A checkpoint set is missing, incomplete or does not match what was asked."""


def log_tail(path: pathlib.Path, lines: int = 15) -> list[str]:
    """The last lines of a tool's log (CRIU, runc, a FUSE process) for an error message; none if unreadable."""
    try:
        return path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return []
