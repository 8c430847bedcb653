"""longpos.eval: the evaluation runner and the model protocol it needs."""

from longpos.eval.protocol import EvalModel
from longpos.eval.runner import EvalResult, run_eval

__all__ = ["EvalModel", "EvalResult", "run_eval"]
