"""What differs between the transformers 5.x minor releases longpos supports.

transformers 5.24 renamed the KV-cache keyword ``past_key_values`` to ``cache``
everywhere (attention layers, decoder layers, models, ``generate``'s model kwargs and the
model outputs); the old name still reaches the outer models through a deprecation shim,
but not our replaced attention forwards. :mod:`longpos.hf` passes the cache under
``CACHE_KWARG`` and reads it with ``take_cache``, so both spellings work; ``output_cache``
reads it back from a model output under either name.
"""

from __future__ import annotations

import inspect
from typing import Any

from transformers.models.llama.modeling_llama import LlamaModel


def _cache_keyword() -> str:
    params = inspect.signature(LlamaModel.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


CACHE_KWARG: str = _cache_keyword()
"""The KV-cache keyword of the installed transformers: ``cache`` (>= 5.24) or
``past_key_values`` (5.23)."""


def either_cache(cache: Any, past_key_values: Any) -> Any:
    """The cache passed under either name; ``ValueError`` when both carry different ones."""
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("pass the KV cache once: as `cache` or as `past_key_values`, not both")
    return past_key_values if cache is None else cache


def take_cache(past_key_values: Any, kwargs: dict[str, Any]) -> Any:
    """:func:`either_cache` of ``past_key_values`` and ``kwargs["cache"]``, which it removes."""
    return either_cache(kwargs.pop("cache", None), past_key_values)


def output_cache(outputs: Any) -> Any:
    """The cache a model output carries (``outputs.cache`` or ``outputs.past_key_values``)."""
    for name in ("cache", "past_key_values"):
        value = getattr(outputs, name, None)
        if value is not None:
            return value
    return None
