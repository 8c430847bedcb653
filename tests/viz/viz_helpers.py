"""Shared helpers of the viz tests (a uniquely named module: test folders are not packages)."""

import torch

from longpos.config import ModelConfig
from longpos.model import LongposLM
from longpos.tasks.base import NeedleSpan, Sample


def tiny_model(plan: str = "repo", vocab_size: int = 64, seed: int = 0) -> LongposLM:
    cfg = ModelConfig(vocab_size=vocab_size, d_model=32, n_layers=3, n_heads=4, n_kv_heads=2,
                      max_seq_len=64, plan=plan)  # fmt: skip
    return LongposLM(cfg, torch.Generator().manual_seed(seed)).eval()


def token_sample(n: int = 48) -> Sample:
    """A hand-built token-level needle sample: BOS, context, QUERY k k ANS."""
    ids = [1] + [16 + (i * 7) % 40 for i in range(n - 5)] + [5, 17, 18, 6]
    return Sample(
        task="niah_single_1", level="token", seed=0, target_length=n + 2, prompt_ids=ids,
        answers=["s40 s41"], answer_ids=[[56, 57]], metric="token_match_all",
        tokens_to_generate=2, depth=0.3,
        needles=[
            NeedleSpan("needle", "", -1, -1, 10, 16),
            NeedleSpan("key", "", -1, -1, 11, 13),
            NeedleSpan("value", "", -1, -1, 13, 15),
            NeedleSpan("distractor", "", -1, -1, 25, 31),
        ],
        meta={"context_token_span": [1, n - 4], "num_symbols": 48},
    )  # fmt: skip
