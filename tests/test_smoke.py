import torch

from tests.conftest import CAPTIONS, tiny_model


def test_mmca_trains_one_step():
    model = tiny_model("mmca")
    out = model(torch.randn(4, 5, 24), CAPTIONS)
    assert out.scores.shape == (4, 4)
    out.loss.backward()
    assert torch.isfinite(out.loss)
