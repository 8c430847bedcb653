"""Perplexity vs length: exact NLL bookkeeping and the cropped-context baseline."""

import math

import pytest
import torch
import torch.nn.functional as F

from longpos.config import ModelConfig
from longpos.data.corpus import english_corpus
from longpos.data.tokenizers import load_tokenizer
from longpos.eval.perplexity import perplexity_vs_length
from longpos.model import LongposLM


def model():
    cfg = ModelConfig(vocab_size=259, d_model=32, n_layers=2, n_heads=4, max_seq_len=32)
    return LongposLM(cfg, torch.Generator().manual_seed(0)).eval()


def test_nll_equals_a_direct_computation_and_buckets_cover_every_token():
    m = model()
    tokens = load_tokenizer("byte").encode(english_corpus())[:1000]
    out = perplexity_vs_length(m, tokens, [32, 64], max_windows=3, bucket=16)
    cell = out["results"]["64"]
    ids = torch.tensor(tokens[: 3 * 64]).view(3, 64)
    logits = m(ids[:, :-1]).logits
    direct = F.cross_entropy(logits.reshape(-1, 259), ids[:, 1:].reshape(-1)).item()
    assert cell["nll"] == pytest.approx(direct, rel=1e-5)
    assert cell["ppl"] == pytest.approx(math.exp(direct), rel=1e-5)
    assert cell["windows"] == 3 and cell["tokens"] == 3 * 63
    assert len(cell["loss_by_position"]) == math.ceil(63 / 16)


def test_cropped_context_limits_what_each_token_sees():
    m = model()
    tokens = list(range(40, 240))
    full = perplexity_vs_length(m, tokens, [64], max_windows=1)["results"]["64"]["nll"]
    crop64 = perplexity_vs_length(m, tokens, [64], max_windows=1, cropped=True, crop=128)
    # a crop longer than the window changes nothing
    assert crop64["results"]["64"]["nll"] == pytest.approx(full, rel=1e-5)
    crop8 = perplexity_vs_length(m, tokens, [64], max_windows=1, cropped=True, crop=8)
    assert abs(crop8["results"]["64"]["nll"] - full) > 1e-4  # far above float noise (1e-6)


def test_errors():
    with pytest.raises(ValueError, match="fewer than one window"):
        perplexity_vs_length(model(), list(range(10)), [64])
    with pytest.raises(ValueError, match="vocab_size"):
        perplexity_vs_length(model(), [300] * 100, [32])
