import torch

from tests.conftest import CAPTIONS, tiny_model


def test_mmca_trains_one_step():
    model = tiny_model("mmca")
    out = model(torch.randn(4, 5, 24), CAPTIONS)
    assert out.scores.shape == (4, 4)
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_save_and_load_roundtrip(tmp_path):
    from mmzoo.model import load_folder

    model = tiny_model("mmca").eval()
    model.save_pretrained(tmp_path / "m")
    loaded = load_folder(tmp_path / "m")
    x = torch.randn(2, 5, 24)
    with torch.no_grad():
        a = model.similarity(model.encode_images(x), model.encode_texts(CAPTIONS))
        b = loaded.similarity(loaded.encode_images(x), loaded.encode_texts(CAPTIONS))
    assert torch.equal(a, b)
