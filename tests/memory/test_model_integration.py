"""FwPKM / static PKM inside the reference model (``ModelConfig.memory``).

What holds exactly (float64, to rounding):

* With ``memory_writes="chunked"`` (the default) the memory writes once every ``chunk`` tokens
  counted from the sequence start, whatever the forward calls are. So a full forward, token-by-
  token decoding through the cache and any split (at chunk boundaries or not) give the same
  logits and the same final memory state; ``generate`` with and without the cache agree.
* With ``memory_writes="end"`` each call writes once at its end, so the result depends on the
  split (asserted below as a documented difference): it is meant for iterative reading.
* ``read_passes=n`` equals n - 1 manual ``"end"`` passes over the input (fresh attention, memory
  carried) followed by the real pass; generate's cached path equals it for the prompt.
* Padding inside ``attention_mask`` is refused for FwPKM models.
"""

from __future__ import annotations

import math

import pytest
import torch
from fwpkm_helpers import assert_states_close

from longpos.checkpoint import load_model, save_model
from longpos.config import ModelConfig
from longpos.memory import FwPKMLayer, StaticPKM
from longpos.memory.placement import MemoryConfig, memory_param_groups, resolve_layers
from longpos.model import KVCache, LongposLM, causal_mask
from longpos.train import OptimConfig, TrainConfig, Trainer

F64 = torch.float64
CHUNK = 5
FW = dict(d_k=8, d_v=6, sqrt_n=6, heads=2, topk=3, chunk=CHUNK)
PK = dict(d_k=8, sqrt_n=6, heads=2, topk=3)
LAYOUTS = {
    "fwpkm": dict(kind="fwpkm", layers="0,2", fwpkm=FW),
    "fwpkm+pkm": dict(kind="fwpkm+pkm", layers="1", pkm_layers="2", fwpkm=FW, pkm=PK),
    "pkm-add": dict(kind="pkm", layers="1", pkm_placement="add", pkm=PK),
}


def mem_config(layout: str = "fwpkm", **overrides) -> ModelConfig:
    base = dict(vocab_size=61, d_model=32, n_layers=3, n_heads=4, max_seq_len=32)
    base["memory"] = dict(LAYOUTS[layout])
    base.update(overrides)
    return ModelConfig(**base)


def mem_model(layout: str = "fwpkm", seed: int = 0, **overrides) -> LongposLM:
    model = LongposLM(mem_config(layout, **overrides), torch.Generator().manual_seed(seed))
    return model.double().eval()


def ids(batch: int = 2, length: int = 23, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 61, (batch, length), generator=torch.Generator().manual_seed(seed))


def run_split(model: LongposLM, x: torch.Tensor, cuts: list[int], **kw) -> tuple:
    cache = model.new_cache()
    bounds = [0, *cuts, x.shape[1]]
    parts = [
        model(x[:, a:b], cache=cache, **kw).logits
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(parts, 1), cache


def assert_memory_equal(a: list, b: list) -> None:
    assert len(a) == len(b)
    for sa, sb in zip(a, b, strict=True):
        assert (sa is None) == (sb is None)
        if sa is not None:
            assert_states_close(sa, sb, atol=1e-10)


# ------------------------------------------------------------------ (a) cache equivalence


SPLITS = {
    "token": list(range(1, 23)),  # token by token
    "boundaries": [5, 10, 15, 20],  # at chunk boundaries
    "across": [3, 4, 11, 17],  # across chunk boundaries
    "prefill": [12],  # prefill, then the rest at once
}


@pytest.mark.parametrize(
    "layout, split",
    [(layout, "token") for layout in LAYOUTS]
    + [("fwpkm+pkm", s) for s in ("boundaries", "across", "prefill")],
)
def test_incremental_decoding_equals_full_forward(layout: str, split: str) -> None:
    cuts = SPLITS[split]
    model = mem_model(layout)
    x = ids()
    full = model(x)
    inc, cache = run_split(model, x, cuts)
    torch.testing.assert_close(inc, full.logits, rtol=0, atol=1e-10)
    assert_memory_equal(cache.memory, full.memory or [None] * 3)
    if layout != "pkm-add":
        assert full.memory[1 if layout == "fwpkm+pkm" else 0].n_writes == 23 // CHUNK


def test_end_writes_depend_on_the_split_as_documented() -> None:
    model = mem_model()
    x = ids()
    whole = model(x, memory_writes="end").logits
    split, _ = run_split(model, x, [10], memory_writes="end")
    torch.testing.assert_close(split[:, :10], whole[:, :10], rtol=0, atol=1e-10)
    assert (split[:, 10:] - whole[:, 10:]).abs().max() > 1e-6  # first part's write seen later


def test_generate_with_and_without_cache_agree() -> None:
    model = mem_model("fwpkm+pkm")
    prompt = ids(length=9)
    a = model.generate(prompt, 12)
    b = model.generate(prompt, 12, use_cache=False)
    assert torch.equal(a, b)


def test_streaming_memory_state_does_not_grow() -> None:
    model = mem_model()
    sizes = []
    cache = model.new_cache()
    with torch.no_grad():
        for step in range(16 * CHUNK):
            model(ids(length=1, seed=step), cache=cache)
            if step + 1 in (2 * CHUNK, 16 * CHUNK):
                states = [s for s in cache.memory if s is not None]
                sizes.append(
                    sum(
                        t.numel()
                        for s in states
                        for t in (s.keys, s.values, s.pend_q, s.pend_v, s.pend_g)
                    )
                )
    assert len(sizes) == 2 and sizes[0] == sizes[1]
    assert cache.memory[0] is not None and cache.memory[0].n_writes == 16


def test_state_select_reorders_cached_sequences() -> None:
    model = mem_model()
    x = ids(batch=3)
    _, cache = run_split(model, x, [7])
    order = torch.tensor([2, 0])
    cache.select(order)  # keys, values, key positions and fast-weight states
    nxt = ids(batch=3, length=4, seed=5)
    got = model(nxt[order], cache=cache).logits
    ref = model(torch.cat([x, nxt], 1)[order]).logits[:, -4:]
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ (b) save / load


def test_save_load_round_trip(tmp_path) -> None:
    model = mem_model("fwpkm+pkm").float()
    x = ids()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m").eval()
    assert loaded.config == model.config
    assert loaded.config.memory.kind == "fwpkm+pkm"
    sd, ld = model.state_dict(), loaded.state_dict()
    assert set(sd) == set(ld) and all(torch.equal(sd[k], ld[k]) for k in sd)
    assert any(k.endswith("fwpkm.init_values") for k in sd)  # fixed initial fast weights saved
    torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)


# ------------------------------------------------------------------ (c) causality


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_causality(layout: str) -> None:
    model = mem_model(layout)
    x = ids(length=21)
    base = model(x).logits
    for t in (3, 5, 12, 20):  # inside a chunk, at a chunk start, later chunks
        y = x.clone()
        y[:, t] = (y[:, t] + 7) % 61
        out = model(y).logits
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=0)
        assert (out[:, t:] - base[:, t:]).abs().max() > 0


def test_memory_is_per_sequence() -> None:
    model = mem_model("fwpkm+pkm")
    x = ids(batch=3)
    batched = model(x).logits
    for b in range(3):
        torch.testing.assert_close(
            model(x[b : b + 1]).logits, batched[b : b + 1], atol=1e-10, rtol=0
        )


# ------------------------------------------------------------------ (d) gradients


def _loss(model: LongposLM, x: torch.Tensor) -> torch.Tensor:
    out = model(x[:, :-1]).logits
    return torch.nn.functional.cross_entropy(out.flatten(0, 1), x[:, 1:].flatten())


def test_gradients_reach_every_memory_parameter() -> None:
    model = mem_model("fwpkm+pkm").train()
    _loss(model, ids(length=24)).backward()
    mems = [m for m in model.modules() if isinstance(m, FwPKMLayer | StaticPKM)]
    assert len(mems) == 2
    for mem in mems:
        for name, p in mem.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_gradients_flow_through_the_writes() -> None:
    """The same weights with every write detached (``detach_every=1``) give other gradients
    for the slow FwPKM weights: the LM loss backpropagates through the fast-weight writes."""
    x = ids(length=24)
    grads = []
    for detach in (None, 1):
        fw = dict(FW, detach_every=detach)
        model = mem_model("fwpkm", memory=dict(LAYOUTS["fwpkm"], fwpkm=fw)).train()
        _loss(model, x).backward()
        grads.append(model.blocks[0].fwpkm.v_proj.weight.grad.clone())
    assert (grads[0] - grads[1]).abs().max() > 1e-8
    # with a single chunk no write is ever read: gradients agree
    short = ids(length=CHUNK + 1)
    grads = []
    for detach in (None, 1):
        fw = dict(FW, detach_every=detach)
        model = mem_model("fwpkm", memory=dict(LAYOUTS["fwpkm"], fwpkm=fw)).train()
        _loss(model, short).backward()
        grads.append(model.blocks[0].fwpkm.v_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)


class RandomSource:
    """Random tokens for a two-step training run (no task needed)."""

    vocab_size = 61

    def batch(self, step, batch_size, length, split="train"):
        gen = torch.Generator().manual_seed(step + (0 if split == "train" else 999))
        return torch.randint(0, self.vocab_size, (batch_size, length), generator=gen), None


def test_memory_param_groups_and_trainer(tmp_path) -> None:
    pk = dict(PK, value_lr=2e-3)
    fw = dict(FW, learn_init=True)
    model = LongposLM(
        mem_config("fwpkm+pkm", memory=dict(LAYOUTS["fwpkm+pkm"], pkm=pk, fwpkm=fw)),
        torch.Generator().manual_seed(0),
    )
    groups = memory_param_groups(model, lr=1e-3)
    assert set(groups) == {"pkm_values", "fwpkm_init"}
    values, mult, wd = groups["pkm_values"]
    assert [id(p) for p in values] == [id(model.blocks[2].mlp.values)] and wd == 0.0
    assert mult == pytest.approx(2.0)
    assert memory_param_groups(LongposLM(ModelConfig(vocab_size=61, d_model=32)), 1e-3) == {}
    cfg = TrainConfig(steps=2, batch_size=2, seq_len=16, progress=False, device="cpu",
                      optim=OptimConfig(lr=1e-3, warmup_steps=1))  # fmt: skip
    trainer = Trainer(model, cfg, tmp_path, source=RandomSource())
    by_name = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert by_name["pkm_values"]["base_lr"] == pytest.approx(2e-3)
    assert by_name["pkm_values"]["weight_decay"] == 0.0
    assert len(by_name["fwpkm_init"]["params"]) == 2  # keys and values of one FwPKM layer
    n_grouped = sum(len(g["params"]) for g in trainer.optimizer.param_groups)
    assert n_grouped == len(list(model.parameters()))
    result = trainer.fit()
    assert math.isfinite(result["eval"]["eval_lm_loss"])
    assert load_model(tmp_path / "model").config == model.config


# ------------------------------------------------------------------ (e) no memory: unchanged


@pytest.mark.parametrize(
    "plan, weight_abs_sum, last_logits",
    [
        # measured with the code before memory layers existed (commit ae048ca)
        ("rope", 4629.917499372458, [-0.069187, -0.12393, 0.004149, 9.3e-05]),
        ("repo", 4642.330935633187, [-0.023263, -0.04407, -0.195538, 0.04393]),
    ],
)
def test_config_without_memory_is_unchanged(plan, weight_abs_sum, last_logits) -> None:
    # The defaults of that commit (tied embeddings of std 0.02), stated explicitly.
    cfg = ModelConfig(vocab_size=61, d_model=32, n_layers=3, n_heads=4, max_seq_len=32, plan=plan,
                      tie_embeddings=True, embed_std=0.02)  # fmt: skip
    assert "memory" not in cfg.to_dict()  # JSON exactly as before
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    explicit = ModelConfig.from_dict({**cfg.to_dict(), "memory": {"kind": "none"}})
    assert explicit == cfg
    model = LongposLM(cfg, torch.Generator().manual_seed(0)).eval()
    twin = LongposLM(explicit, torch.Generator().manual_seed(0)).eval()
    sd = model.state_dict()
    assert not any("fwpkm" in k or "pkm" in k for k in sd)
    assert len(sd) == (30 if plan == "rope" else 36)
    assert all(torch.equal(sd[k], twin.state_dict()[k]) for k in sd)
    total = sum(float(t.double().abs().sum()) for t in sd.values())
    assert total == pytest.approx(weight_abs_sum, rel=1e-9)
    x = (torch.arange(12).view(1, 12) * 5) % 61
    with torch.no_grad():
        out = model(x)
        logits = out.logits[0, -1, :4]
    torch.testing.assert_close(logits, torch.tensor(last_logits), rtol=0, atol=2e-6)
    assert out.memory == [] and model.fwpkm_layers == []
    assert torch.equal(model(x, read_passes=3).logits, out.logits)  # no memory: passes no-op


# ------------------------------------------------------------------ (f) iterative reading


@pytest.mark.parametrize("passes", [2, 3])
def test_iterative_reading_equals_manual_passes(passes: int) -> None:
    model = mem_model("fwpkm+pkm")
    x = ids()
    one = model(x).logits
    many = model(x, read_passes=passes)
    assert (many.logits - one).abs().max() > 1e-4
    memory = [None] * len(model.blocks)
    for _ in range(passes - 1):  # each reading pass: fresh attention, one write at its end
        pre = KVCache(len(model.blocks))
        pre.memory = memory
        memory = model(x, cache=pre, memory_writes="end").memory
    cache = KVCache(len(model.blocks))
    cache.memory = memory
    manual = model(x, cache=cache)
    torch.testing.assert_close(many.logits, manual.logits, rtol=0, atol=1e-10)
    assert_memory_equal(many.memory, manual.memory)
    assert many.memory[1].n_writes == (passes - 1) + 23 // CHUNK


def test_generate_uses_iterative_reading_on_the_prompt() -> None:
    model = mem_model()
    prompt = ids(length=11)
    ref = model(prompt, read_passes=2).logits[:, -1].argmax(-1)
    out = model.generate(prompt, 3, read_passes=2)
    assert torch.equal(out[:, 11], ref)
    cfg_default = mem_model(memory=dict(LAYOUTS["fwpkm"], fwpkm=dict(FW, read_passes=2)))
    assert torch.equal(cfg_default.generate(prompt, 3), out)


def test_generate_continues_a_cache_read_with_passes_over_the_haystack_only() -> None:
    model = mem_model()
    prompt = ids(length=17)
    haystack, question = prompt[:, :13], prompt[:, 13:]
    cache = model.new_cache()
    read = model(haystack, cache=cache, read_passes=2)
    out = model.generate(prompt, 4, cache=read.cache)
    # by hand: the question read once from the written memory, then greedy steps
    manual = model.new_cache()
    model(haystack, cache=manual, read_passes=2)
    tokens = prompt
    step = question
    for _ in range(4):
        nxt = model(step, cache=manual).logits[:, -1].argmax(-1, keepdim=True)
        tokens, step = torch.cat((tokens, nxt), 1), nxt
    assert torch.equal(out, tokens)
    assert cache.length == 17 + 3  # extended in place (the last token is never fed)
    with pytest.raises(ValueError, match="must start with them"):
        model.generate(prompt[:, :5], 2, cache=cache)
    with pytest.raises(ValueError, match="use_cache=True"):
        model.generate(prompt, 2, cache=cache, use_cache=False)
    with pytest.raises(ValueError, match="empty cache"):
        fresh = model.new_cache()
        model(haystack, cache=fresh)
        model.generate(prompt, 2, cache=fresh, read_passes=2)


def test_iterative_reading_is_differentiable() -> None:
    model = mem_model().train()
    model(ids(), read_passes=2).logits.sum().backward()
    assert model.blocks[0].fwpkm.q_proj.weight.grad.abs().sum() > 0


def test_bad_calls_are_rejected() -> None:
    model = mem_model()
    x = ids()
    cache = model.new_cache()
    model(x[:, :5], cache=cache)
    with pytest.raises(ValueError, match="empty cache"):
        model(x[:, 5:], cache=cache, read_passes=2)
    with pytest.raises(ValueError, match="read_passes"):
        model(x, read_passes=0)
    mask = torch.ones(2, 23, dtype=torch.long)
    model(x, attention_mask=mask)  # no padding: fine
    mask[0, :3] = 0
    with pytest.raises(ValueError, match="padding"):
        model(x, attention_mask=mask)


# ------------------------------------------------------------------ pSWA


def test_causal_mask_sliding_window() -> None:
    mask = causal_mask(6, 0, None, torch.device("cpu"), window=3)[0, 0]
    q, k = torch.arange(6)[:, None], torch.arange(6)[None, :]
    assert torch.equal(mask, (k <= q) & (k > q - 3))
    mask = causal_mask(2, 4, None, torch.device("cpu"), window=2)[0, 0]
    assert mask.tolist() == [[False, False, False, True, True, False], [False] * 4 + [True] * 2]


def test_pswa_only_in_training() -> None:
    x = ids(length=20)
    on = mem_model(memory=dict(LAYOUTS["fwpkm"], pswa_prob=1.0, pswa_window=4))
    off = mem_model()
    assert torch.equal(on(x).logits, off(x).logits)  # eval: full attention
    on.train(), off.train()
    train_on, train_off = on(x).logits, off(x).logits
    assert torch.equal(train_off, off.eval()(x).logits)
    torch.testing.assert_close(train_on[:, :4], train_off[:, :4], rtol=0, atol=1e-12)
    assert (train_on[:, 4:] - train_off[:, 4:]).abs().max() > 1e-6


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "memory, field",
    [
        (dict(kind="lstm"), "memory.kind"),
        (dict(kind="fwpkm", layers="7"), "memory.layers"),
        (dict(kind="fwpkm", layers="1,1"), "memory.layers"),
        (dict(kind="fwpkm", layers="every:0"), "memory.layers"),
        (dict(kind="fwpkm", layers="top"), "memory.layers"),
        (dict(kind="fwpkm+pkm", pkm_layers="9"), "memory.pkm_layers"),
        (dict(kind="fwpkm", fwpkm=dict(topk=99)), "memory.fwpkm.topk"),
        (dict(kind="fwpkm", fwpkm=dict(d_k=7)), "memory.fwpkm.d_k"),
        (dict(kind="fwpkm", fwpkm=dict(colour=1)), "memory.fwpkm"),
        (dict(kind="pkm", pkm=dict(query_norm="batch")), "memory.pkm.query_norm"),
        (dict(kind="pkm", pkm=dict(output="value", d_v=16)), "memory.pkm.output"),
        (dict(kind="fwpkm", pswa_prob=1.5), "memory.pswa_prob"),
        (dict(kind="fwpkm", pswa_window=0), "memory.pswa_window"),
        (dict(pkm_placement="inside"), "memory.pkm_placement"),
        (dict(size=3), "memory"),
    ],
)
def test_bad_memory_config_names_the_field(memory: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        ModelConfig(vocab_size=61, d_model=32, n_layers=4, n_heads=4, memory=memory)


def test_memory_config_json_round_trip_and_layer_rules() -> None:
    cfg = mem_config("fwpkm+pkm")
    back = ModelConfig.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.memory, MemoryConfig)
    assert back.memory.fwpkm.chunk == CHUNK and back.memory.pkm.heads == 2
    assert resolve_layers("middle", 4) == [1] and resolve_layers("middle", 12) == [5]
    assert resolve_layers("every:4:2", 12) == [2, 6, 10]
    assert resolve_layers("all", 3) == [0, 1, 2] and resolve_layers("-1, 0", 4) == [0, 3]
    model = LongposLM(mem_config("fwpkm+pkm"))
    assert model.fwpkm_layers == [1] and isinstance(model.blocks[2].mlp, StaticPKM)
    add = LongposLM(mem_config("pkm-add"))
    assert isinstance(add.blocks[1].pkm, StaticPKM) and add.blocks[1].fwpkm is None


def test_init_is_seeded_and_scales_memory_outputs() -> None:
    a, b = mem_model("fwpkm+pkm", seed=3), mem_model("fwpkm+pkm", seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = mem_model("fwpkm+pkm", seed=4)
    assert not torch.equal(a.blocks[1].fwpkm.init_values, c.blocks[1].fwpkm.init_values)
    bound = 1 / math.sqrt(FW["d_v"]) / math.sqrt(2 * 3)  # U(+-1/sqrt(fan_in)) / sqrt(2L)
    o = a.blocks[1].fwpkm.o_proj.weight
    assert o.abs().max() <= bound + 1e-12 and o.abs().max() > 0.5 * bound
