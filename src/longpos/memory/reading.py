"""FwPKM's iterative reading, for both back ends (the native decoder and Hugging Face models).

Zhao & Jones, "Fast-weight Product Key Memory", arXiv 2601.00671: with n reading passes, the
model first runs n - 1 passes over its input that only write the memory (each ending with one
write, fresh attention every time), then the real pass reads the memory they wrote. A model's
forward validates its options with :func:`check_reading` and runs the write-only passes with
:func:`run_reading_passes`; what one pass is stays the back end's own.
"""

from __future__ import annotations

from collections.abc import Callable

WRITE_MODES: tuple[str, ...] = ("chunked", "end", "none")
"""How the real pass writes: one write every ``chunk`` tokens of the stream, one after the
last token (the call is a complete pass: nothing stays queued for a later call), or never
(frozen memory)."""


def check_reading(
    read_passes: object, memory_writes: object, *, padded: bool, past: int
) -> tuple[int, str]:
    """Validate the reading options of one forward; returns ``(passes, writes)``.

    ``padded``: the attention mask has padding (refused: padding would be written into the
    memory and shift its write grid); ``past``: tokens already in the cache (more than one
    pass re-reads the input from the start of a sequence, so it needs an empty cache).
    """
    passes = 1 if read_passes is None else read_passes
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"read_passes={read_passes!r} must be an integer >= 1")
    writes = "chunked" if memory_writes is None else memory_writes
    if writes not in WRITE_MODES:
        raise ValueError(f"memory_writes={memory_writes!r} is unknown; allowed: {WRITE_MODES}")
    if padded:
        raise ValueError(
            "attention_mask with padding is not supported by FwPKM layers (padding tokens would "
            "be written into the memory and shift its write grid): run sequences of equal "
            "length, or one at a time"
        )
    if passes > 1 and past > 0:
        raise ValueError(
            f"read_passes={passes} re-reads the input from the start of a sequence: pass an "
            "empty cache (or none); continue a cached sequence with read_passes=1"
        )
    return passes, str(writes)


def run_reading_passes(passes: int, write_only_pass: Callable[[], None]) -> None:
    """The ``passes - 1`` passes that only write the memory, before the real one."""
    for _ in range(passes - 1):
        write_only_pass()
