"""Validates objects against the generated CRD schema as the API server does: defaults,
structural schema, unknown fields (kubectl's strict field validation) and CEL rules.

The local cluster's store uses it so that bad input is refused there exactly as on Kubernetes.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import celpy
import openapi_schema_validator

from mosix.api import crdgen

Schema = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One refusal, naming the field like the API server: spec.queue.priority."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Invalid(ValueError):
    """The object breaks its schema; nothing was stored."""

    def __init__(self, kind: str, name: str, errors: list[FieldError]) -> None:
        self.errors = errors
        detail = "; ".join(str(e) for e in errors)
        super().__init__(f'{kind} "{name}" is invalid: {detail}')


@functools.cache
def _schema(kind: str) -> Schema:
    for resource in crdgen.RESOURCES:
        if kind == resource.KIND:
            return crdgen.openapi_schema(resource)
    raise KeyError(kind)


@functools.cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Fills in the schema's defaults, recursively, the way the API server does before validating."""
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in value and "default" in sub:
                value[key] = sub["default"]
            if key in value:
                value[key] = apply_defaults(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)


def _unknown_and_cel(schema: Schema, value: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            if key not in schema["properties"]:
                errors.append(FieldError(_join(path, key), "unknown field"))
            else:
                errors += _unknown_and_cel(schema["properties"][key], sub, _join(path, key))
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, sub in value.items():
            errors += _unknown_and_cel(schema["additionalProperties"], sub, _join(path, key))
    elif isinstance(value, list) and "items" in schema:
        for i, sub in enumerate(value):
            errors += _unknown_and_cel(schema["items"], sub, _join(path, i))
    if errors:
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        message = rule["message"]
        try:
            ok = bool(_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}))  # type: ignore[attr-defined]
        except celpy.CELEvalError as e:  # type: ignore[attr-defined]
            ok, message = False, f"rule {rule['rule']!r} failed: {e}"
        if not ok:
            errors.append(FieldError(path + rule.get("fieldPath", ""), f"Invalid value: {message}"))
    return errors


def errors(kind: str, body: dict[str, Any]) -> list[FieldError]:
    """Every reason the object is invalid; [] when the server would accept it. Fills in defaults."""
    schema = _schema(kind)
    apply_defaults(schema, body)
    found: list[FieldError] = []
    validator = openapi_schema_validator.OAS30Validator(schema)
    for err in validator.iter_errors(body):
        path = ""
        for part in err.absolute_path:
            path = _join(path, part)
        if err.validator == "required" and isinstance(err.instance, dict):
            for missing in [k for k in err.validator_value if k not in err.instance]:
                found.append(FieldError(_join(path, missing), "Required value"))
            continue
        found.append(FieldError(path or "<root>", err.message))
    return found or _unknown_and_cel(schema, body, "")


def validate(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The object with its defaults, or Invalid naming every bad field."""
    found = errors(kind, body)
    if found:
        raise Invalid(kind, str(body.get("metadata", {}).get("name", "")), found)
    return body
