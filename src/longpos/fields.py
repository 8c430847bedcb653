"""Building config dataclasses from JSON data: unknown fields are an error that names them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def check_known_fields(cls: type, data: dict[str, Any], name: str | None = None) -> None:
    """A ``ValueError`` naming the fields of ``data`` that ``cls`` does not have."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {name or cls.__name__} fields {unknown}; known: {sorted(known)}")


def from_known_fields(cls: type[T], data: dict[str, Any], name: str | None = None) -> T:
    """``cls(**data)``, or a ``ValueError`` naming the fields ``cls`` does not have."""
    check_known_fields(cls, data, name)
    return cls(**data)


def prefixed_errors(prefix: str, build: Any, *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)``, re-raising its ``ValueError`` with a dotted field prefix."""
    try:
        return build(*args, **kwargs)
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}") from exc


def parse_json_object(text: str, name: str, example: str = '{"num_symbols": 64}') -> dict[str, Any]:
    """``text`` parsed as a JSON object, or a ``ValueError`` naming the option ``name``."""
    import json

    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"{name} must be a JSON object, e.g. '{example}'")
    return parsed
