"""Attention mass on the needle, on distractors and on the recent (query) tokens.

Protocol: longpos (``spec/repo.md`` section 7.3); the RePo paper (arXiv 2512.14391) reports
that RePo puts more attention on a distant needle and less on the most recent tokens than
RoPE, with an unpublished protocol, so absolute values are not comparable with its numbers.

Setting: one eager forward with attention probabilities; the query position i* is the last
prompt token (the one that predicts the first answer token). Token sets:

- N (needle): the tokens of the queried needle's value (``role="value"`` spans of the sample
  that lie inside a ``role="needle"`` span; all value spans if there is no needle span);
- D (distractors): the tokens of ``role="distractor"`` spans, minus N;
- R (recent): the last ``recent`` (default 32) prompt tokens, i* included: the question and
  answer prefix.

Per layer l and head h, with alpha the attention row of i*:

- m_N = sum_{j in N} alpha_{i*, j}, likewise m_D and m_R;
- needle mass ratio rho = m_N / (|N| / (i* + 1)): the mass relative to uniform attention
  over the i* + 1 visible tokens (rho_D likewise for D).

Reported per model: rho averaged over heads, then over a layer range (the RePo layers of the
model, or the same range for every compared model), then over samples, with mean and 95% CI
(normal approximation, 1.96 standard errors); raw m_N, m_D and m_R summed over heads and
averaged over the same layers and the samples; and per-layer curves of all of them. The
needle depth of each sample is recorded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longpos.analysis.collect import as_batch, layer_techniques

__all__ = [
    "AttentionSpans",
    "AttentionMass",
    "niah_spans",
    "attention_mass",
    "AttentionReport",
    "analyze_attention",
    "compare_attention",
    "default_layer_range",
    "plot_attention_mass",
    "mean_ci",
    "attention_markdown",
]

DEFAULT_RECENT = 32


@dataclass
class AttentionSpans:
    """The query position and the token sets of one sample (token indices into the prompt)."""

    query_index: int
    needle: list[int]
    recent: list[int]
    distractor: list[int] = field(default_factory=list)
    depth: float | None = None

    def __post_init__(self) -> None:
        if self.query_index < 0:
            raise ValueError(f"query_index must be >= 0, got {self.query_index}")
        for name in ("needle", "recent", "distractor"):
            bad = [j for j in getattr(self, name) if not 0 <= j <= self.query_index]
            if bad:
                raise ValueError(
                    f"{name} tokens {bad[:5]} are not visible from the query position "
                    f"{self.query_index} (must be in [0, {self.query_index}])"
                )
        if not self.needle:
            raise ValueError("the needle span is empty: the sample has no needle value tokens")


def _span_tokens(spans: Iterable[Any]) -> list[int]:
    out: set[int] = set()
    for s in spans:
        out.update(range(int(s.token_start), int(s.token_end)))
    return sorted(out)


def niah_spans(sample: Any, recent: int = DEFAULT_RECENT) -> AttentionSpans:
    """N, D, R and i* of a task :class:`~longpos.tasks.base.Sample` (rules in the module doc)."""
    if recent < 1:
        raise ValueError(f"recent must be >= 1 token, got {recent}")
    ids = list(sample.prompt_ids)
    i_star = len(ids) - 1
    needles = list(getattr(sample, "needles", []) or [])
    values = [s for s in needles if s.role == "value"]
    queried = [s for s in needles if s.role == "needle"]
    if queried:
        inside = [
            v
            for v in values
            if any(q.token_start <= v.token_start and v.token_end <= q.token_end for q in queried)
        ]
        values = inside or values
    needle = [j for j in _span_tokens(values) if j <= i_star]
    if not needle:
        raise ValueError(
            f"sample of task {getattr(sample, 'task', '?')!r} has no needle value span "
            "(role='value'); attention mass needs a needle-in-a-haystack style task"
        )
    nset = set(needle)
    distractor = [
        j
        for j in _span_tokens(s for s in needles if s.role == "distractor")
        if j not in nset and j <= i_star
    ]
    rec = list(range(max(0, i_star + 1 - recent), i_star + 1))
    return AttentionSpans(i_star, needle, rec, distractor, getattr(sample, "depth", None))


@dataclass
class AttentionMass:
    """Per-head masses of one layer (arrays of shape (H,))."""

    m_needle: np.ndarray
    m_recent: np.ndarray
    m_distractor: np.ndarray
    rho: np.ndarray
    rho_distractor: np.ndarray


def attention_mass(attn: Any, spans: AttentionSpans) -> AttentionMass:
    """Masses at the query row of one layer's attention.

    ``attn``: (H, T_q, T_k) probabilities (row ``spans.query_index`` is used), or the query
    row itself as (H, T_k).
    """
    a = torch.as_tensor(attn).detach().to("cpu", torch.float64)
    if a.dim() == 3:
        a = a[:, spans.query_index, :]  # (H, T_k)
    if a.dim() != 2:
        raise ValueError(f"attention must be (H, T_q, T_k) or (H, T_k); got {tuple(a.shape)}")
    visible = spans.query_index + 1
    if a.shape[1] < visible:
        raise ValueError(f"attention row has {a.shape[1]} keys but i* + 1 = {visible}")
    row = a.numpy()

    def mass(idx: list[int]) -> np.ndarray:
        return row[:, idx].sum(axis=1) if idx else np.zeros(row.shape[0])

    m_n, m_r, m_d = mass(spans.needle), mass(spans.recent), mass(spans.distractor)
    rho = m_n / (len(spans.needle) / visible)
    rho_d = (
        m_d / (len(spans.distractor) / visible) if spans.distractor else np.full_like(m_d, np.nan)
    )
    return AttentionMass(m_n, m_r, m_d, rho, rho_d)


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (1.96 standard errors; NaN with fewer than 2 values)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size < 2:
        return float(v.mean()), float("nan")
    return float(v.mean()), float(1.96 * v.std(ddof=1) / math.sqrt(v.size))


def default_layer_range(model: Any, n_layers: int | None = None) -> list[int]:
    """The model's RePo layers, else ``[L // 3, L)`` (the library's default RePo range)."""
    names = layer_techniques(model)
    if names is not None:
        repo = [i for i, t in enumerate(names) if t == "repo"]
        if repo:
            return repo
        n_layers = len(names)
    if n_layers is None:
        cfg = getattr(model, "config", None)
        n_layers = getattr(cfg, "n_layers", None) or getattr(cfg, "num_hidden_layers", None)
    if not n_layers:
        raise ValueError("cannot tell the model's number of layers: pass layers=[...]")
    return list(range(n_layers // 3, n_layers))


@dataclass
class AttentionReport:
    """Attention masses of one model over samples (arrays (S, L, H): sample, layer, head)."""

    name: str
    layers: list[int]
    """The layer range the scalar summaries average over."""
    m_needle: np.ndarray
    m_recent: np.ndarray
    m_distractor: np.ndarray
    rho: np.ndarray
    depths: list[float | None]
    lengths: list[int]
    tasks: list[str] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return int(self.rho.shape[1])

    def per_sample(self) -> dict[str, np.ndarray]:
        """Per-sample scalars (S,): rho averaged over heads then layers; masses summed over
        heads then averaged over layers."""
        idx = self.layers
        return {
            "rho": self.rho[:, idx, :].mean(axis=2).mean(axis=1),
            "m_needle": self.m_needle[:, idx, :].sum(axis=2).mean(axis=1),
            "m_recent": self.m_recent[:, idx, :].sum(axis=2).mean(axis=1),
            "m_distractor": self.m_distractor[:, idx, :].sum(axis=2).mean(axis=1),
        }

    def per_layer(self) -> dict[str, list[float]]:
        """Per-layer curves (L,), averaged over samples: rho (head mean), masses (head sum)."""
        return {
            "rho": self.rho.mean(axis=2).mean(axis=0).tolist(),
            "m_needle": self.m_needle.sum(axis=2).mean(axis=0).tolist(),
            "m_recent": self.m_recent.sum(axis=2).mean(axis=0).tolist(),
            "m_distractor": self.m_distractor.sum(axis=2).mean(axis=0).tolist(),
        }

    def summary(self) -> dict[str, Any]:
        per = self.per_sample()
        out: dict[str, Any] = {"name": self.name, "layers": list(self.layers)}
        for key, vals in per.items():
            mean, ci = mean_ci(vals.tolist())
            out[key] = mean
            out[f"{key}_ci95"] = ci
        out["n_samples"] = int(self.rho.shape[0])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "longpos",
            **self.summary(),
            "per_layer": self.per_layer(),
            "depths": list(self.depths),
            "lengths": list(self.lengths),
            "tasks": list(self.tasks),
        }


def _attention_rows(model: Any, ids: torch.Tensor, i_star: int) -> list[torch.Tensor]:
    """Per layer, the attention row of i*: (H, T_k) float64 on the CPU."""
    if hasattr(model, "blocks"):  # a longpos model
        out = model(ids, return_attention=True)
        atts = out.attentions
    else:  # Hugging Face style (eager attention)
        out = model(ids, output_attentions=True)
        atts = getattr(out, "attentions", None)
    if not atts:
        raise ValueError(
            f"{type(model).__name__} returned no attention probabilities (use eager attention)"
        )
    return [a[0, :, i_star, :].detach().to("cpu", torch.float64) for a in atts]


@torch.no_grad()
def analyze_attention(
    model: Any,
    samples: Iterable[Any],
    *,
    name: str = "model",
    layers: Sequence[int] | None = None,
    recent: int = DEFAULT_RECENT,
) -> AttentionReport:
    """Attention masses of ``model`` on task samples (needle tasks; see the module doc)."""
    if hasattr(model, "eval"):
        model.eval()
    try:
        device = next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        device = torch.device("cpu")
    m_n, m_r, m_d, rho, depths, lengths, tasks = [], [], [], [], [], [], []
    for sample in samples:
        spans = niah_spans(sample, recent)
        ids = as_batch(sample.prompt_ids).to(device)
        rows = _attention_rows(model, ids, spans.query_index)
        masses = [attention_mass(r, spans) for r in rows]
        m_n.append(np.stack([m.m_needle for m in masses]))  # (L, H)
        m_r.append(np.stack([m.m_recent for m in masses]))
        m_d.append(np.stack([m.m_distractor for m in masses]))
        rho.append(np.stack([m.rho for m in masses]))
        depths.append(spans.depth)
        lengths.append(len(sample.prompt_ids))
        tasks.append(getattr(sample, "task", ""))
    if not rho:
        raise ValueError("no samples given")
    n_layers = rho[0].shape[0]
    chosen = list(layers) if layers is not None else default_layer_range(model, n_layers)
    bad = [i for i in chosen if not 0 <= i < n_layers]
    if bad or not chosen:
        raise ValueError(f"layers {bad or chosen} out of range for a {n_layers}-layer model")
    return AttentionReport(
        name, chosen, np.stack(m_n), np.stack(m_r), np.stack(m_d), np.stack(rho),
        depths, lengths, tasks,
    )  # fmt: skip


def plot_attention_mass(
    reports: Sequence[AttentionReport], out_png: str | Path, title: str | None = None
) -> Path:
    """Per-layer curves of rho, m_N and m_R (one line per model) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longpos.io import atomic_write

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = [
        ("rho", "needle mass ratio rho (head mean)"),
        ("m_needle", "needle mass m_N (head sum)"),
        ("m_recent", "recent mass m_R (head sum)"),
    ]
    for rep in reports:
        curves = rep.per_layer()
        summary = rep.summary()
        label = f"{rep.name} (rho {summary['rho']:.2f})"
        x = list(range(rep.n_layers))
        for ax, (key, _) in zip(axes, panels, strict=True):
            ax.plot(x, curves[key], marker="o", label=label)
    if reports:
        lo, hi = min(reports[0].layers), max(reports[0].layers)
        for ax in axes:
            ax.axvspan(lo - 0.5, hi + 0.5, color="0.92", zorder=0)
    for ax, (key, ylabel) in zip(axes, panels, strict=True):
        ax.set_xlabel("layer")
        ax.set_xticks(range(max((r.n_layers for r in reports), default=0)))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if key == "rho":
            ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.suptitle(title or "Attention mass at the query token (protocol: longpos; shaded: "
                 "averaged layers)")  # fmt: skip
    fig.tight_layout()
    out = Path(out_png)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return out


def compare_attention(
    models: Mapping[str, Any],
    samples: Sequence[Any],
    out_png: str | Path | None = None,
    *,
    layers: Sequence[int] | None = None,
    recent: int = DEFAULT_RECENT,
) -> dict[str, AttentionReport]:
    """Analyse several models (e.g. ``{"rope": m1, "repo": m2}``) on the same samples.

    Every model is averaged over the same layer range: ``layers`` or the RePo layers of the
    first model that has some (else ``[L // 3, L)``). Writes the side-by-side PNG if asked.
    """
    if not models:
        raise ValueError("no models given")
    if layers is None:
        for model in models.values():
            names = layer_techniques(model)
            if names and "repo" in names:
                layers = [i for i, t in enumerate(names) if t == "repo"]
                break
        else:
            layers = default_layer_range(next(iter(models.values())))
    reports = {
        name: analyze_attention(model, samples, name=name, layers=layers, recent=recent)
        for name, model in models.items()
    }
    if out_png is not None:
        plot_attention_mass(list(reports.values()), out_png)
    return reports


def attention_markdown(reports: Mapping[str, AttentionReport]) -> str:
    """A Markdown table of the scalar summaries (mean +- 95% CI)."""
    from longpos.viz.markdown import markdown_table

    def pm(mean: float, ci: float) -> str:
        return f"{mean:.3f}" if math.isnan(ci) else f"{mean:.3f} ± {ci:.3f}"

    rows = []
    for name, rep in reports.items():
        s = rep.summary()
        rows.append([
            name, str(s["n_samples"]), f"{min(rep.layers)}-{max(rep.layers)}",
            pm(s["rho"], s["rho_ci95"]), pm(s["m_needle"], s["m_needle_ci95"]),
            pm(s["m_distractor"], s["m_distractor_ci95"]), pm(s["m_recent"], s["m_recent_ci95"]),
        ])  # fmt: skip
    head = ["model", "samples", "layers", "rho", "m_N", "m_D", "m_R"]
    return markdown_table(head, rows, align="lrrrrrr")
