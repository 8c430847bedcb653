"""Tiny native models and their Hugging Face twins, with copied weights (nothing downloaded).

One helper module shared by every test that compares the two back ends:

- :func:`native_model`: a small :class:`~longpos.model.LongposLM` (GQA by default) whose weights
  are large enough that positions visibly change the logits (like ``hf_helpers.spread_repo``);
- :func:`hf_twin`: a Llama ``ForCausalLM`` of the same shape, converted with ``apply_longpos`` to
  the native model's :class:`~longpos.plan.PositionPlan`, with every native weight copied in
  (:func:`hf_state` is the name map);
- :func:`twins`: both at once; :func:`full_logits` / :func:`cached_logits` run either kind.

Both models are float64 by default. RMSNorm (both back ends) and the RoPE tables (native and
transformers) are computed in float32 whatever the model dtype, so twins agree to ~1e-6
relative, not to float64 rounding; NoPE-only models agree to ~1e-12 with the twin's default
``sdpa`` attention (``eager`` takes its softmax in float32: ~1e-6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

import longpos.hf  # noqa: F401  (registers the converted types)
from longpos.config import ModelConfig
from longpos.hf import apply_longpos
from longpos.hf.compat import CACHE_KWARG
from longpos.model import LongposLM

VOCAB = 101
D_MODEL = 32
N_LAYERS = 3
N_HEADS = 4
N_KV_HEADS = 2
FFN_HIDDEN = 64
MAX_SEQ_LEN = 16
"""The native training length; the twin's ``max_position_embeddings`` (its training length)."""

_TOP = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_IN_BLOCK = {  # native block prefix -> Llama decoder-layer prefix
    "attn_norm": "input_layernorm",
    "mlp_norm": "post_attention_layernorm",
    "attn.q_proj": "self_attn.q_proj",
    "attn.k_proj": "self_attn.k_proj",
    "attn.v_proj": "self_attn.v_proj",
    "attn.o_proj": "self_attn.o_proj",
    "attn.q_norm": "self_attn.q_norm",
    "attn.k_norm": "self_attn.k_norm",
    "attn.assigner": "self_attn.assigner",
    "attn.encoding": "self_attn.encoding",
    "mlp.gate": "mlp.gate_proj",
    "mlp.up": "mlp.up_proj",
    "mlp.down": "mlp.down_proj",
    "fwpkm": "fwpkm",  # memory layers keep their names
    "pkm": "mlp.pkm",  # a static PKM added to the MLP
    "mlp": "mlp",  # a static PKM replacing the MLP
}


def native_config(plan: str = "rope", n_kv_heads: int = N_KV_HEADS, **cfg: Any) -> ModelConfig:
    """The tiny shape every twin test uses; ``cfg`` overrides any :class:`ModelConfig` field."""
    base: dict[str, Any] = dict(
        vocab_size=VOCAB,
        d_model=D_MODEL,
        n_layers=N_LAYERS,
        n_heads=N_HEADS,
        n_kv_heads=n_kv_heads,
        ffn_hidden=FFN_HIDDEN,
        max_seq_len=MAX_SEQ_LEN,
        plan=plan,
        tie_embeddings=False,
        norm_eps=1e-6,
        init_scheme="normal",
        init_std=0.2,  # large enough that positions visibly change the logits
    )
    base.update(cfg)
    return ModelConfig(**base)


def native_model(
    plan: str = "rope",
    n_kv_heads: int = N_KV_HEADS,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    repo_std: float = 0.5,
    **cfg: Any,
) -> LongposLM:
    """A random native model in eval mode; the same arguments give the same weights.

    RePo predictors are re-drawn with std ``repo_std`` (the paper's 0.02 init gives z near 0,
    so RePo layers would look like NoPE); q/k norm gains are drawn from U(0.5, 1.5).
    """
    model = LongposLM(native_config(plan, n_kv_heads, **cfg), torch.Generator().manual_seed(seed))
    spread(model, repo_std, seed + 1)
    return model.to(dtype).eval()


def spread(model: nn.Module, repo_std: float = 0.5, seed: int = 1) -> None:
    """Re-draw the position predictors (std ``repo_std``) and the q/k norm gains of any model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".assigner." in name:
                param.copy_(torch.randn(param.shape, generator=g) * repo_std)
            elif name.endswith(("q_norm.weight", "k_norm.weight")):
                param.copy_(torch.rand(param.shape, generator=g) + 0.5)


def hf_name(native_name: str) -> str:
    """The Llama twin's name of a native parameter / buffer."""
    if native_name in _TOP:
        return _TOP[native_name]
    head, idx, rest = native_name.split(".", 2)
    if head != "blocks":
        raise KeyError(f"no Hugging Face name for {native_name!r}")
    prefix = next((p for p in _IN_BLOCK if rest.startswith(p + ".")), None)
    if prefix is None:
        raise KeyError(f"no Hugging Face name for {native_name!r}")
    return f"model.layers.{idx}.{_IN_BLOCK[prefix]}{rest[len(prefix) :]}"


def hf_state(native: LongposLM) -> dict[str, torch.Tensor]:
    """The native state dict under the Llama twin's names (a tied head appears once)."""
    state = native.state_dict()
    if native.config.tie_embeddings:
        state.pop("lm_head.weight", None)
    return {hf_name(name): tensor for name, tensor in state.items()}


def llama_config(native_cfg: ModelConfig, attn: str = "sdpa") -> LlamaConfig:
    """A stock Llama config of the native model's shape (and RoPE)."""
    head_dim = native_cfg.resolved_head_dim
    config = LlamaConfig(
        vocab_size=native_cfg.vocab_size,
        hidden_size=native_cfg.d_model,
        intermediate_size=native_cfg.resolved_ffn_hidden,
        num_hidden_layers=native_cfg.n_layers,
        num_attention_heads=native_cfg.n_heads,
        num_key_value_heads=native_cfg.resolved_kv_heads,
        head_dim=head_dim,
        rms_norm_eps=native_cfg.norm_eps,
        rope_parameters=native_cfg.rope.to_hf(head_dim),
        max_position_embeddings=native_cfg.max_seq_len,
        tie_word_embeddings=native_cfg.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        eos_token_id=None,
        bos_token_id=None,
        pad_token_id=None,
    )
    config._attn_implementation = attn
    return config


def stock_llama(native_cfg: ModelConfig, attn: str = "sdpa", seed: int = 0) -> LlamaForCausalLM:
    """An unconverted Llama of the native model's shape (random weights)."""
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(native_cfg, attn)).eval()
    model.generation_config.pad_token_id = 0
    return model


def hf_twin(native: LongposLM, attn: str = "sdpa") -> nn.Module:
    """A Llama converted to the native model's position plan, holding its weights."""
    cfg = native.config
    if cfg.memory.enabled:
        raise NotImplementedError("model_builders twins have no memory layers")
    qk_norm = cfg.qk_norm
    if qk_norm != "none" and cfg.qk_norm_layout != "full":
        raise ValueError("a Llama twin only has full-width q/k norms (qk_norm_layout='full')")
    model = stock_llama(cfg, attn)
    apply_longpos(model, cfg.position_plan(), qk_norm=qk_norm)
    copy_weights(native, model)
    return model


def copy_weights(native: LongposLM, hf: nn.Module) -> None:
    """Load every native weight into ``hf`` (strict: both sides must match exactly), and give
    ``hf`` the native model's dtype."""
    like = native.embed.weight
    hf.to(dtype=like.dtype, device=like.device)
    missing, unexpected = hf.load_state_dict(hf_state(native), strict=False)
    missing = [m for m in missing if not (hf.config.tie_word_embeddings and m == "lm_head.weight")]
    assert not missing and not unexpected, (missing, unexpected)


def twins(plan: str = "rope", attn: str = "sdpa", **kwargs: Any) -> tuple[LongposLM, nn.Module]:
    """``(native_model(plan, **kwargs), its hf_twin)``."""
    native = native_model(plan, **kwargs)
    return native, hf_twin(native, attn)


def is_native(model: nn.Module) -> bool:
    return isinstance(model, LongposLM)


def token_ids(batch: int = 2, length: int = 24, seed: int = 1, vocab: int = VOCAB) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


@torch.no_grad()
def full_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """One full forward of either kind of model, no cache: (B, T, V)."""
    if is_native(model):
        return model(ids).logits
    return model(input_ids=ids, use_cache=False).logits


@torch.no_grad()
def cached_logits(
    model: nn.Module, ids: torch.Tensor, splits: Sequence[int] = (5,)
) -> torch.Tensor:
    """Prefill up to ``splits[0]``, then the chunks between the other split points, then one
    token at a time, through the model's own KV cache; the concatenated logits (B, T, V)."""
    bounds = [0, *splits]
    steps = list(zip(bounds[:-1], bounds[1:], strict=True))
    steps += [(t, t + 1) for t in range(bounds[-1], ids.shape[1])]
    out = []
    if is_native(model):
        cache = model.new_cache()
        for a, b in steps:
            out.append(model(ids[:, a:b], cache=cache).logits)
    else:
        hf_cache = DynamicCache(config=model.config)
        for a, b in steps:
            out.append(
                model(input_ids=ids[:, a:b], use_cache=True, **{CACHE_KWARG: hf_cache}).logits
            )
    return torch.cat(out, dim=1)


def attention_layers(model: nn.Module) -> list[nn.Module]:
    """Every attention module (``blocks[i].attn`` / ``model.layers[i].self_attn``)."""
    if is_native(model):
        return [block.attn for block in model.blocks]
    return [layer.self_attn for layer in model.model.layers]


def layer_techniques(model: nn.Module) -> list[str]:
    """The technique name of every layer of either kind of model."""
    if is_native(model):
        return [block.technique for block in model.blocks]
    return [layer.self_attn.technique for layer in model.model.layers]


def tiny_native(seed: int = 0, **overrides: Any) -> LongposLM:
    """A tiny float32 native model with the library's own init (vocab 61, width 32, 3 layers,
    4 heads, L = 32), in eval mode; ``overrides`` are :class:`ModelConfig` fields."""
    base: dict[str, Any] = dict(vocab_size=61, d_model=32, n_layers=3, n_heads=4, max_seq_len=32)
    base.update(overrides)
    return LongposLM(ModelConfig(**base), torch.Generator().manual_seed(seed)).eval()


def check_causal_cached_and_padded(model: LongposLM, ids: torch.Tensor) -> torch.Tensor:
    """The three properties every technique of a native model must have (returns the full
    logits): cached decoding (prefill, chunk, tokens) equals the full forward; changing later
    tokens leaves earlier logits alone; a left-padded row gives what it gives alone."""
    full = full_logits(model, ids)
    torch.testing.assert_close(cached_logits(model, ids, (4, 11)), full)
    cut = ids.shape[1] * 3 // 4
    changed = ids.clone()
    changed[:, cut:] = (changed[:, cut:] + 1) % model.config.vocab_size
    torch.testing.assert_close(full_logits(model, changed)[:, :cut], full[:, :cut])
    bsz = ids.shape[0]
    pad = torch.cat((torch.zeros(bsz, 3, dtype=torch.long), ids), dim=1)
    mask = torch.cat((torch.zeros(bsz, 3, dtype=torch.long), torch.ones_like(ids)), dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(pad, attention_mask=mask).logits[:, 3:], full)
    return full


def loop_softmax_attention(q, k, v, bias, scale: float) -> torch.Tensor:
    """softmax_j(q_i . k_j * scale + bias(h, i, j)) over j <= i, one query at a time: the slow
    reference for the additive-bias techniques (q, k, v: (B, H, T, D))."""
    bsz, heads, seq, _ = q.shape
    out = torch.zeros_like(q)
    for b in range(bsz):
        for h in range(heads):
            for i in range(seq):
                logits = torch.stack(
                    [q[b, h, i] @ k[b, h, j] * scale + bias(h, i, j) for j in range(i + 1)]
                )
                weights = logits.softmax(0)
                out[b, h, i] = sum(weights[j] * v[b, h, j] for j in range(i + 1))
    return out


def assert_same_gradients(out, ref, params, **tolerance: float) -> list[torch.Tensor]:
    """d(sum out^2) and d(sum ref^2) agree for every tensor of ``params``; returns the first."""
    got = torch.autograd.grad(out.square().sum(), params)
    want = torch.autograd.grad(ref.square().sum(), params)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, **tolerance)
    return list(got)
