"""Verdicts on the papers' claims from a small-scale reproduction's results
(``benchmarks/reproduce.py``): held, not held, or cannot tell at this scale.

Each :class:`Claim` compares one or more methods with comparators on some tasks, over some
lengths (multiples of the training length L), on one of the reproduction's evaluations:
``clean`` (the main table), ``noisy`` (distractor filler, L and 4L) or ``long`` (the memory
models beyond 8L, with their base model). The rule is fixed in code, not chosen per result:

- a **score per seed**: the mean accuracy over the claim's lengths;
- ``beats``: **held** when every seed of the method scores above every seed of the comparator
  (min > max) and above the copy-some-record chance level (a better guess is not better
  retrieval: above the comparator but not above that level is **not held**); **not held**
  when no seed of the method scores above the comparator's worst seed (max <= min; equal
  scores, both at 100% for example, do not beat each other); otherwise **cannot tell** (the
  seed ranges overlap);
- ``matches``: **held** unless every seed of the method scores below every seed of the
  comparator (then **not held**);
- **cannot tell** also when neither model learned the task: both below the copy-some-record
  chance level at L on the clean samples (a comparison of guesses says nothing).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["held", "not held", "cannot tell"]
VERDICTS: tuple[Verdict, ...] = ("held", "not held", "cannot tell")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as the reproduction can test it."""

    paper: str
    text: str
    methods: tuple[str, ...]
    against: tuple[str, ...]
    evaluation: Literal["clean", "noisy", "long"]
    multipliers: tuple[int, ...]
    kind: Literal["beats", "matches"] = "beats"
    tasks: tuple[str, ...] | None = None
    """The tasks the claim is about (None: every task of the reproduction)."""


REPO = "RePo (arXiv 2512.14391)"
DROPE = "DroPE (arXiv 2512.12167)"
FWPKM = "FwPKM (arXiv 2601.00671)"
REPO_METHODS = ("repo", "repo_cpt")

CLAIMS: tuple[Claim, ...] = (
    Claim(REPO, "retrieves better than RoPE in noisy contexts (RULER within 4K: +11 points)",
          REPO_METHODS, ("rope",), "noisy", (1,)),
    Claim(REPO, "is better than RoPE on linearised structured data (tables, graphs)",
          REPO_METHODS, ("rope",), "clean", (1,), tasks=("table_tokens", "graph_tokens")),
    Claim(REPO, "beats RoPE, NoPE and R2N1 beyond the training length (2L-8L)",
          REPO_METHODS, ("rope", "nope", "r2n1"), "clean", (2, 4, 8)),
    Claim(DROPE, "after dropping RoPE and recalibrating at L, matches the RoPE model at L",
          ("drope",), ("rope",), "clean", (1,), kind="matches"),
    Claim(DROPE, "beats RoPE and NoPE beyond the training length (2L-8L; PI, NTK and YaRN"
          " are not run here)", ("drope",), ("rope", "nope"), "clean", (2, 4, 8)),
    Claim(FWPKM, "trained at L, retrieves at 16L-32L where the same model without the memory"
          " fails", ("fwpkm",), ("rope",), "long", (16, 32)),
)  # fmt: skip
"""The claims ``benchmarks/reproduce.py`` checks, in the papers' words where they give numbers;
a claim whose methods were not run is skipped. Not here: FwPKM's reading passes (the
reproduction decodes with one; see ``benchmarks/results/fwpkm-investigation/``)."""


def per_seed(summary: dict[str, Any], method: str, evaluation: str, length: int) -> list[float]:
    """Accuracy (0..1) per seed of ``method`` at ``length`` on one evaluation, or [] when
    that evaluation lacks it."""
    key = str(length)
    if evaluation == "clean":
        cell = summary.get("accuracy", {}).get(method, {}).get(key)
        return list(cell["per_seed"]) if cell else []
    part = summary.get("noisy_context" if evaluation == "noisy" else "memory_lengths") or {}
    return list(part.get("accuracy", {}).get(method, {}).get(key, []))


def seed_scores(summary: dict[str, Any], method: str, claim: Claim) -> list[float] | None:
    """The claim's score per seed (mean over its lengths), or None when a length is missing."""
    base = summary["train_length"]
    columns = [per_seed(summary, method, claim.evaluation, m * base) for m in claim.multipliers]
    if not columns or any(not c for c in columns) or len({len(c) for c in columns}) != 1:
        return None
    return [statistics.mean(values) for values in zip(*columns, strict=True)]


def learned_at_l(summary: dict[str, Any], method: str) -> bool:
    """Whether ``method``'s mean clean accuracy at L is above copying some record's value."""
    values = per_seed(summary, method, "clean", summary["train_length"])
    return bool(values) and statistics.mean(values) > summary["chance"]["copy_any_needle"]


def verdict(kind: str, ours: list[float], theirs: list[float], floor: float = 0.0) -> Verdict:
    """The rule of the module docstring on two lists of per-seed scores; ``floor``: the
    copy-some-record chance level a held ``beats`` must exceed with every seed."""
    if kind == "matches":
        return "not held" if max(ours) < min(theirs) else "held"
    if min(ours) > max(theirs):
        return "held" if min(ours) > floor else "not held"
    if max(ours) <= min(theirs):
        return "not held"
    return "cannot tell"


def evaluate_claim(claim: Claim, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, comparator, task) the results hold: the two score lists (0..1)
    and the verdict."""
    rows = []
    for task, summary in results.items():
        if claim.tasks is not None and task not in claim.tasks:
            continue
        for method in claim.methods:
            ours = seed_scores(summary, method, claim)
            if ours is None:
                continue
            for other in claim.against:
                theirs = seed_scores(summary, other, claim)
                if theirs is None:
                    continue
                learned = learned_at_l(summary, method) or learned_at_l(summary, other)
                floor = summary["chance"]["copy_any_needle"]
                guessing = claim.kind == "beats" and min(ours) > max(theirs) and min(ours) <= floor
                rows.append({
                    "task": task, "method": method, "against": other,
                    "ours": ours, "theirs": theirs,
                    "verdict": verdict(claim.kind, ours, theirs, floor) if learned
                    else "cannot tell",
                    "learned": learned, "guessing": learned and guessing,
                })  # fmt: skip
    return rows


def spread(values: list[float], digits: int = 0) -> str:
    """Fractions as ``mean (min..max)`` in percent, the mean with ``digits`` decimals."""
    pct = [100 * v for v in values]
    return f"{statistics.mean(pct):.{digits}f} ({min(pct):.0f}..{max(pct):.0f})"


def claim_sentence(claim: Claim, rows: list[dict[str, Any]]) -> str:
    """The claim and its verdicts, counted over (task, method, comparator) comparisons."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    held, failed, open_ = counts["held"], counts["not held"], counts["cannot tell"]
    if held and failed:
        overall = "held in part"
    elif held or failed:
        overall = ("held" if held else "not held") + (" where decided" if open_ else "")
    else:
        overall = "cannot tell"
    parts = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v])
    return (
        f"{claim.paper} {claim.text}: **{overall}** at this scale ({parts} of {len(rows)}"
        " comparisons)."
    )


def claims_report(results: dict[str, dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown lines (a sentence and a table per claim) and the rows, for every claim whose
    methods the results hold."""
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    for claim in CLAIMS:
        rows = evaluate_claim(claim, results)
        if not rows:
            continue
        lengths = "/".join(f"{m}L" for m in claim.multipliers)
        lines += [
            "- " + claim_sentence(claim, rows),
            "",
            f"  | task | method | against | {claim.evaluation}, {lengths}: method | against |"
            " verdict |",
            "  |---|---|---|---|---|---|",
            *(f"  | {r['task']} | {r['method']} | {r['against']} | {spread(r['ours'])} |"
              f" {spread(r['theirs'])} | {r['verdict']}"
              + ("" if r["learned"] else " (neither learned the task)")
              + (" (above it, but not above the copy-some-record level)" if r["guessing"]
                 else "") + " |"
              for r in rows),
            "",
        ]  # fmt: skip
        records.append({"paper": claim.paper, "claim": claim.text, "kind": claim.kind,
                        "evaluation": claim.evaluation, "multipliers": list(claim.multipliers),
                        "sentence": claim_sentence(claim, rows), "rows": rows})  # fmt: skip
    return lines, records
