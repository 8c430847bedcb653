"""The released reference checkpoints load as longpos models (issue 19).

Tiny folders are built in code in each reference layout: Sakana's RePo fork of OLMo2
(``model_type: olmo2`` + ``pe_config``, per-layer ``self_attn.gate_map`` / ``content_map`` /
``final_map``) and DroPE's ``<base>_drope`` types (``attention_type``, optional
``softmax_scale``, norm weights in the attention modules). Loaded models are compared with the
stock transformers model carrying the same weights whose RePo / DroPE attention layers are
replaced by hand-written modules following the reference's formulas (written here, not taken
from longpos or from the reference code).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hf_helpers import clone_model, logits, tiny_model, token_ids
from safetensors.torch import save_file
from torch import nn

import longpos.hf as lh
from longpos.hf.convert_command import ConvertArgs
from longpos.hf.convert_command import run as run_convert
from longpos.hf.reference import (
    detect_reference_layout,
    load_reference_model,
    mapping_report,
    reference_config,
    repo_layers,
)

N_LAYERS = 3


# ------------------------------------------------------------------ folder writing
def legacy_config(model: nn.Module, **extra) -> dict:
    """The model's config as a transformers 4.x folder writes it (rope_theta, torch_dtype)."""
    data = model.config.to_dict()
    rope = data.pop("rope_parameters")
    data.pop("dtype", None)
    data.update(rope_theta=rope["rope_theta"], rope_scaling=None, torch_dtype="float32")
    data["transformers_version"] = "4.52.4"
    data.update(extra)
    return data


def write_folder(folder: Path, config: dict, tensors: dict, shards: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"))
        return folder
    names = sorted(tensors)
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(folder / file))
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def stock_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.state_dict())


# ------------------------------------------------------------------ RePo reference
REPO_MODULES = {  # the fork's modules per mode: name -> (in, out) as multiples of (d, d/8, H)
    "swigluex_multihead": {"gate_map": ("d", "dp"), "content_map": ("d", "dp"),
                           "final_map": ("dp", "H")},
    "multihead_continuous": {"dynamic_map": ("d", "H")},
    "continuous": {"dynamic_map": ("d", "1")},
}  # fmt: skip


def repo_weights(model: nn.Module, mode: str, layers: list[int], seed: int = 5) -> dict:
    cfg = model.config
    sizes = {"d": cfg.hidden_size, "dp": cfg.hidden_size // 8, "H": cfg.num_attention_heads,
             "1": 1}  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in layers:
        for name, (a, b) in REPO_MODULES[mode].items():
            shape = (sizes[b], sizes[a])  # nn.Linear weight: (out, in)
            out[f"model.layers.{i}.self_attn.{name}.weight"] = torch.randn(shape, generator=g) * 0.7
    return out


def repo_folder(tmp_path: Path, mode: str = "swigluex_multihead", *, start: int = 1,
                layer_ids: str = "", kv: int = 4, pe_extra: dict | None = None,
                seed: int = 0, shards: int = 1, name: str = "repo") -> tuple[Path, nn.Module, dict]:  # fmt: skip
    """A folder in the layout of Sakana's RePo fork; returns it, the stock model with the same
    backbone weights, and the RePo tensors."""
    model = tiny_model("olmo2", seed=seed, num_key_value_heads=kv)
    ids = [int(v) for v in layer_ids.split(",")] if layer_ids else list(range(N_LAYERS))
    layers = [i for i in ids if i >= start]
    extra = repo_weights(model, mode, layers) if mode in REPO_MODULES else {}
    pe = {
        "dynamic_pe_mode": mode,
        "dynmaic_pe_start_layer": start,
        "dynamic_pe_start_layer": start,
        "dynamic_pe_layer_ids": layer_ids,
        "dynmaic_pe_layer_ids": layer_ids,
        "dynamic_pe_init_pdrop": 1.0,
        "dynamic_pe_dropout_anneal_step": 0,
    }
    pe.update(pe_extra or {})
    config = legacy_config(model, pe_config=pe, architectures=["Olmo2ForCausalLM"])
    folder = write_folder(tmp_path / name, config, {**stock_tensors(model), **extra}, shards)
    return folder, model, extra


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class ForkRePoAttention(nn.Module):
    """The fork's OLMo2 attention in a RePo layer, written from its formulas: full-width q/k
    norms, z = final(SiLU(gate(h)) * content(h)) per attention head (or dynamic_map(h)),
    cos/sin of z * inv_freq rotating q and k of that head, causal softmax(q k^T / sqrt(D)) v.
    ``h`` is the attention's input (OLMo2: the raw residual)."""

    def __init__(self, stock, weights: dict[str, torch.Tensor], mode: str, inv_freq, rotate=True):
        super().__init__()
        self.stock, self.w, self.mode, self.inv_freq, self.rotate = (
            stock,
            weights,
            mode,
            inv_freq,
            rotate,
        )

    def positions(self, h):  # (B, T, C) -> (B, H or 1, T)
        w = self.w
        if self.mode == "swigluex_multihead":
            r = F.silu(h @ w["gate_map"].T) * (h @ w["content_map"].T)
            z = r @ w["final_map"].T
        else:
            z = h @ w["dynamic_map"].T
        return z.transpose(1, 2)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **kwargs):
        a, h = self.stock, hidden_states
        bsz, seq, _ = h.shape
        q = a.q_norm(a.q_proj(h)).view(bsz, seq, -1, a.head_dim).transpose(1, 2)
        k = a.k_norm(a.k_proj(h)).view(bsz, seq, -1, a.head_dim).transpose(1, 2)
        v = a.v_proj(h).view(bsz, seq, -1, a.head_dim).transpose(1, 2)
        if self.rotate:
            z = self.positions(h)  # (B, H|1, T)
            angles = z[..., None] * self.inv_freq  # (B, H|1, T, D/2)
            emb = torch.cat((angles, angles), dim=-1)
            cos, sin = emb.cos(), emb.sin()
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=a.head_dim**-0.5)
        return a.o_proj(out.transpose(1, 2).reshape(bsz, seq, -1)), None


def fork_reference(stock: nn.Module, extra: dict, mode: str, layers: list[int], rotate=True):
    inv_freq = stock.model.rotary_emb.inv_freq
    for i in layers:
        prefix = f"model.layers.{i}.self_attn."
        weights = {
            k[len(prefix) : -len(".weight")]: v for k, v in extra.items() if k.startswith(prefix)
        }
        layer = stock.model.layers[i]
        layer.self_attn = ForkRePoAttention(layer.self_attn, weights, mode, inv_freq, rotate)
    return stock


# ------------------------------------------------------------------ DroPE reference
def drope_folder(tmp_path: Path, family: str = "llama", attention_type: str = "qk_norm_nope", *,
                 softmax_scale=None, with_scale: bool = False, norms: str = "qk",
                 name: str = "drope", tied: bool = False) -> tuple[Path, nn.Module, dict]:  # fmt: skip
    """A folder in DroPE's layout (``<family>_drope``); returns it, the stock model with the
    same backbone weights, and the norm tensors. ``tied``: tied embeddings (SmolLM), written
    without ``lm_head.weight`` as ``save_pretrained`` does."""
    model = tiny_model(family, seed=2, tie_word_embeddings=tied)
    cfg = model.config
    g = torch.Generator().manual_seed(7)
    extra = {}
    for i in range(N_LAYERS):
        for which, heads in (("q", cfg.num_attention_heads), ("k", cfg.num_key_value_heads)):
            if which in norms:
                gain = 1 + 0.5 * torch.randn(heads * cfg.head_dim, generator=g)
                extra[f"model.layers.{i}.self_attn.{which}_norm.weight"] = gain
    config = legacy_config(
        model,
        model_type=f"{family}_drope",
        attention_type=attention_type,
        architectures=[f"DroPE{type(model).__name__}"],
        auto_map={"AutoConfig": "drope.DroPEConfig", "AutoModelForCausalLM": "drope.DroPEModel"},
    )
    if with_scale:
        config["softmax_scale"] = softmax_scale
    backbone = stock_tensors(model)
    if tied:
        del backbone["lm_head.weight"]
    folder = write_folder(tmp_path / name, config, {**backbone, **extra})
    return folder, model, extra


class DroPEReferenceAttention(nn.Module):
    """DroPE's attention from its formulas: optional full-width ``torch.nn.RMSNorm`` on the
    q / k projections (eps = rms_norm_eps), no rotation, logit scale ``scale`` (the
    reference's absolute ``softmax_scale``, default 1/sqrt(D)), causal, GQA."""

    def __init__(self, stock, q_gain, k_gain, scale, eps):
        super().__init__()
        self.stock, self.scale = stock, scale
        self.q_norm = self.k_norm = None
        if q_gain is not None:
            self.q_norm = nn.RMSNorm(q_gain.numel(), eps=eps)
            self.q_norm.weight.data.copy_(q_gain)
        if k_gain is not None:
            self.k_norm = nn.RMSNorm(k_gain.numel(), eps=eps)
            self.k_norm.weight.data.copy_(k_gain)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, **kwargs):
        a, h = self.stock, hidden_states
        bsz, seq, _ = h.shape
        q, k, v = a.q_proj(h), a.k_proj(h), a.v_proj(h)
        q = self.q_norm(q) if self.q_norm is not None else q
        k = self.k_norm(k) if self.k_norm is not None else k
        q, k, v = (t.view(bsz, seq, -1, a.head_dim).transpose(1, 2) for t in (q, k, v))
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return a.o_proj(out.transpose(1, 2).reshape(bsz, seq, -1)), None


def drope_reference(stock: nn.Module, extra: dict, attention_type: str, scale=None):
    applied = {"nope": "", "qk_norm_nope": "qk", "q_norm_nope": "q", "k_norm_nope": "k"}
    used = applied[attention_type]
    for i, layer in enumerate(stock.model.layers):
        q = extra.get(f"model.layers.{i}.self_attn.q_norm.weight") if "q" in used else None
        k = extra.get(f"model.layers.{i}.self_attn.k_norm.weight") if "k" in used else None
        attn = layer.self_attn
        s = scale if scale is not None else attn.head_dim**-0.5
        layer.self_attn = DroPEReferenceAttention(attn, q, k, s, stock.config.rms_norm_eps)
    return stock


# ------------------------------------------------------------------ shared checks
def check_cache(model: nn.Module) -> None:
    """Chunked prefill + token-by-token decoding equal the full forward (float64 weights; the
    families' RMSNorms still compute in float32), and greedy generation with and without the
    cache agree."""
    prompt = token_ids(batch=1, length=6)[0].tolist()
    assert lh.greedy_generate(model, prompt, 8) == lh.greedy_generate(
        model, prompt, 8, use_cache=False
    )
    model = copy.deepcopy(model).double()
    ids = token_ids(batch=1, length=20)
    full = logits(model, ids)
    with torch.no_grad():
        cache = lh.LongposMemoryCache(config=model.config)
        out = model(input_ids=ids[:, :12], use_cache=True, **{lh.compat.CACHE_KWARG: cache})
        parts = [out.logits]
        for t in range(12, 20):
            out = model(input_ids=ids[:, t : t + 1], use_cache=True,
                        **{lh.compat.CACHE_KWARG: cache})  # fmt: skip
            parts.append(out.logits)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def check_round_trip(model: nn.Module, tmp_path: Path) -> nn.Module:
    out = tmp_path / "saved"
    model.save_pretrained(str(out))
    again = lh.load_hf_model(out, attn_implementation=model.config._attn_implementation)
    ids = token_ids()
    torch.testing.assert_close(logits(again, ids), logits(model, ids), atol=0, rtol=0)
    assert again.config.longpos_positions == model.config.longpos_positions
    assert again.config.longpos_qk_norm == model.config.longpos_qk_norm
    return again


# ====================================================================== detection
def test_detect_layouts(tmp_path):
    repo, _, _ = repo_folder(tmp_path)
    drope, _, _ = drope_folder(tmp_path)
    assert detect_reference_layout(repo) == "sakana_repo_olmo2"
    assert detect_reference_layout(repo / "config.json") == "sakana_repo_olmo2"
    assert detect_reference_layout(drope) == "sakana_drope"
    assert (
        detect_reference_layout(json.loads((drope / "config.json").read_text())) == "sakana_drope"
    )
    stock = tiny_model("olmo2")
    stock.save_pretrained(str(tmp_path / "stock"))
    assert detect_reference_layout(tmp_path / "stock") is None
    assert detect_reference_layout(stock.config.to_dict()) is None
    assert detect_reference_layout(tmp_path / "nothing-here") is None


def test_stock_transformers_falls_into_the_trap(tmp_path):
    """Why the layout must be detected: stock transformers opens the RePo folder as a plain
    OLMo2 (RoPE everywhere) and drops the predictors."""
    from transformers import AutoModelForCausalLM

    folder, stock, extra = repo_folder(tmp_path)
    plain = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    assert type(plain).__name__ == "Olmo2ForCausalLM"
    assert not any("gate_map" in n for n in plain.state_dict())
    loaded = load_reference_model(folder)
    ids = token_ids()
    assert (logits(plain, ids) - logits(loaded, ids)).abs().max() > 1e-3


# ====================================================================== RePo
@pytest.mark.parametrize(
    ("mode", "variant"),
    [("swigluex_multihead", "swiglu"), ("multihead_continuous", "linear"),
     ("continuous", "linear_shared")],
)  # fmt: skip
def test_repo_logits_match_the_fork(tmp_path, mode, variant):
    folder, stock, extra = repo_folder(tmp_path, mode)
    model = load_reference_model(folder)
    assert model.config.model_type == "olmo2_longpos"
    assert lh.layer_plan(model) == ["rope", "repo", "repo"]
    assert lh.position_plan(model).repo_start == 1
    assert lh.position_plan(model).repo.variant == variant
    assert repo_layers(model) == [1, 2]
    reference = fork_reference(clone_model(stock, "olmo2", num_key_value_heads=4), extra, mode,
                               [1, 2])  # fmt: skip
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)
    # The positions are far from the integer index (the comparison sees them).
    z = lh.assigned_positions(model, ids)[0][1]
    assert z.std() > 0.5


def test_repo_released_layout_maps_every_tensor(tmp_path):
    folder, stock, extra = repo_folder(tmp_path)
    mapping = mapping_report(folder)
    expected = {}
    for i in (1, 2):
        for ref, ours in (("gate_map", "gate"), ("content_map", "content"),
                          ("final_map", "assign")):  # fmt: skip
            expected[f"model.layers.{i}.self_attn.{ref}.weight"] = (
                f"model.layers.{i}.self_attn.assigner.{ours}.weight"
            )
    assert mapping.renamed == expected
    assert set(mapping.tensors) == set(stock.state_dict()) | set(extra)
    assert mapping.dropped == {}
    text = "\n".join(mapping.lines())
    assert "model.layers.{i}.self_attn.gate_map.weight -> " in text
    assert "model.layers.{i}.self_attn.assigner.gate.weight  (2 layers)" in text
    assert "dynmaic_pe_start_layer=1" in text and "dynamic_pe_init_pdrop" in text
    model = load_reference_model(folder)
    for ref, ours in expected.items():
        torch.testing.assert_close(model.state_dict()[ours], extra[ref], atol=0, rtol=0)
    for name, tensor in stock.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, atol=0, rtol=0)


def test_repo_cache_round_trip_and_config_view(tmp_path):
    folder, _, _ = repo_folder(tmp_path)
    model = load_reference_model(folder)
    check_cache(model)
    again = check_round_trip(model, tmp_path)
    assert lh.layer_plan(again) == ["rope", "repo", "repo"]
    view = reference_config(folder)
    assert view.model_type == "olmo2_longpos"
    assert view.longpos_positions == model.config.longpos_positions
    assert not hasattr(model.config, "pe_config")


def test_repo_layer_ids_and_nope_mode(tmp_path):
    folder, stock, extra = repo_folder(tmp_path, layer_ids="0,2", start=0)
    model = load_reference_model(folder)
    assert lh.layer_plan(model) == ["repo", "rope", "repo"]
    reference = fork_reference(clone_model(stock, "olmo2", num_key_value_heads=4), extra,
                               "swigluex_multihead", [0, 2])  # fmt: skip
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)

    folder, stock, _ = repo_folder(tmp_path, "nope", start=2, name="nope")
    model = load_reference_model(folder)
    assert lh.layer_plan(model) == ["rope", "rope", "nope"]
    reference = fork_reference(clone_model(stock, "olmo2", num_key_value_heads=4), {}, "nope",
                               [2], rotate=False)  # fmt: skip
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)

    folder, stock, _ = repo_folder(tmp_path, "none", name="none")
    model = load_reference_model(folder)
    assert lh.layer_plan(model) == ["rope"] * N_LAYERS
    torch.testing.assert_close(logits(model, ids), logits(stock, ids), atol=1e-6, rtol=0)


def test_repo_sharded_bf16_checkpoint(tmp_path):
    folder, _, extra = repo_folder(tmp_path, shards=3)
    assert (folder / "model.safetensors.index.json").is_file()
    model = load_reference_model(folder)
    single, _, _ = repo_folder(tmp_path, name="single")
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(load_reference_model(single), ids))
    # A bf16 checkpoint loads in bf16 (the checkpoint's dtype) with float32 RoPE tables.
    cfg = json.loads((single / "config.json").read_text())
    from safetensors.torch import load_file

    bf16 = {
        k: v.to(torch.bfloat16) for k, v in load_file(str(single / "model.safetensors")).items()
    }
    half = write_folder(tmp_path / "bf16", cfg, bf16)
    model16 = load_reference_model(half)
    assert model16.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model16.model.layers[1].self_attn.assigner.gate.weight.dtype == torch.bfloat16
    assert model16.model.rotary_emb.inv_freq.dtype == torch.float32
    assert load_reference_model(half, dtype="float32").lm_head.weight.dtype == torch.float32


def test_repo_rotary_buffers_are_checked_and_dropped(tmp_path):
    folder, stock, extra = repo_folder(tmp_path)
    inv_freq = stock.model.rotary_emb.inv_freq
    tensors = {**stock_tensors(stock), **extra}
    tensors.update({f"model.layers.{i}.self_attn.rotary_emb.inv_freq": inv_freq for i in range(3)})
    cfg = json.loads((folder / "config.json").read_text())
    with_buffers = write_folder(tmp_path / "buffers", cfg, tensors)
    mapping = mapping_report(with_buffers)
    assert sorted(mapping.dropped) == [f"model.layers.{i}.self_attn.rotary_emb.inv_freq"
                                       for i in range(3)]  # fmt: skip
    load_reference_model(with_buffers)
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = inv_freq * 2
    wrong = write_folder(tmp_path / "wrong", cfg, tensors)
    with pytest.raises(ValueError, match="differs from the RoPE frequencies"):
        load_reference_model(wrong)


# ====================================================================== DroPE
@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize(
    ("attention_type", "norms", "qk_norm"),
    [("nope", "", "none"), ("qk_norm_nope", "qk", "qk"), ("q_norm_nope", "qk", "q"),
     ("k_norm_nope", "qk", "k")],
)  # fmt: skip
def test_drope_logits_match_the_reference(tmp_path, family, attention_type, norms, qk_norm):
    folder, stock, extra = drope_folder(tmp_path, family, attention_type, norms=norms)
    model = load_reference_model(folder)
    assert model.config.model_type == f"{family}_longpos"
    assert lh.layer_plan(model) == ["nope"] * N_LAYERS
    assert model.config.longpos_qk_norm == qk_norm
    reference = drope_reference(clone_model(stock, family), extra, attention_type)
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)
    mapping = mapping_report(folder)
    assert mapping.renamed == {}
    if qk_norm in ("q", "k"):  # the reference's unused norm is named and dropped
        unused = "k" if qk_norm == "q" else "q"
        assert sorted(mapping.dropped) == [f"model.layers.{i}.self_attn.{unused}_norm.weight"
                                           for i in range(N_LAYERS)]  # fmt: skip
        assert all("never applied" in r for r in mapping.dropped.values())
    else:
        assert mapping.dropped == {}
    for name in mapping.tensors:
        torch.testing.assert_close(model.state_dict()[name], {**stock.state_dict(), **extra}[name])


def test_drope_norm_weights_when_the_unused_one_is_absent(tmp_path):
    folder, stock, extra = drope_folder(tmp_path, "llama", "q_norm_nope", norms="q")
    model = load_reference_model(folder)
    reference = drope_reference(clone_model(stock, "llama"), extra, "q_norm_nope")
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_drope_softmax_scale(tmp_path, family):
    head_dim = 8
    scale = 1.7 * head_dim**-0.5
    folder, stock, extra = drope_folder(tmp_path, family, "qk_norm_nope", softmax_scale=scale,
                                        with_scale=True)  # fmt: skip
    model = load_reference_model(folder)
    temp = lh.position_plan(model).temperature
    assert temp.mode == "static" and temp.static_beta(temp.train_length) == pytest.approx(1.7)
    reference = drope_reference(clone_model(stock, family), extra, "qk_norm_nope", scale)
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)
    plain = drope_reference(clone_model(stock, family), extra, "qk_norm_nope")
    assert (logits(plain, ids) - logits(model, ids)).abs().max() > 1e-3
    assert any("softmax_scale" in line for line in mapping_report(folder).lines())
    check_cache(model)
    check_round_trip(model, tmp_path)


def test_drope_softmax_scale_default_null_and_refused(tmp_path):
    for i, scale in enumerate((8**-0.5, None)):
        folder, _, _ = drope_folder(tmp_path, softmax_scale=scale, with_scale=True, name=f"s{i}")
        assert not lh.position_plan(load_reference_model(folder)).temperature.enabled
    folder, _, _ = drope_folder(tmp_path, softmax_scale=0.5 * 8**-0.5, with_scale=True, name="lo")
    with pytest.raises(ValueError, match=r"softmax_scale=.* below the default 1/sqrt\(head_dim\)"):
        load_reference_model(folder)
    folder, _, _ = drope_folder(tmp_path, softmax_scale="big", with_scale=True, name="str")
    with pytest.raises(ValueError, match="softmax_scale='big' must be a number"):
        load_reference_model(folder)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_drope_cache_and_round_trip(tmp_path, family):
    folder, _, _ = drope_folder(tmp_path, family, "qk_norm_nope")
    model = load_reference_model(folder, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    check_cache(model)
    again = check_round_trip(model, tmp_path)
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "drope." not in json.dumps(saved.get("auto_map"))  # the reference's remote code is gone
    assert again.model.layers[0].self_attn.q_norm.weight.shape == (32,)
    sdpa = load_reference_model(folder, attn_implementation="sdpa")
    ids = token_ids()
    torch.testing.assert_close(logits(sdpa, ids), logits(model, ids), atol=1e-5, rtol=1e-5)


def test_drope_tied_embeddings(tmp_path):
    """SmolLM (the DroPE collection's base) ties its embeddings: no lm_head.weight is stored."""
    folder, stock, extra = drope_folder(tmp_path, "llama", "nope", norms="", tied=True)
    assert "lm_head.weight" not in mapping_report(folder).tensors
    model = load_reference_model(folder)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    reference = drope_reference(
        clone_model(stock, "llama", tie_word_embeddings=True), extra, "nope"
    )
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)
    check_round_trip(model, tmp_path)


def test_drope_config_view(tmp_path):
    folder, _, _ = drope_folder(tmp_path, "qwen2", "k_norm_nope", norms="qk")
    view = reference_config(folder)
    assert view.model_type == "qwen2_longpos"
    assert view.longpos_qk_norm == "k"
    assert view.longpos_positions == load_reference_model(folder).config.longpos_positions
    assert not hasattr(view, "attention_type") and not hasattr(view, "auto_map")


# ====================================================================== convert command
def test_convert_command(tmp_path, capsys):
    folder, _, _ = repo_folder(tmp_path)
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 64}))
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": 7}))
    out = tmp_path / "converted"
    summary = run_convert(ConvertArgs(model=str(folder), out=str(out)))
    printed = capsys.readouterr().out
    assert "layout sakana_repo_olmo2" in printed and "assigner.assign.weight" in printed
    assert summary["model_type"] == "olmo2_longpos" and summary["renamed"] == 6
    assert (out / "tokenizer_config.json").is_file()
    assert json.loads((out / "generation_config.json").read_text())["max_new_tokens"] == 7
    converted = lh.load_hf_model(out)
    ids = token_ids()
    torch.testing.assert_close(logits(converted, ids), logits(load_reference_model(folder), ids),
                               atol=0, rtol=0)  # fmt: skip
    assert detect_reference_layout(out) is None  # the converted folder is an ordinary one
    with pytest.raises(ValueError, match="exists and is not empty"):
        run_convert(ConvertArgs(model=str(folder), out=str(out)))
    with pytest.raises(ValueError, match="not a reference checkpoint"):
        run_convert(ConvertArgs(model=str(out), out=str(tmp_path / "again")))


# ====================================================================== refusals
def test_repo_refusals(tmp_path):
    for i, (kwargs, match) in enumerate([
        ({"mode": "attention"}, r"dynamic_pe_mode='attention' is not supported"),
        ({"mode": "swigluex_posavg"}, r"dynamic_pe_mode='swigluex_posavg' is not supported"),
        ({"kv": 2}, r"one position per attention head \(4\).*num_key_value_heads=2"),
        ({"pe_extra": {"dynamic_pe_start_layer": 2}}, r"dynmaic_pe_start_layer=1 and "
         r"pe_config.dynamic_pe_start_layer=2 disagree"),
        ({"pe_extra": {"dynamic_pe_temperature": 2.0}}, r"\['dynamic_pe_temperature'\]"),
        ({"pe_extra": {"dynmaic_pe_layer_ids": "0,7"}}, r"names layers \[7\] outside 0..2"),
    ]):  # fmt: skip
        folder, _, _ = repo_folder(tmp_path, name=f"bad{i}", **kwargs)
        with pytest.raises(ValueError, match=match):
            load_reference_model(folder)
    # GQA is fine for the shared-z mode (one position for every head).
    folder, _, _ = repo_folder(tmp_path, "continuous", kv=2, name="gqa-shared")
    assert lh.position_plan(load_reference_model(folder)).repo.variant == "linear_shared"
    config = json.loads((folder / "config.json").read_text())
    with pytest.raises(ValueError, match="only the fork's OLMo2"):
        mapping_report({**config, "model_type": "llama"})


def test_repo_missing_unexpected_and_misshaped_tensors(tmp_path):
    folder, stock, extra = repo_folder(tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    base = stock_tensors(stock)
    less = {k: v for k, v in extra.items() if k != "model.layers.2.self_attn.final_map.weight"}
    with pytest.raises(ValueError, match=r"missing tensors \[model.layers.2.self_attn.assigner"
                                         r".assign.weight\]"):  # fmt: skip
        load_reference_model(write_folder(tmp_path / "less", cfg, {**base, **less}))
    more = {**extra, "model.layers.0.self_attn.gate_map.weight": extra[
        "model.layers.1.self_attn.gate_map.weight"]}  # fmt: skip
    with pytest.raises(ValueError, match=r"unexpected tensors \[model.layers.0.self_attn.gate_map"):
        load_reference_model(write_folder(tmp_path / "more", cfg, {**base, **more}))
    odd = {**base, **extra, "model.layers.1.self_attn.content_map.weight": torch.zeros(8, 32)}
    with pytest.raises(ValueError, match=r"content_map.weight has shape \(8, 32\)"):
        load_reference_model(write_folder(tmp_path / "odd", cfg, odd))
    bins = tmp_path / "bins"
    bins.mkdir()
    (bins / "config.json").write_text(json.dumps(cfg))
    (bins / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"pytorch_model.bin.*only safetensors"):
        load_reference_model(bins)


def test_drope_refusals(tmp_path):
    folder, _, _ = drope_folder(tmp_path, attention_type="alibi_nope")
    with pytest.raises(ValueError, match=r"attention_type='alibi_nope' is not supported"):
        load_reference_model(folder)
    config = json.loads((folder / "config.json").read_text())
    with pytest.raises(ValueError, match=r"model_type='mistral_drope' is not supported"):
        mapping_report({**config, "model_type": "mistral_drope", "attention_type": "nope"})
    folder, _, _ = drope_folder(tmp_path, attention_type="nope", norms="qk", name="extra")
    with pytest.raises(ValueError, match=r"unexpected tensors \[model.layers.0.self_attn.k_norm"):
        load_reference_model(folder)
    folder, _, _ = drope_folder(tmp_path, attention_type="qk_norm_nope", norms="q", name="less")
    with pytest.raises(ValueError, match=r"missing tensors \[model.layers.0.self_attn.k_norm"):
        load_reference_model(folder)
    with pytest.raises(ValueError, match="not a reference layout"):
        mapping_report(tiny_model("llama").config.to_dict())


def test_drope_missing_attention_type_is_nope(tmp_path):
    """The reference's config class defaults ``attention_type`` to ``nope``."""
    folder, stock, extra = drope_folder(tmp_path, "llama", "nope", norms="")
    config = json.loads((folder / "config.json").read_text())
    del config["attention_type"]
    (folder / "config.json").write_text(json.dumps(config))
    model = load_reference_model(folder)
    assert model.config.longpos_qk_norm == "none"
    reference = drope_reference(clone_model(stock, "llama"), extra, "nope")
    ids = token_ids()
    torch.testing.assert_close(logits(model, ids), logits(reference, ids), atol=1e-5, rtol=1e-5)
    assert math.isfinite(float(logits(model, ids).sum()))
