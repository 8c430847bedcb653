"""FwPKM / static PKM memory layers in transformers models (``apply_longpos(memory=...)``).

What holds (float64, to rounding, unless noted):

* placement follows ``MemoryConfig`` exactly; with zero output projections the memory adds
  nothing, so the converted model equals the stock one (pretrained weights are untouched);
* the fast weights live on the cache: any split into prefill + incremental steps, across
  write-chunk boundaries, equals one full forward; ``generate`` with and without the cache
  agree (greedy and beam search); the state has a fixed size whatever the length;
* ``read_passes=n`` is n - 1 write-only passes, then the real one (equal to doing them by
  hand); it changes the logits and is cache-consistent; the config's default is persisted
  and used by ``generate``;
* ``save_pretrained`` / ``from_pretrained`` restore the model bit for bit;
* the LM loss reaches every memory parameter, also under gradient checkpointing (the memory
  runs outside the checkpointed forward, so the replay does not write twice);
* user errors raise clear messages and leave the model unconverted.

Native-model parity (same weights, equal logits) is in ``test_hf_native_parity.py``.
"""

from __future__ import annotations

import json

import pytest
import torch
from hf_helpers import FAMILY_NAMES, VOCAB, logits, tiny_model, token_ids
from transformers import AutoModelForCausalLM, DynamicCache, GPT2Config, GPT2LMHeadModel

from longpos.hf import (
    LongposMemoryCache,
    MemoryConfig,
    apply_longpos,
    greedy_generate,
    layer_plan,
    load_hf_model,
    memory_config,
    memory_param_groups,
    memory_parameters,
    memory_states,
)
from longpos.hf.compat import CACHE_KWARG, output_cache
from longpos.hf.memory import MemoryRun
from longpos.memory import FwPKMLayer, StaticPKM

F64 = torch.float64
CHUNK = 5
FW = dict(d_k=8, d_v=6, sqrt_n=6, heads=2, topk=3, chunk=CHUNK)
PK = dict(d_k=8, sqrt_n=6, heads=2, topk=3)
LAYOUTS = {
    "fwpkm": dict(kind="fwpkm", layers="0,2", fwpkm=FW),
    "fwpkm+pkm": dict(kind="fwpkm+pkm", layers="0,2", pkm_layers="1", fwpkm=FW, pkm=PK),
    "fwpkm+pkm-add": dict(
        kind="fwpkm+pkm", layers="1", pkm_layers="-1", pkm_placement="add", fwpkm=FW, pkm=PK
    ),
}
FAMILIES = FAMILY_NAMES


def memory_model(family: str = "llama", layout: str = "fwpkm+pkm", plan=None, **fw) -> object:
    memory = dict(LAYOUTS[layout])
    memory["fwpkm"] = {**FW, **fw}
    torch.manual_seed(5)  # the new memory modules draw from the default generator
    return apply_longpos(tiny_model(family), plan, memory=MemoryConfig(**memory)).to(F64)


def split_forward(model, ids: torch.Tensor, cuts: list[int], **kwargs):
    cache = DynamicCache(config=model.config)
    bounds = [0, *cuts, ids.shape[1]]
    with torch.no_grad():
        parts = [
            model(input_ids=ids[:, a:b], **{CACHE_KWARG: cache}, **kwargs).logits
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
    return torch.cat(parts, 1), cache


# ------------------------------------------------------------------ placement


def test_placement_follows_memory_config():
    model = memory_model("llama", "fwpkm+pkm")
    layers = model.model.layers
    assert [isinstance(getattr(layer, "fwpkm", None), FwPKMLayer) for layer in layers] == [
        True,
        False,
        True,
    ]
    assert isinstance(layers[1].mlp, StaticPKM) and not isinstance(layers[0].mlp, StaticPKM)
    assert layer_plan(model) == ["rope"] * 3  # memory alone leaves the positions as they were
    added = memory_model("qwen3", "fwpkm+pkm-add")
    assert isinstance(added.model.layers[2].mlp.pkm, StaticPKM)
    assert hasattr(added.model.layers[2].mlp, "gate_proj")  # the pretrained MLP stays
    assert memory_config(added) == MemoryConfig(**{**LAYOUTS["fwpkm+pkm-add"], "fwpkm": FW})
    names = {n for n, _ in memory_parameters(model)}
    assert "model.layers.0.fwpkm.q_proj.weight" in names and "model.layers.1.mlp.values" in names
    assert not any(".self_attn." in n or "embed" in n for n in names)


@pytest.mark.parametrize("family", FAMILIES)
def test_silent_memory_leaves_the_pretrained_model_unchanged(family):
    stock = tiny_model(family).to(F64)
    ids = token_ids(length=17)
    expected = logits(stock, ids)
    model = apply_longpos(stock, None, memory=MemoryConfig(**LAYOUTS["fwpkm+pkm-add"]))
    with torch.no_grad():
        for module in model.modules():
            out = module.o_proj if isinstance(module, FwPKMLayer) else None
            out = module.out_proj if isinstance(module, StaticPKM) else out
            if out is not None:
                out.weight.zero_()
                if out.bias is not None:
                    out.bias.zero_()
    torch.testing.assert_close(logits(model, ids), expected, atol=1e-12, rtol=0)
    assert not torch.equal(logits(memory_model(family, "fwpkm+pkm-add"), ids), expected)


# ------------------------------------------------------------------ cache equivalence


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("family", FAMILIES)
def test_incremental_decoding_equals_full_forward(family, layout):
    model = memory_model(family, layout, plan="repo" if family == "qwen3" else None)
    ids = token_ids(batch=2, length=23)
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        frozen = model(input_ids=ids, use_cache=False, memory_writes="none").logits
    # prefill 7, then 4 tokens across the write at 10, then token by token past 15 and 20
    inc, cache = split_forward(model, ids, [7, 11, *range(12, 23)])
    torch.testing.assert_close(inc, full, atol=1e-10, rtol=1e-10)
    assert cache.get_seq_length() == 23
    fw_layer = 1 if layout == "fwpkm+pkm-add" else 0
    assert memory_states(cache)[fw_layer].n_writes == 23 // CHUNK
    torch.testing.assert_close(frozen[:, :CHUNK], full[:, :CHUNK], atol=1e-10, rtol=1e-10)
    assert (frozen[:, CHUNK:] - full[:, CHUNK:]).abs().max() > 1e-4  # writes are in play


def test_float32_cache_equivalence_with_default_cache():
    model = memory_model("llama", "fwpkm+pkm").float()
    ids = token_ids(batch=2, length=18)
    full = logits(model, ids)
    with torch.no_grad():
        first = model(input_ids=ids[:, :9])  # use_cache defaults to True: a memory cache
        assert isinstance(output_cache(first), LongposMemoryCache)
        rest = [
            model(input_ids=ids[:, t : t + 1], **{CACHE_KWARG: output_cache(first)}).logits
            for t in range(9, 18)
        ]
    torch.testing.assert_close(torch.cat([first.logits, *rest], 1), full, atol=1e-5, rtol=1e-5)


def test_memory_state_does_not_grow_with_length():
    model = memory_model("llama", "fwpkm")
    cache = DynamicCache(config=model.config)
    sizes = []
    with torch.no_grad():
        for step in range(12 * CHUNK):
            model(input_ids=token_ids(batch=1, length=1, seed=step), **{CACHE_KWARG: cache})
            if step + 1 in (2 * CHUNK, 12 * CHUNK):
                states = memory_states(cache).values()
                sizes.append(
                    sum(t.numel() for s in states for t in (s.keys, s.values, s.pend_q, s.pend_v))
                )
    assert sizes[0] == sizes[1]
    assert memory_states(cache)[0].n_writes == 12


@pytest.mark.parametrize("family", ["llama", "olmo2"])
def test_generate_with_and_without_cache(family):
    model = memory_model(family, "fwpkm+pkm")
    ids = token_ids(batch=2, length=8)
    kwargs = dict(
        attention_mask=torch.ones_like(ids),
        max_new_tokens=9,  # decoding crosses the writes at 10 and 15
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
    )
    cached = model.generate(ids, use_cache=True, **kwargs)
    uncached = model.generate(ids, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(
        torch.stack(cached.logits), torch.stack(uncached.logits), atol=1e-10, rtol=1e-10
    )
    row = ids[0].tolist()
    assert greedy_generate(model, row, 9) == cached.sequences[0, 8:].tolist()


def test_beam_search_reorders_the_memory_with_the_cache():
    model = memory_model("llama", "fwpkm")
    ids = token_ids(batch=2, length=8)
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    cached = model.generate(ids, num_beams=3, use_cache=True, **kwargs)
    uncached = model.generate(ids, num_beams=3, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)


# ------------------------------------------------------------------ iterative reading


def test_read_passes_equal_manual_write_passes_and_are_cache_consistent():
    model = memory_model("qwen3", "fwpkm+pkm")
    ids = token_ids(batch=2, length=12)
    once = logits(model, ids)
    twice = logits(model, ids, read_passes=2)
    assert (twice - once).abs().max() > 1e-4
    # by hand: one write-only pass over the input (one write at its end), then the real pass
    states: dict = {}
    with torch.no_grad():
        model.model(input_ids=ids, use_cache=False, longpos_memory=MemoryRun(states, "end"))
        assert states[0].n_writes == 1
        manual = model.lm_head(
            model.model(
                input_ids=ids, use_cache=False, longpos_memory=MemoryRun(states, "chunked")
            ).last_hidden_state
        )
    torch.testing.assert_close(twice, manual, atol=1e-12, rtol=0)
    # through the cache: the same logits, and decoding goes on from the written memory
    prefill, cache = split_forward(model, ids, [], read_passes=2)
    torch.testing.assert_close(prefill, twice, atol=1e-10, rtol=1e-10)
    with pytest.raises(ValueError, match="empty cache"):
        model(input_ids=ids[:, :1], **{CACHE_KWARG: cache}, read_passes=2)


def test_read_passes_default_is_persisted_and_used_by_generate(tmp_path):
    model = memory_model("llama", "fwpkm", read_passes=2)
    ids = token_ids(batch=1, length=10)
    kwargs = dict(
        attention_mask=torch.ones_like(ids),
        max_new_tokens=6,
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
    )
    explicit = model.generate(ids, read_passes=2, **kwargs)
    default = model.generate(ids, **kwargs)
    once = model.generate(ids, read_passes=1, **kwargs)
    assert torch.equal(default.sequences, explicit.sequences)
    torch.testing.assert_close(torch.stack(default.logits), torch.stack(explicit.logits))
    assert (explicit.logits[0] - once.logits[0]).abs().max() > 1e-4
    # the first generated token comes from the real pass after one reading pass
    first = logits(model, ids, read_passes=2)[:, -1].float()  # generate keeps float32 logits
    torch.testing.assert_close(explicit.logits[0], first, atol=1e-6, rtol=1e-6)
    with torch.no_grad():  # a plain forward defaults to one pass, as the native model
        assert torch.equal(model(input_ids=ids).logits, logits(model, ids, read_passes=1))
    new = explicit.sequences[0, 10:].tolist()
    assert greedy_generate(model, ids[0].tolist(), 6) == new
    # without the cache every step re-reads prompt + generated tokens (as the native model)
    uncached = model.generate(ids, use_cache=False, **kwargs).sequences[0, 10:].tolist()
    assert greedy_generate(model, ids[0].tolist(), 6, use_cache=False) == uncached
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=F64)
    assert loaded.config.longpos_memory["fwpkm"]["read_passes"] == 2
    assert torch.equal(loaded.generate(ids, **kwargs).sequences, default.sequences)


# ------------------------------------------------------------------ persistence


@pytest.mark.parametrize(
    "family,layout",
    [("llama", "fwpkm+pkm"), ("olmo2", "fwpkm+pkm-add"), ("gemma3_text", "fwpkm+pkm"),
     ("phi3", "fwpkm+pkm-add"), ("qwen3_moe", "fwpkm+pkm-add"), ("granite", "fwpkm+pkm")],
)  # fmt: skip
def test_save_and_reload_are_exact(tmp_path, family, layout):
    model = memory_model(family, layout, plan="r2n1")
    ids = token_ids(length=16)
    expected = logits(model, ids)
    expected_inc, _ = split_forward(model, ids, [6, 7])
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == f"{family}_longpos" and "auto_map" in saved  # portable
    assert saved["longpos_memory"]["kind"] == "fwpkm+pkm"
    # The weights are exact; a non-persistent stock buffer built in another dtype than the
    # original's (Gemma 3's embedding scale, float32 there, float64 here) rounds differently.
    tol = 1e-5 if family == "gemma3_text" else 1e-10
    for loaded in (
        AutoModelForCausalLM.from_pretrained(tmp_path, dtype=F64).eval(),
        load_hf_model(tmp_path, dtype="float32").to(F64).eval(),
    ):
        assert memory_config(loaded) == memory_config(model)
        assert set(loaded.state_dict()) == set(model.state_dict())
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key
        torch.testing.assert_close(logits(loaded, ids), expected, atol=tol, rtol=tol)
        torch.testing.assert_close(
            split_forward(loaded, ids, [6, 7])[0], expected_inc, atol=tol, rtol=tol
        )


def test_load_hf_model_adds_memory_to_a_stock_folder(tmp_path):
    stock = tiny_model("qwen3")
    stock.save_pretrained(tmp_path)
    memory = MemoryConfig(**LAYOUTS["fwpkm"])
    model = load_hf_model(tmp_path, memory=memory)
    assert memory_config(model) == memory and layer_plan(model) == ["rope"] * 3
    assert torch.equal(model.model.embed_tokens.weight, stock.model.embed_tokens.weight)
    again = load_hf_model(model, plan="repo")  # a new plan keeps the memory and its weights
    assert again.model.layers[0].fwpkm is model.model.layers[0].fwpkm
    assert memory_config(again) == memory


def test_memory_missing_from_a_checkpoint_gets_its_own_init(tmp_path):
    stock = tiny_model("llama")
    stock.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    memory = MemoryConfig(**{**LAYOUTS["fwpkm+pkm-add"], "fwpkm": {**FW, "sqrt_n": 32}})
    config.update(model_type="llama_longpos", longpos_memory=memory.to_dict())
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).requires_grad_(False)
    fw, pkm = loaded.model.layers[1].fwpkm, loaded.model.layers[2].mlp.pkm
    assert abs(float(fw.init_values.std()) - FW["d_v"] ** -0.5) < 0.02  # N(0, d_v^-1/2)
    assert float(fw.init_keys.abs().max()) <= FW["d_k"] ** -0.5  # U(+-1/sqrt(d_k))
    assert float(fw.q_proj.weight.abs().max()) <= 32**-0.5  # U(+-1/sqrt(fan_in))
    assert torch.equal(fw.q_norm.weight, torch.ones(32))
    bound = FW["d_v"] ** -0.5 / 6**0.5  # output projection divided by sqrt(2 L)
    assert 0.5 * bound < float(fw.o_proj.weight.abs().max()) <= bound
    assert torch.isfinite(pkm.values).all() and float(pkm.values.std()) > 0.1
    for name, value in stock.state_dict().items():  # every pretrained tensor loaded
        assert torch.equal(loaded.state_dict()[name], value), name


def test_memory_can_be_removed_and_replaced():
    model = memory_model("llama", "fwpkm")
    fw = model.model.layers[0].fwpkm
    apply_longpos(model, "nope")  # memory=None keeps the modules and their weights
    assert model.model.layers[0].fwpkm is fw
    apply_longpos(model, None, memory=MemoryConfig(**{**LAYOUTS["fwpkm"], "layers": "1"}))
    assert getattr(model.model.layers[0], "fwpkm", None) is None
    assert isinstance(model.model.layers[1].fwpkm, FwPKMLayer)
    apply_longpos(model, None, memory=MemoryConfig())
    assert memory_config(model) is None
    assert all(getattr(layer, "fwpkm", None) is None for layer in model.model.layers)
    stock = tiny_model("llama")
    ids = token_ids()
    assert torch.equal(logits(model.float(), ids), logits(apply_longpos(stock, "nope"), ids))


# ------------------------------------------------------------------ training


def test_gradients_reach_every_memory_parameter_also_with_checkpointing():
    model = memory_model("llama", "fwpkm+pkm-add").train()
    ids = token_ids(batch=2, length=16)
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable()
        model.zero_grad()
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, _ in memory_parameters(model):
        assert grads[0][name].abs().sum() > 0, name  # slow weights learn through the writes
    for name, grad in grads[0].items():  # the replay neither rewrites nor double-counts
        torch.testing.assert_close(grads[1][name], grad, atol=1e-10, rtol=1e-8)
    groups = memory_param_groups(model, 1e-3)
    assert groups["pkm_values"][0] == [model.model.layers[2].mlp.pkm.values]
    assert groups["pkm_values"][1] == pytest.approx(1.0)  # value_lr 1e-3 / base 1e-3


# ------------------------------------------------------------------ errors


def test_padding_is_refused_for_fwpkm_models():
    model = memory_model("llama", "fwpkm")
    ids = token_ids(batch=2, length=8)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with pytest.raises(ValueError, match="padding is not supported by FwPKM"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match="padding is not supported by FwPKM"):
        model.generate(ids, attention_mask=mask, max_new_tokens=2, do_sample=False)
    pkm_only = apply_longpos(tiny_model("llama"), None, memory=MemoryConfig(kind="pkm", pkm=PK))
    pkm_only(input_ids=ids, attention_mask=mask)  # static PKM is stateless: padding is fine


@pytest.mark.parametrize(
    "memory,message",
    [
        (dict(kind="fwpkm", layers="3", fwpkm=FW), r"indices \[3\] are out of range"),
        (dict(kind="fwpkm", layers="0,-3", fwpkm=FW), "lists a layer twice"),
        (dict(kind="fwpkm", fwpkm={**FW, "d_k": 7}), "d_k must be even"),
        (dict(kind="fwpkm", fwpkm=FW, pswa_prob=0.9), "pswa_prob=0.9"),
        (dict(kind="pkm", pkm={**PK, "output": "value", "d_v": 8}), "output='value'"),
    ],
)
def test_bad_memory_configs_raise_and_leave_the_model_alone(memory, message):
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=message):
        apply_longpos(model, "repo", memory=MemoryConfig(**memory))
    assert type(model).__name__ == "LlamaForCausalLM"  # nothing half-converted
    assert not any(hasattr(layer, "fwpkm") for layer in model.model.layers)


def test_other_user_errors():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=4, vocab_size=50))
    with pytest.raises(ValueError, match="model_type='gpt2' is not supported"):
        apply_longpos(gpt2, None, memory=MemoryConfig(kind="fwpkm", fwpkm=FW))
    model = memory_model("llama", "fwpkm+pkm")
    with pytest.raises(ValueError, match="MLP weights are gone"):
        apply_longpos(model, None, memory=MemoryConfig(**LAYOUTS["fwpkm"]))
    assert isinstance(model.model.layers[1].mlp, StaticPKM)  # unchanged
    ids = token_ids(batch=1, length=4)
    with pytest.raises(ValueError, match="read_passes=0"):
        model(input_ids=ids, read_passes=0)
    with pytest.raises(ValueError, match="memory_writes='always'"):
        model(input_ids=ids, memory_writes="always")
    with pytest.raises(ValueError, match="MemoryConfig"):
        apply_longpos(tiny_model("llama"), None, memory={"kind": "fwpkm"})  # type: ignore[arg-type]
    assert int(ids.max()) < VOCAB


# ------------------------------------------------------------------ longpos train --hf-model


def test_train_command_adds_memory_and_trains_it(tmp_path):
    import dataclasses

    from longpos.train import TrainConfig
    from longpos.train.command import TrainArgs, build_hf_model
    from longpos.train.data import TextSource
    from longpos.train.loop import Trainer

    tiny_model("llama", vocab_size=300).save_pretrained(tmp_path / "base")
    memory = MemoryConfig(**LAYOUTS["fwpkm+pkm-add"])
    from longpos.hf.loading import model_config_view

    wanted = dataclasses.replace(
        model_config_view(str(tmp_path / "base")), plan="r2n1", memory=memory
    )  # what --hf-model base --model.plan r2n1 --model.memory.* give
    args = TrainArgs(hf_model=str(tmp_path / "base"), model=wanted)
    model, fresh = build_hf_model(args)
    assert memory_config(model) == memory and layer_plan(model) == ["rope", "rope", "nope"]
    assert set(fresh) == {n for n, _ in memory_parameters(model)}
    before = model.model.layers[1].fwpkm.q_proj.weight.detach().clone()
    cfg = TrainConfig(steps=2, batch_size=2, seq_len=16, progress=False, data=dict(kind="text"))
    trainer = Trainer(model, cfg, tmp_path / "run", source=TextSource("byte"))
    values = model.model.layers[2].mlp.pkm.values
    (group,) = [g for g in trainer.optimizer.param_groups if any(p is values for p in g["params"])]
    assert len(group["params"]) == 1 and group["weight_decay"] == 0.0  # its own group
    trainer.fit()
    trained = load_hf_model(tmp_path / "run" / "model")
    assert memory_config(trained) == memory
    assert not torch.equal(trained.model.layers[1].fwpkm.q_proj.weight, before)
    wider = dataclasses.replace(model_config_view(str(tmp_path / "base")), d_model=64, n_heads=8)
    bad = TrainArgs(hf_model=str(tmp_path / "base"), model=wider)
    with pytest.raises(ValueError, match="--model.d_model, --model.n_heads"):
        build_hf_model(bad)
