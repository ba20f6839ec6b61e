"""The local cluster's store: SQLite, validated against the generated CRD schemas like an API server."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sqlite3
import uuid
from typing import Any

from mosix.api import meta, validation
from mosix.client import store

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    body TEXT NOT NULL, rv INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name));
CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 1), rv INTEGER NOT NULL);
INSERT OR IGNORE INTO counter VALUES (1, 0);
-- Fields the models dropped, pruned from state kept by an earlier version (as an API server prunes
-- what its schema no longer has): each `mosix up` runs this.
UPDATE objects SET body = json_remove(body, '$.status.queuePosition') WHERE kind = 'MosixJob';
"""


def default_state_dir() -> pathlib.Path:
    """Where the local cluster keeps its state: $MOSIX_STATE, else the XDG state folder."""
    if "MOSIX_STATE" in os.environ:
        return pathlib.Path(os.environ["MOSIX_STATE"])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return pathlib.Path(base) / "mosix"


class LocalStore:
    """One SQLite file; every write is a transaction, resourceVersions are a global counter."""

    def __init__(self, state_dir: pathlib.Path | None = None, namespace: str = "default") -> None:
        self.state_dir = state_dir or default_state_dir()
        self.namespace = namespace
        self.description = f"local cluster at {self.state_dir}"
        self.path = self.state_dir / "state.db"

    def _connect(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise store.StoreError(
                f"no local cluster at {self.state_dir} (start one with `mosix up`, "
                "or point at Kubernetes with --kubeconfig)"
            )
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def init(self) -> None:
        """Creates the database (mosix up)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(self.path)) as conn, conn:  # closing: sqlite3's own `with` only commits
            conn.executescript(SCHEMA)

    def _ns(self, resource: store.Resource) -> str:
        return self.namespace if resource.NAMESPACED else ""

    def _next_rv(self, conn: sqlite3.Connection) -> int:
        conn.execute("UPDATE counter SET rv = rv + 1 WHERE id = 1")
        return int(conn.execute("SELECT rv FROM counter WHERE id = 1").fetchone()[0])

    def _validated(self, resource: store.Resource, body: store.Body) -> store.Body:
        try:
            return validation.validate(resource.KIND, body)
        except validation.Invalid as e:
            raise store.Invalid(str(e)) from e

    def create(self, resource: store.Resource, body: store.Body) -> store.Body:
        body = json.loads(json.dumps(body))
        md: dict[str, Any] = body.setdefault("metadata", {})
        name = md.get("name") or ""
        if not name:
            raise store.Invalid(f'{resource.KIND} "": metadata.name: Required value')
        body.pop("status", None)
        body["apiVersion"], body["kind"] = resource.model_fields["api_version"].default, resource.KIND
        self._validated(resource, body)
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            rv = self._next_rv(conn)
            if resource.NAMESPACED:
                md["namespace"] = self.namespace
            md.update(uid=str(uuid.uuid4()), resourceVersion=str(rv), generation=1,
                      creationTimestamp=meta.now_rfc3339())
            try:
                conn.execute(
                    "INSERT INTO objects VALUES (?, ?, ?, ?, ?)",
                    (resource.KIND, self._ns(resource), name, json.dumps(body), rv),
                )
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK")
                raise store.Conflict(f'{resource.PLURAL} "{name}" already exists') from None
            conn.execute("COMMIT")
        finally:
            conn.close()
        return body

    def get(self, resource: store.Resource, name: str) -> store.Body:
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT body FROM objects WHERE kind=? AND namespace=? AND name=?",
                (resource.KIND, self._ns(resource), name),
            ).fetchone()
        finally:
            conn.close()
        if row is None:
            raise store.NotFound(f'{resource.PLURAL} "{name}" not found')
        return dict(json.loads(row[0]))

    def list(self, resource: store.Resource) -> list[store.Body]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT body FROM objects WHERE kind=? AND namespace=? ORDER BY name",
                (resource.KIND, self._ns(resource)),
            ).fetchall()
        finally:
            conn.close()
        return [dict(json.loads(r[0])) for r in rows]

    def patch(self, resource: store.Resource, name: str, patch: store.Body, *, status: bool = False) -> store.Body:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT body FROM objects WHERE kind=? AND namespace=? AND name=?",
                (resource.KIND, self._ns(resource), name),
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                raise store.NotFound(f'{resource.PLURAL} "{name}" not found')
            old = json.loads(row[0])
            want_rv = patch.get("metadata", {}).get("resourceVersion")
            if want_rv is not None and want_rv != old["metadata"]["resourceVersion"]:
                conn.execute("ROLLBACK")
                raise store.Conflict(f'{resource.PLURAL} "{name}": the object has been modified')
            part = "status" if status else "spec"
            allowed = {k: v for k, v in patch.items() if k in (part, "metadata")}
            new = store.merge_patch(old, allowed)
            for key in ("uid", "resourceVersion", "generation", "creationTimestamp", "name", "namespace"):
                if key in old["metadata"]:
                    new["metadata"][key] = old["metadata"][key]
            try:
                self._validated(resource, new)
            except store.Invalid:
                conn.execute("ROLLBACK")
                raise
            rv = self._next_rv(conn)
            new["metadata"]["resourceVersion"] = str(rv)
            if not status and new.get("spec") != old.get("spec"):
                new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
            conn.execute(
                "UPDATE objects SET body=?, rv=? WHERE kind=? AND namespace=? AND name=?",
                (json.dumps(new), rv, resource.KIND, self._ns(resource), name),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return dict(new)

    def delete(self, resource: store.Resource, name: str) -> None:
        conn = self._connect()
        try:
            cur = conn.execute(
                "DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", (resource.KIND, self._ns(resource), name)
            )
        finally:
            conn.close()
        if cur.rowcount == 0:
            raise store.NotFound(f'{resource.PLURAL} "{name}" not found')
