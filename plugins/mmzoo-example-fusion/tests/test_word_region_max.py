"""The example plugin's own tests: mmzoo's contract suite, for free, plus what is particular to this block."""

from __future__ import annotations

import torch

from mmzoo.plugin import build_component, check_fusion, l2_normalize, random_fragments
from mmzoo_example_fusion import WordRegionMax


def test_word_region_max_keeps_the_fusion_contract():
    check_fusion(WordRegionMax)


def test_each_word_takes_its_best_region():
    fusion = build_component(WordRegionMax, temperature=1.0).eval()
    images, texts = random_fragments(2, 4, seed=0), random_fragments(3, 5, seed=1)
    with torch.no_grad():
        scores = fusion(images, texts)
        regions = l2_normalize(fusion.region_proj(images.features))
        words = l2_normalize(fusion.word_proj(texts.features))
    for i in range(2):
        for t in range(3):
            cos = words[t][texts.mask[t]] @ regions[i][images.mask[i]].t()
            torch.testing.assert_close(scores[i, t], cos.max(dim=1).values.mean(), atol=1e-5, rtol=1e-5)
