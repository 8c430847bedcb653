"""The reproduction's claim verdicts: the rule on per-seed scores, missing data, tasks no
model learned, and the sentence's counts."""

import pytest

from longpos.analysis.claims import CLAIMS, Claim, claims_report, evaluate_claim, verdict


def summary(clean: dict[str, dict[int, list[float]]], noisy=None, long=None) -> dict:
    """A reproduction task summary with the given per-seed accuracies (L = 64)."""
    return {
        "train_length": 64,
        "chance": {"copy_any_needle": 0.125, "uniform_value": 1 / 32},
        "accuracy": {m: {str(n): {"per_seed": v} for n, v in row.items()}
                     for m, row in clean.items()},
        "noisy_context": {"accuracy": {m: {str(n): v for n, v in row.items()}
                                       for m, row in (noisy or {}).items()}},
        "memory_lengths": {"accuracy": {m: {str(n): v for n, v in row.items()}
                                        for m, row in (long or {}).items()}},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "ours", "theirs", "expected"),
    [
        ("beats", [0.9, 0.8, 0.7], [0.6, 0.5, 0.69], "held"),
        ("beats", [0.9, 0.8, 0.6], [0.6, 0.5, 0.7], "cannot tell"),
        ("beats", [0.5, 0.4, 0.6], [0.6, 0.7, 0.8], "not held"),
        ("beats", [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], "not held"),  # equal does not beat
        ("matches", [0.5, 0.55, 0.58], [0.6, 0.7, 0.8], "not held"),
        ("matches", [0.5, 0.6, 0.58], [0.6, 0.7, 0.8], "held"),
    ],
)
def test_verdict_rule(kind, ours, theirs, expected):
    assert verdict(kind, ours, theirs) == expected


def test_beating_the_comparator_at_guessing_level_is_not_held():
    assert verdict("beats", [0.10, 0.12, 0.2], [0.0, 0.02, 0.05], floor=0.125) == "not held"
    assert verdict("beats", [0.13, 0.15, 0.2], [0.0, 0.02, 0.05], floor=0.125) == "held"
    claim = Claim("P", "beats far", ("fwpkm",), ("rope",), "long", (16,))
    task = summary({"fwpkm": {64: [1, 1, 1]}, "rope": {64: [1, 1, 1]}},
                   long={"fwpkm": {1024: [0.1, 0.05, 0.08]}, "rope": {1024: [0, 0, 0.01]}})  # fmt: skip
    (row,) = evaluate_claim(claim, {"mqar": task})
    assert row["verdict"] == "not held" and row["guessing"]


def test_claim_uses_the_mean_over_its_lengths_per_seed():
    claim = Claim("P", "beats beyond L", ("repo",), ("rope",), "clean", (2, 4))
    task = summary({
        "repo": {64: [1, 1, 1], 128: [0.9, 0.1, 0.8], 256: [0.7, 0.9, 0.6]},
        "rope": {64: [1, 1, 1], 128: [0.2, 0.3, 0.1], 256: [0.0, 0.1, 0.2]},
    })  # fmt: skip
    (row,) = evaluate_claim(claim, {"mqar": task})
    assert row["ours"] == pytest.approx([0.8, 0.5, 0.7])
    assert row["theirs"] == pytest.approx([0.1, 0.2, 0.15])
    assert row["verdict"] == "held"


def test_tasks_no_model_learned_cannot_tell_and_missing_methods_are_skipped():
    claim = Claim("P", "beats at L", ("repo", "repo_cpt"), ("rope",), "clean", (1,))
    guessing = summary({"repo": {64: [0.2, 0.1, 0.05]}, "rope": {64: [0.0, 0.05, 0.1]}})
    (row,) = evaluate_claim(claim, {"graph_tokens": guessing})  # no repo_cpt run: skipped
    assert row["verdict"] == "cannot tell" and not row["learned"]


def test_noisy_and_long_evaluations_and_the_report():
    task = summary(
        {"repo": {64: [1, 1, 1]}, "rope": {64: [1, 0.9, 1]}, "fwpkm": {64: [1, 1, 1]}},
        noisy={"repo": {64: [0.9, 0.8, 0.9]}, "rope": {64: [0.5, 0.6, 0.4]}},
        long={"fwpkm": {1024: [0.9, 0.8, 0.7], 2048: [0.5, 0.6, 0.7]},
              "rope": {1024: [0.0, 0.1, 0.0], 2048: [0.0, 0.0, 0.0]}},
    )  # fmt: skip
    lines, records = claims_report({"mqar": task})
    by_text = {r["claim"]: r for r in records}
    noisy = next(r for c, r in by_text.items() if "noisy" in c)
    assert [row["verdict"] for row in noisy["rows"]] == ["held"]
    memory = next(r for r in records if r["paper"].startswith("FwPKM"))
    assert memory["rows"][0]["verdict"] == "held"
    assert "**held** at this scale (1 held of 1 comparisons)" in memory["sentence"]
    # the structured-data claim names only the table and graph tasks: absent from mqar
    assert not any("structured" in r["claim"] for r in records)
    assert any(line.startswith("- RePo") for line in lines)


@pytest.mark.parametrize(
    ("verdicts", "overall"),
    [
        (["held", "held"], "**held**"),
        (["held", "cannot tell"], "**held where decided**"),
        (["not held", "cannot tell"], "**not held where decided**"),
        (["not held"], "**not held**"),
        (["held", "not held", "cannot tell"], "**held in part**"),
        (["cannot tell"], "**cannot tell**"),
    ],
)
def test_the_sentence_sums_the_verdicts(verdicts, overall):
    from longpos.analysis.claims import claim_sentence

    sentence = claim_sentence(CLAIMS[0], [{"verdict": v} for v in verdicts])
    assert f"{overall} at this scale" in sentence
    assert f"of {len(verdicts)} comparisons" in sentence


def test_every_claim_is_decidable_from_a_full_reproduction():
    """Each claim names known methods and tasks, compares disjoint method sets, and asks only
    for lengths the reproduction evaluates (clean 1-8L, noisy L and 4L, FwPKM 16L and 32L):
    with every method held at 90% against 10% it gets a verdict on every task it names."""
    from longpos.demo import ALL_METHODS, DEMO_TASKS

    lengths = {"clean": (1, 2, 4, 8), "noisy": (1, 4), "long": (16, 32)}
    for claim in CLAIMS:
        assert set(claim.methods) | set(claim.against) <= set(ALL_METHODS)
        assert not set(claim.methods) & set(claim.against)
        assert claim.tasks is None or set(claim.tasks) <= set(DEMO_TASKS)
        assert claim.multipliers and set(claim.multipliers) <= set(lengths[claim.evaluation])
        scores = {m: [0.9] * 3 for m in claim.methods} | {m: [0.1] * 3 for m in claim.against}
        rows = {m: {64 * k: v for k in lengths[claim.evaluation]} for m, v in scores.items()}
        clean = {m: {64 * k: v for k in (1, 2, 4, 8)} for m, v in scores.items()}
        tasks = claim.tasks or ("mqar",)
        results = {t: summary(clean, noisy=rows, long=rows) for t in tasks}
        got = evaluate_claim(claim, results)
        assert len(got) == len(tasks) * len(claim.methods) * len(claim.against)
        assert {r["verdict"] for r in got} == {"held"}  # 90% beats and matches 10%
