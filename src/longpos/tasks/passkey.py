"""Passkey retrieval (Mohtashami & Jaggi 2023, Landmark Attention, arXiv 2305.16300).

A five-digit pass key hides at a chosen depth inside repeated filler text ("The grass is
green. The sky is blue. ..."); the model must repeat it. It tests plain long-range copying
and is easier than RULER's ``niah_single_1`` (one fixed phrase, no key to match). The metric
is exact match of the first generated number. The token-level rendering is
``KEY VAL p1..p5 SEP`` in a repeated symbol sentence, asked as ``QUERY KEY ANS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from longpos.tasks import symbolic
from longpos.tasks._render import Plan, TextJob, layout, text_task
from longpos.tasks.base import TaskSpec, register_task
from longpos.tasks.fitting import Rendered, TextBuilder
from longpos.tasks.haystack import noise_stream

__all__ = ["PasskeyConfig"]

TASK_LINE = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there."
)
QUESTION = "What is the pass key? The pass key is"


@dataclass
class PasskeyConfig(symbolic.TokenOptions):
    """Passkey retrieval options."""

    max_key: int = 50000
    """The pass key is uniform in [1, max_key]."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.max_key, int) or not 1 <= self.max_key <= 10**12:
            raise ValueError(f"max_key must be an int in [1, 10**12], got {self.max_key!r}")


@text_task
def _passkey_text(job: TextJob) -> Plan:
    cfg: PasskeyConfig = job.cfg
    rng = job.rng
    key = str(rng.randint(1, cfg.max_key))
    d = job.depth if job.depth is not None else rng.choice([i / 10 for i in range(11)])
    stream = noise_stream()

    def build(size: int) -> Rendered:
        words = " ".join(stream.take(size)).split()
        cut = round(d * len(words))
        prefix, suffix = " ".join(words[:cut]), " ".join(words[cut:])

        def context(b: TextBuilder) -> None:
            if prefix:
                b.add(prefix + "\n")
            b.add_tagged(
                [("The pass key is ", None), (key, "value"), (". Remember it. ", None),
                 (key, "value"), (" is the pass key.", None)],
                role="needle",
            )  # fmt: skip
            if suffix:
                b.add("\n" + suffix)

        ask, answer_prefix = QUESTION.split("? ")
        return layout(
            TASK_LINE + "\n", context, "\n" + ask + "?", " " + answer_prefix,
            answers=[key], depth=d, meta={"filler_words": len(words)},
        )  # fmt: skip

    return Plan(build, job.budget(16), hi=max(1, job.length // 2))


register_task(
    TaskSpec(
        name="passkey",
        family="passkey",
        metric="first_number",
        config_cls=PasskeyConfig,
        defaults={},
        text_fn=_passkey_text,
        token_fn=symbolic.passkey_tokens,
        description="Passkey retrieval: repeat a 1-50000 number hidden in repeated filler",
    )
)
