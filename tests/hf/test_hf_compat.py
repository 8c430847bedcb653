"""The cache keyword shim between transformers 5.23 (`past_key_values`) and 5.24+ (`cache`)."""

import inspect
from types import SimpleNamespace

import pytest
import transformers
from packaging.version import Version
from transformers.models.llama.modeling_llama import LlamaModel

from longpos.hf.compat import CACHE_KWARG, output_cache, take_cache


def test_cache_keyword_matches_the_installed_transformers():
    assert CACHE_KWARG in inspect.signature(LlamaModel.forward).parameters
    renamed = Version(transformers.__version__).release >= (5, 24)
    expected = "cache" if renamed else "past_key_values"
    assert expected == CACHE_KWARG


def test_take_cache_accepts_either_name_and_pops_the_new_one():
    first, second = object(), object()
    kwargs = {"cache": first, "other": 1}
    assert take_cache(None, kwargs) is first and kwargs == {"other": 1}
    assert take_cache(second, {}) is second
    assert take_cache(None, {}) is None
    assert take_cache(first, {"cache": first}) is first
    with pytest.raises(ValueError, match="not both"):
        take_cache(first, {"cache": second})


def test_output_cache_reads_either_attribute():
    cache = object()
    assert output_cache(SimpleNamespace(cache=cache)) is cache
    assert output_cache(SimpleNamespace(past_key_values=cache)) is cache
    assert output_cache(SimpleNamespace(logits=1)) is None
