"""What every mosix resource shares: the API group, the model base, object metadata."""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

import pydantic
from pydantic import alias_generators

GROUP = "mosix.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "mosix"


def now_rfc3339() -> str:
    """Now, as stored in timestamps: RFC 3339 in UTC with milliseconds (the queue's order needs them)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seconds(stamp: str | None) -> float | None:
    """An RFC 3339 timestamp as seconds since the epoch; None for none."""
    if not stamp:
        return None
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Model(pydantic.BaseModel):
    """Base of every spec and status part: camelCase on the wire, unknown fields refused."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        validate_assignment=True,
        use_attribute_docstrings=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(pydantic.BaseModel):
    """The subset of Kubernetes object metadata that mosix reads; the rest is kept as is."""

    model_config = pydantic.ConfigDict(alias_generator=alias_generators.to_camel, populate_by_name=True, extra="allow")

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)
    finalizers: list[str] = pydantic.Field(default_factory=list)


class Condition(Model):
    """A Kubernetes-style condition: one observed fact with its reason."""

    type: str = pydantic.Field(description="The aspect this condition reports, e.g. Migratable, Admitted.")
    status: str = pydantic.Field(description="True, False or Unknown.", pattern="^(True|False|Unknown)$")
    reason: str = pydantic.Field(default="", description="A CamelCase word saying why.")
    message: str = pydantic.Field(default="", description="A sentence for humans.")
    last_transition_time: str | None = pydantic.Field(default=None, description="When status last changed (RFC 3339).")


class Resource(pydantic.BaseModel):
    """Base of the three custom resources: apiVersion, kind and metadata, the name, the wire form.
    Each sets KIND and its other ClassVars, its `kind` default, and its spec and status."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="forbid")

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SINGULAR: ClassVar[str]
    SHORT_NAMES: ClassVar[list[str]]
    NAMESPACED: ClassVar[bool]

    api_version: str = pydantic.Field(default=API_VERSION, alias="apiVersion")
    kind: str
    metadata: ObjectMeta = pydantic.Field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name

    def wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
