"""longpos.tasks: offline long-context tasks.

- RULER's 13 tasks (arXiv 2404.06654): :mod:`longpos.tasks.ruler`;
- passkey retrieval (arXiv 2305.16300): :mod:`longpos.tasks.passkey`;
- MQAR (Zoology, arXiv 2312.04927), token level: :mod:`longpos.tasks.mqar`;
- NLGraph-like graph reasoning (arXiv 2305.10037): :mod:`longpos.tasks.graphs`;
- HybridQA-like table QA (arXiv 2004.07347): :mod:`longpos.tasks.tables`;
- token-level structured data for tiny models: ``table_tokens``
  (:mod:`longpos.tasks.table_tokens`) and ``graph_tokens`` (:mod:`longpos.tasks.graph_tokens`);
- token-level ordered-key lookup, where order is necessary: ``order_tokens``
  (:mod:`longpos.tasks.order_tokens`);
- the symbolic vocabulary, token-level samples and training batches:
  :mod:`longpos.tasks.symbolic`; metrics: :mod:`longpos.tasks.metrics`.

``generate_sample(task, length, tokenizer=..., seed=..., depth=...)`` is the entry point.
"""

# graph_tokens / table_tokens / order_tokens: importing them registers the token-level
# structured tasks.
from longpos.tasks import graph_tokens, order_tokens, table_tokens  # noqa: F401
from longpos.tasks.base import (
    NeedleSpan,
    Sample,
    TaskSpec,
    derive_seed,
    generate_sample,
    get_task,
    list_tasks,
)
from longpos.tasks.fitting import TooShortError, fit_to_length
from longpos.tasks.metrics import score_sample
from longpos.tasks.ruler import RULER_TASKS, MissingDataError
from longpos.tasks.symbolic import SymbolicVocab, make_token_batch, make_token_example, vocab_for

__all__ = [
    "NeedleSpan",
    "Sample",
    "TaskSpec",
    "derive_seed",
    "generate_sample",
    "get_task",
    "list_tasks",
    "TooShortError",
    "fit_to_length",
    "score_sample",
    "RULER_TASKS",
    "MissingDataError",
    "SymbolicVocab",
    "make_token_batch",
    "make_token_example",
    "vocab_for",
]
