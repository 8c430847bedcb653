"""Run by the distributed test under torchrun (and once as a single process)."""

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from copy_source import CopySource  # noqa: E402

from longpos.config import ModelConfig  # noqa: E402
from longpos.model import LongposLM  # noqa: E402
from longpos.train import TrainConfig, train  # noqa: E402

out, parallel, accum = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = TrainConfig(
    steps=6, batch_size=8, grad_accum=accum, seq_len=24, log_every=1, progress=False,
    device="cpu", optim=dict(lr=3e-3, warmup_steps=2),
)  # fmt: skip
model = LongposLM(
    ModelConfig(vocab_size=32, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, plan="repo"),
    torch.Generator().manual_seed(0),
)
result = train(model, cfg, out, source=CopySource(), parallel=parallel, resume=False)
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
print(json.dumps(result["eval"]))
