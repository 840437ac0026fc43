"""The retrieval protocol against hand-worked rankings (ties included), 5-fold averaging, the binding probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmzoo import evaluation
from mmzoo.errors import InputError
from mmzoo.evaluation import (
    METRIC_KEYS,
    RECALL_KEYS,
    binding_probe,
    ranks,
    recall_metrics,
    recall_metrics_fold5,
)


def reference_ranks(sims: np.ndarray, cpi: int) -> tuple[np.ndarray, np.ndarray]:
    """The VSE++/SCAN evaluation loops (argsort descending), valid when no two scores tie."""
    n_img = sims.shape[0]
    i2t = np.array(
        [
            min(np.where(np.argsort(sims[i])[::-1] == j)[0][0] for j in range(cpi * i, cpi * i + cpi))
            for i in range(n_img)
        ]
    )
    t2i = np.array([np.where(np.argsort(sims[:, j])[::-1] == j // cpi)[0][0] for j in range(sims.shape[1])])
    return i2t, t2i


def test_hand_worked_ranking_without_ties():
    sims = np.array(
        [
            [0.9, 0.1, 0.5, 0.95],  # image 0 (captions 0, 1): caption 3 beats its best caption -> rank 1
            [0.2, 0.3, 0.4, 0.1],  # image 1 (captions 2, 3): best own 0.4, no wrong caption >= -> rank 0
        ]
    )
    i2t, t2i = ranks(sims, captions_per_image=2)
    assert i2t.tolist() == [1, 0]
    assert t2i.tolist() == [0, 1, 1, 1]
    m = recall_metrics(sims, captions_per_image=2)
    assert list(m) == list(METRIC_KEYS)
    assert m["i2t_r1"] == 50.0 and m["i2t_r5"] == 100.0 and m["i2t_r10"] == 100.0
    assert m["i2t_medr"] == 1.0  # floor(median([0, 1]) = 0.5) + 1
    assert m["i2t_meanr"] == 1.5
    assert m["t2i_r1"] == 25.0 and m["t2i_r5"] == 100.0
    assert m["t2i_medr"] == 2.0  # floor(median([0, 1, 1, 1]) = 1) + 1
    assert m["t2i_meanr"] == 1.75
    assert m["rsum"] == 50 + 100 + 100 + 25 + 100 + 100


def test_ties_are_pessimistic_against_wrong_candidates_only():
    sims = np.array(
        [
            [0.5, 0.2, 0.5, 0.0],  # best own caption ties with a wrong one -> rank 1
            [0.1, 0.1, 0.7, 0.7],  # the two own captions tie with each other -> rank 0
        ]
    )
    i2t, t2i = ranks(sims, captions_per_image=2)
    assert i2t.tolist() == [1, 0]
    # caption 0: own image 0.5 vs 0.1 -> 0; caption 1: 0.2 vs 0.1 -> 0; caption 2: own 0.7 vs 0.5 -> 0;
    # caption 3: own 0.7 vs 0.0 -> 0
    assert t2i.tolist() == [0, 0, 0, 0]
    tied = np.array([[0.3, 0.3], [0.3, 0.3]])  # cpi 1: caption 0's two images tie
    assert ranks(tied, 1)[1].tolist() == [1, 1]


def test_constant_scores_rank_last_not_first():
    m = recall_metrics(torch.zeros(3, 15))
    assert m["i2t_r1"] == 0.0 and m["t2i_r1"] == 0.0
    assert m["i2t_meanr"] == 11.0  # 10 wrong captions tie with the right ones
    assert m["t2i_meanr"] == 3.0
    assert (
        m["rsum"] == 100.0 + 100.0
    )  # i2t R@10 is 0 (rank 10), t2i R@5 and R@10 are 100 with 3 images: 0+0+0+0+100+100


def test_perfect_scores():
    m = recall_metrics(torch.eye(4).repeat_interleave(5, dim=1))
    assert m["rsum"] == 600.0 and m["i2t_medr"] == 1.0 and m["t2i_meanr"] == 1.0


@pytest.mark.parametrize("n_img,cpi,step", [(7, 5, None), (300, 5, None), (300, 5, 1000), (40, 1, 7)])
def test_matches_reference_loops_on_random_scores(n_img, cpi, step, monkeypatch):
    if step is not None:  # rank in many small steps, as a 5,000 x 25,000 matrix is
        monkeypatch.setattr(evaluation.metrics, "_ENTRIES_PER_STEP", step)
    rng = np.random.default_rng(n_img)
    sims = rng.normal(size=(n_img, n_img * cpi))
    sims[np.arange(n_img), np.arange(n_img) * cpi] += 1.5  # make recall non-trivial
    i2t, t2i = ranks(torch.from_numpy(sims), cpi)
    ref_i2t, ref_t2i = reference_ranks(sims, cpi)
    np.testing.assert_array_equal(i2t, ref_i2t)
    np.testing.assert_array_equal(t2i, ref_t2i)


def test_bad_score_matrix_is_an_input_error():
    with pytest.raises(InputError, match="caption columns"):
        recall_metrics(torch.zeros(3, 14))
    with pytest.raises(InputError, match="2-D"):
        recall_metrics(torch.zeros(3))
    bad = torch.zeros(2, 10)
    bad[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        recall_metrics(bad)


def test_fold5_averages_folds_and_takes_rsum_from_averaged_recalls():
    rng = np.random.default_rng(0)
    n, cpi = 30, 5
    sims = rng.normal(size=(n, n * cpi))
    sims[np.arange(n), np.arange(n) * cpi] += np.linspace(0.0, 4.0, n)  # folds differ in difficulty
    # entries outside the 5 diagonal blocks must not matter: make them win everything
    blocked = sims.copy()
    for f in range(5):
        a, b = 6 * f, 6 * (f + 1)
        mask = np.ones(n * cpi, bool)
        mask[a * cpi : b * cpi] = False
        blocked[a:b, mask] = 100.0
    folds = [recall_metrics(sims[6 * f : 6 * f + 6, 30 * f : 30 * f + 30]) for f in range(5)]
    m = recall_metrics_fold5(blocked)
    for key in METRIC_KEYS:
        if key != "rsum":
            assert m[key] == pytest.approx(np.mean([f[key] for f in folds]))
    assert m["rsum"] == pytest.approx(sum(m[k] for k in RECALL_KEYS))
    buggy = 6 * np.mean([np.mean([f["i2t_r1"], f["i2t_r5"], f["i2t_r10"]]) for f in folds])
    assert m["rsum"] != pytest.approx(buggy)
    with pytest.raises(InputError, match="divisible"):
        recall_metrics_fold5(torch.zeros(7, 35))


def test_binding_probe_on_a_hand_made_matrix():
    # 4 images, twins (0, 1) and (2, 3), 2 captions each: columns 0-1 image 0, 2-3 image 1, ...
    sims = np.array(
        [
            [0.9, 0.8, 0.1, 0.8, 0, 0, 0, 0],  # image 0: own c0 0.9 > twin c2 0.1; own c1 0.8 == twin c3 0.8 (tie)
            [0.2, 0.9, 0.7, 0.6, 0, 0, 0, 0],  # image 1: own c2 0.7 > c0 0.2; own c3 0.6 < c1 0.9
            [0, 0, 0, 0, 0.5, 0.5, 0.4, 0.4],  # image 2: own 0.5 > 0.4 twice
            [0, 0, 0, 0, 0.6, 0.6, 0.3, 0.3],  # image 3: own 0.3 < 0.6 twice
        ]
    )
    twins = np.array([1, 0, 3, 2])
    m = binding_probe(sims, twins, captions_per_image=2)
    # text side, caption c of image i: s(i, c) vs s(twin, c)
    # c0: 0.9 > 0.2 win; c1: 0.8 < 0.9 loss; c2: 0.7 > 0.1 win; c3: 0.6 < 0.8 loss;
    # c4: s(2, c4) 0.5 < s(3, c4) 0.6 loss; c5: loss; c6: s(3, c6) 0.3 < s(2, c6) 0.4 loss; c7: loss -> 2 / 8
    assert m["bind_t2i"] == 25.0
    # image side, (i, k): s(i, own k) vs s(i, twin's k): img0 win, tie; img1 win, loss; img2 win, win; img3 loss, loss
    assert m["bind_i2t"] == pytest.approx(100 * 4.5 / 8)


def test_binding_probe_ignores_images_without_twin_and_checks_input():
    sims = torch.tensor([[1.0, 0.0, 5.0], [0.0, 1.0, 5.0], [9.0, 9.0, 9.0]])
    assert binding_probe(sims, np.array([1, 0, -1]), 1) == {"bind_i2t": 100.0, "bind_t2i": 100.0}
    with pytest.raises(InputError, match="no image has a twin"):
        binding_probe(sims, np.array([-1, -1, -1]), 1)
    with pytest.raises(InputError):
        binding_probe(sims, np.array([1, 0]), 1)


def test_binding_probe_rejects_nan():
    sims = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    with pytest.raises(InputError, match="NaN"):
        binding_probe(sims, np.array([1, 0]), 1)
