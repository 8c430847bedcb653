"""The interactive position viewer: one self-contained offline HTML page.

What RePo (Li et al., arXiv 2512.14391) learns is easiest to see as a scatter of token
index against assigned position, per layer and head (``spec/repo.md`` section 6). The page
written by :func:`write_position_viewer` shows

- a scatter of token index (x) against the position the layer assigned (y) for the layer
  and head chosen in two drop-downs, with the least-squares trend line of that head (its
  slope: position per token, 1 for RoPE's index) and the y = x line when the view is at the
  index's scale, a note explaining the position scale, and the query token (where the answer
  is predicted) marked by a vertical line;
- the context tokens as a strip; clicking a token or a point highlights it (and its two
  neighbours on each side) in both, and lists their text and positions;
- a *focus* mode that zooms the position axis to the inliers by the 1.5 x IQR rule
  (points in [Q1 - 1.5 IQR, Q3 + 1.5 IQR], plus 5% padding); points outside are drawn
  hollow at the edge;
- needle, value, key, distractor (and distractor value) and query tokens marked in colour
  when the input is a task sample.

RoPE and NoPE layers show their integer index. Everything (data as JSON, styles, hand
written JavaScript, inline SVG) is inside the file; the page makes no network request
(its Content-Security-Policy forbids any) and works on a phone-sized screen.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from longpos.analysis.collect import as_batch, collect_positions
from longpos.io import atomic_write_text, read_json_object
from longpos.viz._viewer_template import TEMPLATE

__all__ = [
    "DEFAULT_TEXT",
    "MARK_ROLES",
    "viewer_data",
    "render_viewer_html",
    "write_position_viewer",
    "sample_marks",
    "sample_tokens_text",
    "viz_positions_command",
    "plot_positions_png",
]

MARK_ROLES: tuple[str, ...] = ("value", "key", "distractor_value", "needle", "distractor", "query")
"""Token roles the viewer colours (the first listed wins when spans overlap)."""
DEFAULT_MAX_TOKENS = 2048

DEFAULT_TEXT = """| student | maths | physics | history |
|---------|-------|---------|---------|
| Amara   | 78    | 84      | 91      |
| Bo      | 92    | 88      | 73      |
| Chiara  | 65    | 71      | 80      |
| Dmitri  | 88    | 95      | 67      |

Question: what is the average physics score of the four students?
Answer:"""
"""A structured input (a Markdown score table, then a question about it): the kind of
context where learned positions tend to follow the structure (``spec/repo.md`` 6.5)."""


# --------------------------------------------------------------------------- inputs


def sample_marks(sample: Any) -> dict[str, list[int]]:
    """Token indices per role of a task sample: its needle spans plus ``query`` (the tokens
    after the context: the question and the answer prefix)."""
    marks: dict[str, set[int]] = {}
    n = len(sample.prompt_ids)
    for span in getattr(sample, "needles", []) or []:
        if span.token_start < 0:
            continue
        marks.setdefault(span.role, set()).update(range(span.token_start, min(span.token_end, n)))
    ctx = (getattr(sample, "meta", None) or {}).get("context_token_span")
    if ctx and 0 <= int(ctx[1]) < n:
        marks.setdefault("query", set()).update(range(int(ctx[1]), n))
    if n and not marks.get("query"):  # e.g. MQAR: the prompt ends with the asked key
        marks["query"] = {n - 1}
    return {role: sorted(idx) for role, idx in marks.items()}


def sample_tokens_text(sample: Any, tokenizer: Any = None) -> list[str]:
    """Per-token display text of a sample: symbolic names at token level, else each id
    decoded alone by ``tokenizer`` (or the sample's tokenizer name, e.g. ``byte``)."""
    ids = list(sample.prompt_ids)
    if getattr(sample, "level", "text") == "token":
        from longpos.tasks.symbolic import SymbolicVocab

        num = (getattr(sample, "meta", None) or {}).get("num_symbols", 512)
        vocab = SymbolicVocab(int(num))
        return [vocab.decode([i]) for i in ids]
    if tokenizer is None and getattr(sample, "tokenizer", None):
        from longpos.data.tokenizers import load_tokenizer

        try:
            tokenizer = load_tokenizer(sample.tokenizer)
        except (ValueError, OSError, ImportError):
            tokenizer = None
    return _decode_each(ids, tokenizer)


def _decode_each(ids: Sequence[int], tokenizer: Any) -> list[str]:
    if tokenizer is None:
        return [str(i) for i in ids]
    if getattr(tokenizer, "name", None) == "byte":
        return _byte_tokens(ids)
    return [tokenizer.decode([i]) for i in ids]


def _byte_tokens(ids: Sequence[int]) -> list[str]:
    """Byte ids as text: a multi-byte UTF-8 character is shown on its first byte and its
    continuation bytes as a middle dot; invalid bytes as ``\\xNN``; specials by name."""
    special = {256: "<pad>", 257: "<bos>", 258: "<eos>"}
    out: list[str] = []
    i = 0
    while i < len(ids):
        b = ids[i]
        if b in special or not 0 <= b < 256:
            out.append(special.get(b, f"<{b}>"))
            i += 1
            continue
        width = 1 if b < 0x80 else 2 if 0xC0 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else 4
        chunk = ids[i : i + width]
        try:
            if b >= 0x80 and (0x80 <= b < 0xC0 or b >= 0xF8):
                raise ValueError
            char = bytes(chunk).decode("utf-8")
        except ValueError:
            out.append(f"\\x{b:02x}")
            i += 1
            continue
        out.append(char)
        out.extend("\u00b7" for _ in range(len(chunk) - 1))
        i += len(chunk)
    return out


def _normalise_marks(marks: Mapping[str, Iterable[Any]] | None, n: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for role, items in (marks or {}).items():
        idx: set[int] = set()
        for item in items:
            if isinstance(item, tuple | list):  # (start, end) span, end exclusive
                start, end = int(item[0]), int(item[1])
                idx.update(range(max(0, start), min(end, n)))
            elif 0 <= int(item) < n:
                idx.add(int(item))
        out[str(role)] = sorted(idx)
    return out


def _resolve_input(inputs: Any) -> tuple[list[int], Any]:
    """(ids, sample or None) from ids / a tensor / a task sample."""
    if hasattr(inputs, "prompt_ids"):
        return list(inputs.prompt_ids), inputs
    ids = as_batch(inputs)
    if ids.shape[0] != 1:
        raise ValueError(f"the viewer shows one sequence; got a batch of {ids.shape[0]}")
    return ids[0].tolist(), None


# --------------------------------------------------------------------------- the page


def _round(x: float, digits: int = 6) -> float | int | None:
    """``x`` to ``digits`` significant digits (ints stay ints); None for NaN / inf."""
    if math.isnan(x) or math.isinf(x):
        return None
    r = float(f"{x:.{digits}g}")
    return int(r) if r == int(r) and abs(r) < 2**53 else r


def viewer_data(
    model: Any,
    inputs: Any,
    *,
    tokens_text: Sequence[str] | None = None,
    marks: Mapping[str, Iterable[Any]] | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    tokenizer: Any = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> dict[str, Any]:
    """Run ``model`` once on ``inputs`` and return the page's JSON data (see the module doc).

    ``inputs``: token ids ((T,), (1, T), a list) or a task sample (its ``prompt_ids``; its
    needle spans and query become ``marks`` unless given). ``tokens_text``: one display
    string per token (default: decoded with ``tokenizer`` / the sample's vocabulary, else
    the ids). ``marks``: role -> token indices or (start, end) spans; roles in
    :data:`MARK_ROLES` are coloured.
    """
    ids, sample = _resolve_input(inputs)
    if max_tokens is not None and len(ids) > max_tokens:
        raise ValueError(
            f"the input has {len(ids)} tokens, more than max_tokens={max_tokens}: the page "
            "would be slow; pass a shorter input or a larger max_tokens"
        )
    if tokens_text is None:
        tokens_text = (
            sample_tokens_text(sample, tokenizer)
            if sample is not None
            else _decode_each(ids, tokenizer)
        )
    tokens_text = [str(t) for t in tokens_text]
    if len(tokens_text) != len(ids):
        raise ValueError(f"tokens_text has {len(tokens_text)} entries for {len(ids)} tokens")
    if marks is None and sample is not None:
        marks = sample_marks(sample)
    _check_ids(ids, getattr(getattr(model, "config", None), "vocab_size", None), "the model")
    per_layer = collect_positions(model, torch.tensor([ids], dtype=torch.long))[0]
    layers = []
    for index, lp in enumerate(per_layer):
        is_index = not lp.learned and torch.equal(
            lp.values[0], torch.arange(len(ids), dtype=torch.float32)
        )
        heads = None
        if not is_index:
            heads = [[_round(float(x)) for x in row] for row in lp.values.tolist()]
        layers.append({
            "index": index,
            "technique": lp.technique,
            "learned": lp.learned,
            "heads": heads,
            "head_label": "kv head" if lp.learned else "positions",
        })  # fmt: skip
    default = next((i for i, layer in enumerate(layers) if layer["learned"]), 0)
    separate = sample is not None and getattr(sample, "level", None) == "token"
    separate = separate or any(len(t) > 1 for t in tokens_text[: min(64, len(tokens_text))])
    return {
        "format": "longpos-position-viewer",
        "version": 1,
        "title": title or "Assigned positions",
        "subtitle": subtitle or "",
        "tokens": tokens_text,
        "ids": ids,
        "marks": _normalise_marks(marks, len(ids)),
        "layers": layers,
        "default_layer": default,
        "separate_tokens": separate,
        "train_length": _train_length(model),
        "task": None
        if sample is None
        else {
            "name": sample.task,
            "level": sample.level,
            "depth": sample.depth,
            "answers": list(sample.answers),
            "length": sample.length,
            "seed": sample.seed,
        },
    }


def _train_length(model: Any) -> int | None:
    """The model's training length, shown on the page's position-scale note."""
    length = getattr(getattr(model, "config", None), "max_seq_len", None)
    return int(length) if isinstance(length, int) else None


def render_viewer_html(data: Mapping[str, Any]) -> str:
    """The HTML page for ``data`` (from :func:`viewer_data`); no external resources."""
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # Escape characters that could end the <script> element or start a comment in HTML.
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    payload = payload.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    title = html.escape(str(data.get("title", "Assigned positions")))
    fill = {"__TITLE__": title, "__DATA__": payload}
    return re.sub(r"__(TITLE|DATA)__", lambda m: fill[m.group(0)], TEMPLATE)


def write_position_viewer(
    model: Any,
    inputs: Any,
    out_path: str | Path,
    *,
    tokens_text: Sequence[str] | None = None,
    marks: Mapping[str, Iterable[Any]] | None = None,
    title: str | None = None,
    subtitle: str | None = None,
    tokenizer: Any = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> Path:
    """Run ``model`` on ``inputs`` and write the self-contained viewer page to ``out_path``.

    ``inputs`` may also be a string: it is encoded with ``tokenizer`` (default: the byte
    tokenizer). Other arguments as in :func:`viewer_data`. Returns the written path.
    """
    if isinstance(inputs, str):
        from longpos.data.tokenizers import load_tokenizer

        tokenizer = load_tokenizer(tokenizer if tokenizer is not None else "byte")
        inputs = tokenizer.encode(inputs)
        if not inputs:
            raise ValueError("the text is empty: nothing to show")
    data = viewer_data(
        model, inputs, tokens_text=tokens_text, marks=marks, title=title, subtitle=subtitle,
        tokenizer=tokenizer, max_tokens=max_tokens,
    )  # fmt: skip
    return atomic_write_text(out_path, render_viewer_html(data))


# --------------------------------------------------------------------------- PNG export


def plot_positions_png(
    model: Any,
    inputs: Any,
    out_png: str | Path,
    *,
    layer: int | None = None,
    heads: Sequence[int] | None = None,
    marks: Mapping[str, Iterable[Any]] | None = None,
    title: str | None = None,
) -> Path:
    """A static PNG of the viewer's scatter for one layer (default: the first learned one)
    and some of its heads (default: all, one colour each), for reports."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from longpos.io import atomic_write

    ids, sample = _resolve_input(inputs)
    if marks is None and sample is not None:
        marks = sample_marks(sample)
    per_layer = collect_positions(model, torch.tensor([ids], dtype=torch.long))[0]
    if layer is None:
        layer = next((i for i, lp in enumerate(per_layer) if lp.learned), 0)
    if not 0 <= layer < len(per_layer):
        raise ValueError(f"layer={layer} is out of range: the model has {len(per_layer)} layers")
    values = per_layer[layer].values  # (H_kv, T) or (1, T)
    chosen = list(heads) if heads is not None else list(range(values.shape[0]))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    x = list(range(len(ids)))
    for h in chosen:
        ax.scatter(x, values[h].tolist(), s=6, alpha=0.7, label=f"head {h}")
    norm = _normalise_marks(marks, len(ids))
    for role, color in (("value", "#e07b00"), ("query", "#8e44ad")):
        for i in norm.get(role, []):
            ax.axvline(i, color=color, alpha=0.15, lw=1)
    ax.set_xlabel("token index")
    ax.set_ylabel("assigned position")
    technique = per_layer[layer].technique
    ax.set_title(title or f"layer {layer} ({technique})")
    ax.grid(alpha=0.3)
    if 1 < len(chosen) <= 16:
        ax.legend(fontsize=7, ncol=4, markerscale=2)
    fig.tight_layout()
    out = Path(out_png)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- the command


def model_vocabulary(folder: str | Path, vocab_size: int) -> dict[str, Any]:
    """What the ids of a saved longpos model mean: ``{"kind": "symbolic", "options": {...}}``
    (with ``"task_options"`` per trained task when known) or ``{"kind": "text", "tokenizer":
    name}``, with ``"source"`` saying how it was found.

    Read with :func:`longpos.checkpoint.trained_on` (the checkpoint's metadata, else the
    training run's ``config.json`` next to the model folder); older checkpoints with
    ``extra["tokenizer"]`` / ``extra["data"]`` are read too. A model without any is taken as
    symbolic unless its vocabulary is exactly the byte tokenizer's (259).
    """
    from longpos.checkpoint import data_description, trained_on

    folder = Path(folder)
    extra = (read_json_object(folder / "config.json") or {}).get("extra") or {}
    info = trained_on(folder)
    source = "checkpoint" if isinstance(extra, dict) and "trained_on" in extra else str(
        folder.parent / "config.json")  # fmt: skip
    if info is None and isinstance(extra, dict):
        if extra.get("tokenizer"):
            return {"kind": "text", "tokenizer": extra["tokenizer"], "source": "checkpoint"}
        if isinstance(extra.get("data"), dict):
            info, source = data_description(extra["data"], None), "checkpoint"
    if info is not None and info.get("kind") == "text":
        return {"kind": "text", "tokenizer": info.get("tokenizer") or "byte", "source": source}
    if info is not None and info.get("kind") == "task":
        options = dict(info.get("options") or {})
        keep = {k: options[k] for k in ("num_symbols",) if k in options}
        return {"kind": "symbolic", "options": keep, "source": source,
                "task_options": dict(info.get("task_options") or {}),
                "tasks": list(info.get("tasks") or []), "all_options": options,
                "seq_len": info.get("seq_len")}  # fmt: skip
    if vocab_size == 259:
        return {"kind": "text", "tokenizer": "byte", "source": "vocab_size"}
    return {"kind": "symbolic", "options": {}, "source": "default"}


def _load_any_model(model_path: str) -> tuple[Any, dict[str, Any], str]:
    """(model, vocabulary, description) for a longpos checkpoint folder or a local Hugging
    Face model folder (stock or converted; needs ``longpos[hf]``)."""
    from longpos.checkpoint import CONFIG_FILE, load_model

    folder = Path(model_path)
    if not folder.exists():
        raise ValueError(f"--model {model_path}: no such folder")
    meta = read_json_object(folder / CONFIG_FILE) or {}
    if meta.get("format") == "longpos-model":
        model = load_model(folder)
        cfg = model.config
        vocab = model_vocabulary(folder, cfg.vocab_size)
        plan = ",".join(cfg.layer_plan())
        desc = f"{folder.name}: plan {plan}, {cfg.n_layers} layers x {cfg.n_heads} heads"
        return model, vocab, desc
    from longpos.checkpoint import not_a_model_hint

    hint = not_a_model_hint(folder)
    if hint:
        raise ValueError(f"--model {model_path} is not a model folder{hint}")
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(
            f"{folder} is neither a longpos checkpoint nor a Hugging Face model folder "
            "(no config.json)"
        )
    from longpos.eval.adapter import import_hf

    hf = import_hf(folder)
    evaluator = hf.load_eval_model(str(folder))  # local files only; the folder's tokenizer
    hf_model: Any = evaluator.model
    plan = ",".join(hf.layer_plan(hf_model))
    desc = f"{folder.name} (Hugging Face {hf_model.config.model_type}): plan {plan}"
    if evaluator.tokenizer is None:
        return hf_model, {"kind": "symbolic", "options": {}, "source": "hf (no tokenizer)"}, desc
    return hf_model, {"kind": "text", "tokenizer": evaluator.tokenizer, "source": "hf"}, desc


def viz_positions_command(
    model_path: str,
    out: str,
    text: str | None = None,
    task: str | None = None,
    length: int | None = None,
    seed: int = 0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Path:
    """``longpos viz positions --model PATH (--text TEXT | --task NAME --length N) --out FILE``.

    Loads the model, builds the input (text encoded with the model's tokenizer; a task
    sample at token level for models trained on the symbolic task vocabulary, at text
    level otherwise) and writes the viewer page. Text longer than ``max_tokens`` is cut
    to its first ``max_tokens`` tokens. Returns the written path.
    """
    if (text is None) == (task is None):
        raise ValueError("give exactly one of --text or --task")
    if task is not None and length is None:
        raise ValueError("--task needs --length (the sample's total length in tokens)")
    if text is not None and length is not None:
        raise ValueError("--length goes with --task; a --text input is shown whole")
    if not str(out).endswith((".html", ".htm")):
        raise ValueError(f"--out {out}: the viewer is an HTML file; use a .html name")
    if text is not None:
        text = _text_argument(text)
    model, vocab, desc = _load_any_model(model_path)
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    tok: Any = None
    if length is not None:
        from longpos.train.limits import check_eval_memory

        if length <= 0:
            raise ValueError(f"--length must be positive, got {length}")
        if length > MAX_VIEWER_TOKENS:
            raise ValueError(
                f"--length {length}: the viewer draws one point per token and shows at most "
                f"{MAX_VIEWER_TOKENS}; pick a shorter sample"
            )
        check_eval_memory(model.config, length, vocab["kind"] == "text")
    if text is not None:
        if vocab["kind"] == "symbolic":
            why = (
                "its folder has no tokenizer"
                if str(vocab["source"]).startswith("hf")
                else f"it was trained on the symbolic task vocabulary (found via {vocab['source']})"
            )
            raise ValueError(
                f"{model_path}: {why}, so it cannot read text; use --task NAME --length N "
                "(the task is then rendered at token level)"
            )
        from longpos.data.tokenizers import load_tokenizer

        tok = load_tokenizer(vocab["tokenizer"])
        ids = tok.encode(text)
        if not ids:
            raise ValueError("--text is empty: nothing to show")
        note = ""
        if len(ids) > max_tokens:
            note = f" (first {max_tokens} of {len(ids)} tokens)"
            ids = ids[:max_tokens]
        _check_ids(ids, vocab_size, model_path)
        return write_position_viewer(
            model, ids, out, tokenizer=tok, max_tokens=None,
            title="Assigned positions: text", subtitle=desc + note,
        )  # fmt: skip
    from longpos.tasks.base import generate_sample, get_task

    assert task is not None and length is not None
    if vocab["kind"] == "symbolic":
        trained = vocab.get("task_options") or {}
        options = dict(vocab.get("options") or {})
        if task in trained:
            options = dict(trained[task])
        elif task in (vocab.get("tasks") or []):  # older metadata: one shared dict
            names = {f.name for f in dataclasses.fields(get_task(task).config_cls)}
            options = {k: v for k, v in (vocab.get("all_options") or {}).items() if k in names}
        if "num_symbols" not in options and vocab_size is not None:
            options["num_symbols"] = max(8, min(512, vocab_size - 16))
        sample = generate_sample(task, length, seed=seed, level="token", **options)
    else:
        from longpos.data.tokenizers import load_tokenizer

        tok = load_tokenizer(vocab["tokenizer"])
        sample = generate_sample(task, length, tokenizer=tok, seed=seed)
    _check_ids(sample.prompt_ids, vocab_size, model_path)
    depth = "" if sample.depth is None else f", needle depth {sample.depth:.2f}"
    return write_position_viewer(
        model, sample, out, tokenizer=tok, max_tokens=max(max_tokens, len(sample.prompt_ids)),
        title=f"Assigned positions: {task} ({sample.level} level, {sample.length} tokens)",
        subtitle=f"{desc}; seed {seed}{depth}; answer {', '.join(sample.answers)}",
    )  # fmt: skip


MAX_VIEWER_TOKENS = 16384
"""The longest task sample ``viz positions --length`` draws (the page has one point per token)."""


def _text_argument(text: str) -> str:
    """``--text``: the text itself, or the contents of the UTF-8 file it names."""
    path = Path(text) if len(text) < 4096 and "\n" not in text else None
    if path is not None and path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"--text {path}: the file is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                f"at offset {exc.start}); convert it to UTF-8"
            ) from None
        print(f"--text: reading the file {path} ({len(text)} characters)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        shown = f"{ord(bad) - 0xDC00:#04x}" if 0xDC80 <= ord(bad) <= 0xDCFF else repr(bad)
        raise ValueError(
            f"--text is not valid UTF-8 (byte {shown} at character {exc.start}): pass UTF-8 "
            "text, or the name of a UTF-8 file"
        ) from None
    return text


def _check_ids(ids: Sequence[int], vocab_size: int | None, model_path: str) -> None:
    if vocab_size is not None and ids and (max(ids) >= vocab_size or min(ids) < 0):
        raise ValueError(
            f"the input uses token ids up to {max(ids)} but {model_path} has vocab_size="
            f"{vocab_size}: the tokenizer or task vocabulary does not match the model"
        )
