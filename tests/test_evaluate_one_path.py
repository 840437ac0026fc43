"""One evaluation: ``mmzoo eval`` (every flag combination), the trainer's dev evaluation and the library call
``mmzoo.evaluation.evaluate(model, split, rerank=K, shortlist=..., fold5=..., probe=...)`` share one code path
and give the same numbers (issue 19, item 3); the binding probe by twin type and its i2t caveat (issue 24)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mmzoo.evaluation as evaluation
from mmzoo.cli import main
from mmzoo.data import PrecomputedDataset, make_shapes, open_split
from mmzoo.errors import InputError
from mmzoo.evaluation import BINDING_KEYS, METRIC_KEYS, evaluate
from tests.conftest import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")
REGION_DIM = 16


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Shapes data with 20 test images (5 folds of 4) and two saved tiny models, a fused one and a dual encoder."""
    root = tmp_path_factory.mktemp("one-path")
    make_shapes(root / "data", images=20, dev_images=10, test_images=10, seed=1, regions=8, region_dim=REGION_DIM)
    captions = PrecomputedDataset(root / "data", "train").captions
    for recipe in ("mmca", "vsepp"):
        model = tiny_model(recipe, **{"visual.in_dim": REGION_DIM})
        model.text.fit(captions)
        model.eval().save_pretrained(root / recipe)
    return root


def cli_metrics(root, tmp_path, *flags):
    out = tmp_path / "m.json"
    args = ["eval", str(root / "mmca"), "--data", str(root / "data"), "--device", "cpu", "--no-progress"]
    assert main([*args, *flags, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    ("flags", "options"),
    [
        (["--rerank", "3", "--fold5"], {"rerank": 3, "fold5": True}),
        (["--rerank", "3", "--fold5", "--shortlist", "SHORTLIST"], {"rerank": 3, "fold5": True, "shortlist": True}),
        (["--fold5"], {"fold5": True}),
    ],
)
def test_cli_and_library_give_the_same_numbers_through_evaluate(saved, tmp_path, monkeypatch, flags, options):
    import mmzoo

    root = saved
    flags = [str(root / "vsepp") if f == "SHORTLIST" else f for f in flags]
    calls = []
    original = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: (calls.append(k), original(*a, **k))[1])
    printed = cli_metrics(root, tmp_path, *flags)
    assert len(calls) == 1 and calls[0]["rerank"] == options.get("rerank") and calls[0]["fold5"] is True
    if options.pop("shortlist", False):
        options["shortlist"] = mmzoo.from_pretrained(str(root / "vsepp"))
    direct = evaluate(
        mmzoo.from_pretrained(str(root / "mmca")), open_split(root / "data", "test"), progress=False, **options
    )
    assert set(printed) == set(direct) and set(METRIC_KEYS) | {"bind_t2i"} <= set(direct)
    assert printed == pytest.approx({k: round(v, 6) for k, v in direct.items()}, abs=1e-5)
    if "rerank" in options:
        assert direct["rerank"] == 3.0 and 0 <= direct["t2i_shortlist"] <= 100


def test_a_rerank_as_long_as_a_fold_is_the_exhaustive_fold5(saved):
    import mmzoo

    model, split = mmzoo.from_pretrained(str(saved / "mmca")), open_split(saved / "data", "test")
    exact = evaluate(model, split, fold5=True, progress=False)
    reranked = evaluate(model, split, fold5=True, rerank=20, progress=False)  # 4 images x 5 captions per fold
    assert all(reranked[k] == pytest.approx(exact[k]) for k in METRIC_KEYS)
    assert reranked["bind_t2i"] == pytest.approx(exact["bind_t2i"])


def test_evaluate_refuses_bad_rerank_arguments(saved):
    import mmzoo

    model, split = mmzoo.from_pretrained(str(saved / "mmca")), open_split(saved / "data", "test")
    for bad in (0, -2, 2.5, True):
        with pytest.raises(InputError, match="rerank must be"):
            evaluate(model, split, rerank=bad, progress=False)
    with pytest.raises(InputError, match="give rerank=K"):
        evaluate(model, split, shortlist=model, progress=False)
    with pytest.raises(InputError, match="probe must be"):
        evaluate(model, split, probe="yes", progress=False)
    assert not set(BINDING_KEYS) & set(evaluate(model, split, probe=False, progress=False))


def test_binding_probe_by_twin_type(saved, tmp_path, capsys):
    """Issue 24: twin accuracy per type (colour, shape, size, position) when the data says what each pair differs
    in, from `mmzoo eval --by-type` and evaluate(probe="by_type"); a hint names the types otherwise."""
    import mmzoo

    split = open_split(saved / "data", "test")
    types = sorted({t for t in split.twin_types if t != "-"})
    metrics = evaluate(mmzoo.from_pretrained(str(saved / "mmca")), split, probe="by_type", progress=False)
    assert {f"bind_t2i_{t}" for t in types} | {f"bind_i2t_{t}" for t in types} <= set(metrics)
    # each type's number is the probe of its pairs alone; the overall one weighs them by their count
    counts = {t: split.twin_types.count(t) for t in types}
    overall = sum(metrics[f"bind_t2i_{t}"] * n for t, n in counts.items()) / sum(counts.values())
    assert overall == pytest.approx(metrics["bind_t2i"])
    by_type = cli_metrics(saved, tmp_path, "--by-type")
    assert by_type == pytest.approx({k: round(v, 6) for k, v in metrics.items()}, abs=1e-5)
    assert all(f"{t} twins: text->image" in capsys.readouterr().out for t in types[:1])
    cli_metrics(saved, tmp_path)
    assert "--by-type reports the probe per type" in capsys.readouterr().out


def test_bind_i2t_only_where_twin_captions_permute(saved, tmp_path, capsys):
    """Issue 24, problem 4: bind_i2t assumes caption k of a twin is a word permutation of caption k; on data where
    it is not, it is left out (with the reason printed) and bind_t2i stays."""
    import shutil

    import mmzoo

    data = tmp_path / "data"
    shutil.copytree(saved / "data", data)
    captions = (data / "test_caps.txt").read_text().splitlines()
    captions[0] = "a caption with other words"  # image 0's caption 0 is no longer its twin's words reordered
    (data / "test_caps.txt").write_text("\n".join(captions) + "\n")
    split = open_split(data, "test")
    metrics = evaluate(mmzoo.from_pretrained(str(saved / "mmca")), split, probe="by_type", progress=False)
    assert "bind_t2i" in metrics and "bind_i2t" not in metrics
    assert not any(k.startswith("bind_i2t") for k in metrics) and any(k.startswith("bind_t2i_") for k in metrics)
    args = ["eval", str(saved / "mmca"), "--data", str(data), "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    assert "image->text not measured" in capsys.readouterr().out
    assert evaluation.captions_permute(open_split(saved / "data", "test").captions, split.twins)
    assert not evaluation.captions_permute(captions, np.asarray(split.twins))
