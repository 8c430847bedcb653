"""RePo: integer-position parity with RoPE, shift invariance, gradients, GQA, init."""

import torch

from longpos.positions.repo import RePoAssigner
from longpos.positions.rope import IndexAssigner


def test_repo_with_index_assigner_equals_rope_exactly(make_model):
    for kv in (None, 2):
        rope = make_model(seed=5, plan="rope", n_kv_heads=kv)
        repo = make_model(seed=5, plan="repo", n_kv_heads=kv)
        repo.load_state_dict(rope.state_dict(), strict=False)
        for block in repo.blocks:
            block.attn.assigner = IndexAssigner()
        x = torch.randint(0, 61, (2, 17))
        assert repo(x).logits.equal(rope(x).logits)


class Shifted(torch.nn.Module):
    def __init__(self, inner, shift):
        super().__init__()
        self.inner, self.shift = inner, shift

    def forward(self, x, index):
        return self.inner(x, index) + self.shift


def test_shifting_all_positions_of_a_layer_leaves_logits_unchanged(make_model):
    model = make_model(plan="repo", repo_start=0, n_kv_heads=2)
    # make z spread out, so the check is not trivially about near-zero positions
    for block in model.blocks:
        block.attn.assigner.assign.weight.data.mul_(400)
        block.attn.assigner.gate.weight.data.mul_(10)
        block.attn.assigner.content.weight.data.mul_(10)
    x = torch.randint(0, 61, (2, 15))
    base = model(x, return_positions=True)
    assert base.positions[1].std() > 1.0
    for layer, shift in ((0, 37.25), (2, -1234.5)):
        attn = model.blocks[layer].attn
        original = attn.assigner
        attn.assigner = Shifted(original, shift)
        try:
            torch.testing.assert_close(model(x).logits, base.logits, rtol=1e-4, atol=2e-4)
        finally:
            attn.assigner = original
    # a per-token (non-constant) change does change the logits
    attn = model.blocks[1].attn
    original = attn.assigner
    attn.assigner = Shifted(original, torch.linspace(0, 50, 15))
    assert (model(x).logits - base.logits).abs().max() > 1e-3
    attn.assigner = original


def test_assigner_parameters_receive_gradients(make_model):
    model = make_model(plan="repo", n_kv_heads=2).train()
    x = torch.randint(0, 61, (2, 16))
    out = model(x[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(out.reshape(-1, 61), x[:, 1:].reshape(-1))
    loss.backward()
    names = [n for n, _ in model.named_parameters() if ".assigner." in n]
    assert len(names) == 3 * 2  # gate, content, assign in layers 1 and 2
    for name, param in model.named_parameters():
        if ".assigner." in name:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_assigner_shapes_init_and_gqa():
    assigner = RePoAssigner(64, 2)
    assert assigner.gate.weight.shape == (8, 64)
    assert assigner.content.weight.shape == (8, 64)
    assert assigner.assign.weight.shape == (2, 8)
    for lin in (assigner.gate, assigner.content, assigner.assign):
        assert lin.bias is None
        assert lin.weight.abs().max() <= 0.06 + 1e-7
    big = RePoAssigner(2048, 16, init="trunc_normal")
    assert abs(big.gate.weight.std().item() - 0.01973) < 0.0005  # N(0, .02) cut at 3 std
    z = assigner(torch.randn(3, 10, 64), torch.arange(10).expand(3, 10))
    assert z.shape == (3, 2, 10) and z.dtype == torch.float32
    zero = RePoAssigner(64, 2, init="zero_assign")
    assert zero(torch.randn(1, 4, 64), torch.arange(4)[None]).abs().max() == 0


def test_repo_positions_are_padding_and_offset_invariant(make_model):
    """z depends only on the token's own hidden state, never on its index."""
    model = make_model(plan="repo", repo_start=0)
    x = torch.randint(0, 61, (1, 9))
    z_layer0 = model(x, return_positions=True).positions[0]
    z_shifted = model(x, index=torch.arange(100, 109)[None], return_positions=True).positions[0]
    assert z_layer0.equal(z_shifted)


def test_parameter_overhead_is_small():
    from longpos.config import preset
    from longpos.model import LongposLM

    rope = LongposLM(preset("small")).num_parameters()
    repo = LongposLM(preset("small", plan="repo")).num_parameters()
    # 2 d d/8 + d/8 H_kv per RePo layer, in 6 of 8 layers
    assert repo - rope == 6 * (2 * 512 * 64 + 64 * 4)
