"""GPO, the generalized pooling operator: its math, and that padding never changes what it pools."""

from __future__ import annotations

import pytest
import torch

from mmzoo_plugins.vse_infinity.gpo import GPO, position_encoding
from tests.reference import vse_infinity_reference as ref


def gpo(seed: int = 0, pe_dim: int = 32, hidden: int = 32) -> GPO:
    torch.manual_seed(seed)
    return GPO(pe_dim, hidden).eval()


def test_same_as_their_gpo_on_right_padded_batches():
    ours = gpo()
    theirs = ref.GPO(32, 32)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5, 9, 16)
    lengths = torch.tensor([9, 4, 1, 7, 4])
    mask = torch.arange(9)[None] < lengths[:, None]
    torch.testing.assert_close(ours(x, mask), theirs(x, lengths)[0], atol=1e-6, rtol=1e-6)


def test_position_encoding_is_the_transformer_one():
    pe = position_encoding(6, 8)
    torch.testing.assert_close(pe, ref.positional_encoding_1d(8, 6))
    assert torch.equal(pe[0, 0::2], torch.zeros(4)) and torch.equal(pe[0, 1::2], torch.ones(4))
    with pytest.raises(ValueError):
        GPO(7, 8)


def test_pooled_is_weights_times_sorted_values():
    pool = gpo(1)
    x = torch.randn(2, 5, 3)
    mask = torch.ones(2, 5, dtype=torch.bool)
    weights = pool.weights_for(torch.tensor([5]))[0]
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    expected = (x.sort(dim=1, descending=True).values * weights[None, :, None]).sum(1)
    torch.testing.assert_close(pool(x, mask), expected)


def test_one_feature_pools_to_itself_and_order_does_not_matter():
    pool = gpo(2)
    x = torch.randn(3, 6, 4)
    single = torch.zeros(3, 6, dtype=torch.bool)
    single[:, 2] = True
    torch.testing.assert_close(pool(x, single), x[:, 2])
    mask = torch.ones(3, 6, dtype=torch.bool)
    shuffled = x[:, torch.randperm(6)]
    torch.testing.assert_close(pool(shuffled, mask), pool(x, mask))


def test_padding_and_holes_change_nothing():
    pool = gpo(3)
    x = torch.randn(4, 8, 5)
    holes = torch.tensor(
        [[1, 0, 1, 1, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1, 0, 1]],
        dtype=torch.bool,
    )
    out = pool(x, holes)
    garbage = torch.where(holes[..., None], x, torch.full_like(x, float("nan")))
    torch.testing.assert_close(pool(garbage, holes), out)
    for row in range(4):  # the same as the valid features alone, without any padding
        alone = x[row, holes[row]][None]
        torch.testing.assert_close(pool(alone, torch.ones(alone.shape[:2], dtype=torch.bool))[0], out[row])
    extra = torch.cat([garbage, torch.randn(4, 5, 5) * 1e4], dim=1)
    torch.testing.assert_close(pool(extra, torch.cat([holes, torch.zeros(4, 5, dtype=torch.bool)], 1)), out)


def test_weights_depend_on_the_size_only_and_gradients_flow():
    pool = gpo(4).train()
    x = torch.randn(3, 6, 4, requires_grad=True)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    pool(x, mask).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in pool.parameters())
    assert x.grad is not None and torch.equal(x.grad[1, 4:], torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least one"):
        pool(x, torch.zeros(3, 6, dtype=torch.bool))
