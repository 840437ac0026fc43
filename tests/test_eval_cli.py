"""evaluate / encode_split / score_matrix on tiny models, and `mmzoo make-data` + `mmzoo eval` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmzoo.cli import main
from mmzoo.contracts import Fragments
from mmzoo.data import PrecomputedDataset, make_shapes
from mmzoo.errors import InputError
from mmzoo.evaluation import BINDING_KEYS, METRIC_KEYS, encode_split, evaluate, recall_metrics, score_matrix
from tests.conftest import tiny_model

REGION_DIM = 32


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, images=40, dev_images=10, test_images=5, seed=0, regions=10, region_dim=REGION_DIM)
    return out


def fitted(recipe: str, shapes_dir) -> torch.nn.Module:
    model = tiny_model(recipe, **{"visual.in_dim": REGION_DIM})
    model.text.fit(PrecomputedDataset(shapes_dir, "train").captions)
    return model.eval()


@pytest.mark.slow
def test_score_matrix_blocks_equal_one_shot(shapes_dir):
    model = fitted("mmca", shapes_dir)
    ds = PrecomputedDataset(shapes_dir, "test")
    images, texts = encode_split(model, ds, batch_size=7, progress=False)
    assert len(images) == ds.num_images == 10 and len(texts) == 50
    blocked = score_matrix(model, images, texts, block_size=6)
    with torch.inference_mode():
        whole = model.similarity(images, texts, block_size=1000)
    torch.testing.assert_close(blocked, whole, rtol=1e-4, atol=1e-5)
    assert not model.training


@pytest.mark.slow
def test_evaluate_full_and_fold5_agree_on_binding(shapes_dir):
    model = fitted("mmca", shapes_dir)
    ds = PrecomputedDataset(shapes_dir, "test")
    full = evaluate(model, ds, progress=False)
    assert set(full) == set(METRIC_KEYS) | set(BINDING_KEYS)
    images, texts = encode_split(model, ds, progress=False)
    with torch.inference_mode():
        sims = model.similarity(images, texts)
    expected = recall_metrics(sims)
    for key in METRIC_KEYS:
        assert full[key] == pytest.approx(expected[key])
    folds = evaluate(model, ds, fold5=True, progress=False)
    assert folds["bind_t2i"] == pytest.approx(full["bind_t2i"]) and folds["bind_i2t"] == pytest.approx(full["bind_i2t"])
    assert folds["t2i_r5"] == 100.0  # 2 images per fold: every text->image rank is below 5


def test_evaluate_rejects_data_of_another_size(shapes_dir):
    model = tiny_model("vsepp", **{"visual.in_dim": 24})
    with pytest.raises(InputError, match=r"visual.in_dim"):
        evaluate(model, PrecomputedDataset(shapes_dir, "dev"), progress=False)


def test_make_data_cli(tmp_path, capsys):
    assert main(["make-data", "shapes", "--out", str(tmp_path / "d"), "--images", "20", "--seed", "3"]) == 0
    assert "test" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "d" / "mmzoo_data.json").read_text())
    assert manifest["seed"] == 3 and manifest["splits"]["train"]["images"] == 20
    assert manifest["splits"]["test"]["images"] == 20  # 10 scenes (the minimum) and their twins
    assert main(["make-data", "shapes", "--out", str(tmp_path / "e"), "--images", "20", "--regions", "3"]) == 2
    assert "at least 8 regions" in capsys.readouterr().err


def test_eval_cli_on_saved_model_and_run_dir(shapes_dir, tmp_path, capsys):
    model = fitted("vsepp", shapes_dir)
    model.save_pretrained(tmp_path / "saved")
    model.save_pretrained(tmp_path / "run" / "best")
    out = tmp_path / "m.json"
    args = ["--data", str(shapes_dir), "--split", "test", "--device", "cpu", "--no-progress"]
    assert main(["eval", str(tmp_path / "saved"), *args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rsum" in printed and "binding probe" in printed and "image->text" in printed
    metrics = json.loads(out.read_text())
    assert set(metrics) == set(METRIC_KEYS) | set(BINDING_KEYS)
    assert all(isinstance(v, float) for v in metrics.values())
    expected = evaluate(model, PrecomputedDataset(shapes_dir, "test"), progress=False)
    assert metrics == pytest.approx(expected)
    out5 = tmp_path / "m5.json"
    assert main(["eval", str(tmp_path / "run"), *args, "--fold5", "--json", str(out5)]) == 0
    assert json.loads(out5.read_text())["rsum"] != metrics["rsum"] or np.isclose(metrics["rsum"], 600)
    assert main(["eval", str(tmp_path / "run"), *args, "--max-images", "4"]) == 0
    assert "test': 4 images" in capsys.readouterr().out


def test_eval_cli_errors(shapes_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), "--data", str(shapes_dir), "--device", "cpu"]) == 2
    assert "no config.json" in capsys.readouterr().err
    model = fitted("vsepp", shapes_dir)
    model.save_pretrained(tmp_path / "saved")
    assert main(["eval", str(tmp_path / "saved"), "--data", str(tmp_path / "nodata"), "--device", "cpu"]) == 2
    assert "not found" in capsys.readouterr().err


class RecordingModel:
    """Stands in for a MatchingModel: dot-product scores, and records the block shapes it was asked for."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.blocks: list[tuple[int, int]] = []

    def similarity(self, images, texts, precision="auto"):
        self.blocks.append((len(images), len(texts)))
        return images.pooled @ texts.pooled.t()


def random_fragments(n: int, seed: int) -> Fragments:
    g = torch.Generator().manual_seed(seed)
    pooled = torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=1)
    return Fragments(torch.randn(n, 3, 8, generator=g), torch.ones(n, 3, dtype=torch.bool), pooled)


def test_score_matrix_hands_the_model_one_block_at_a_time():
    images, texts = random_fragments(250, 0), random_fragments(1250, 1)
    model = RecordingModel()
    sims = score_matrix(model, images, texts, block_size=100)
    torch.testing.assert_close(sims, images.pooled @ texts.pooled.t())
    assert max(b[0] for b in model.blocks) == 100 and max(b[1] for b in model.blocks) == 100
    assert len(model.blocks) == 3 * 13 and sims.dtype == torch.float32


def test_fold5_needs_images_divisible_by_5(shapes_dir):
    model = fitted("vsepp", shapes_dir)
    with pytest.raises(InputError, match="divisible by 5"):
        evaluate(model, PrecomputedDataset(shapes_dir, "dev", max_images=7), fold5=True, progress=False)


def test_encode_split_keeps_fragments_only_for_fused_models(shapes_dir):
    ds = PrecomputedDataset(shapes_dir, "dev")
    cosine = fitted("vsepp", shapes_dir)
    images, texts = encode_split(cosine, ds, progress=False)
    assert images.features.shape[1] == 1 and texts.features.shape[1] == 1
    fused = fitted("mmca", shapes_dir)
    full_images, full_texts = encode_split(fused, ds, progress=False)
    assert full_images.features.shape[1] == ds.regions and full_texts.features.shape[1] > 1
    raw = cosine.encode_images(torch.from_numpy(ds.image_features(range(ds.num_images))[0]))
    torch.testing.assert_close(images.pooled, raw.pooled)
    full = score_matrix(cosine, raw, cosine.encode_texts(ds.captions))
    torch.testing.assert_close(score_matrix(cosine, images, texts), full)


def test_eval_cli_names_go_to_from_pretrained(shapes_dir, tmp_path, monkeypatch, capsys):
    from mmzoo.cli import _load

    args = ["eval", "mmca-shapes", "--data", str(shapes_dir), "--device", "cpu", "--no-progress"]
    assert main(args) == 2
    assert "Unknown pretrained model 'mmca-shapes'" in capsys.readouterr().err
    model = fitted("vsepp", shapes_dir)
    asked = []

    def from_pretrained(name, device=None):
        asked.append((name, device))
        return model

    monkeypatch.setattr(_load, "from_pretrained", from_pretrained)
    assert main(args) == 0
    assert asked == [("mmca-shapes", "cpu")] and "rsum" in capsys.readouterr().out


def test_eval_cli_cuda_without_cuda(shapes_dir, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    model = fitted("vsepp", shapes_dir)
    model.save_pretrained(tmp_path / "saved")
    assert main(["eval", str(tmp_path / "saved"), "--data", str(shapes_dir), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_no_binding_keys_when_no_twin_is_left(shapes_dir):
    model = fitted("vsepp", shapes_dir)
    metrics = evaluate(model, PrecomputedDataset(shapes_dir, "test", max_images=1), progress=False)
    assert set(metrics) == set(METRIC_KEYS)
