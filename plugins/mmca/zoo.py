"""Who made MMCA, how to cite it, and its zoo entries.

COCO and Flickr30K weights, not trained yet, with the paper's numbers labelled as theirs.
"""

from __future__ import annotations

from mmzoo.plugin import NOT_TRAINED, PretrainedEntry, Weights

PAPER = "Wei et al., Multi-Modality Cross Attention Network for Image and Sentence Matching, CVPR 2020"
CITATION = """@inproceedings{wei2020mmca,
  title     = {Multi-Modality Cross Attention Network for Image and Sentence Matching},
  author    = {Wei, Xi and Zhang, Tianzhu and Li, Yan and Zhang, Yongdong and Wu, Feng},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {10941--10950},
  year      = {2020}
}"""
#: the paper has no official code; this port (and the weights it trains) is mmzoo's, Apache-2.0.
LICENSE = "apache-2.0"
INPUTS = "(N, 36, 2048) float32 bottom-up-attention region features (Faster R-CNN on Visual Genome, Anderson et al.)"
#: the paper's own numbers (docs/mmca.md, "Published numbers"), shown only as the paper's, never as ours.
PAPER_RESULTS: dict[str, dict[str, dict[str, float]]] = {
    "coco": {
        "COCO 1K (5-fold)": {
            "i2t_r1": 74.8,
            "i2t_r5": 95.6,
            "i2t_r10": 97.7,
            "t2i_r1": 61.6,
            "t2i_r5": 89.8,
            "t2i_r10": 95.2,
            "rsum": 514.7,
        },
        "COCO 5K": {
            "i2t_r1": 54.0,
            "i2t_r5": 82.5,
            "i2t_r10": 90.7,
            "t2i_r1": 38.7,
            "t2i_r5": 69.7,
            "t2i_r10": 80.8,
            "rsum": 416.4,
        },
    },
    "f30k": {
        "Flickr30K 1K test": {
            "i2t_r1": 74.2,
            "i2t_r5": 92.8,
            "i2t_r10": 96.4,
            "t2i_r1": 54.8,
            "t2i_r5": 81.4,
            "t2i_r10": 87.8,
            "rsum": 487.4,
        }
    },
}


def entry(dataset: str, words: str, dataset_id: str) -> PretrainedEntry:
    alias = f"mmca-{dataset}"
    return PretrainedEntry(
        alias=alias,
        recipe="mmca",
        dataset=words,
        dataset_id=dataset_id,
        weights=Weights(repo=f"mmzoo/{alias}", format="mmzoo"),
        status=NOT_TRAINED,
        license=LICENSE,
        paper=PAPER,
        citation=CITATION,
        inputs=INPUTS,
        published_results=PAPER_RESULTS[dataset],
        results_source="Wei et al., CVPR 2020; the paper has no official code",
        training_config=f"configs/{alias}.yaml",
        data_dir=f"data/{dataset}_precomp",
    )


ENTRIES = [
    entry("coco", "MS-COCO (Karpathy split, 36x2048 bottom-up region features, coco_precomp)", "coco"),
    entry("f30k", "Flickr30K (Karpathy split, 36x2048 bottom-up region features, f30k_precomp)", "flickr30k"),
]
