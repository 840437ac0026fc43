"""Who made VSE-infinity, how to cite it, and the zoo entries of the weights its authors published on the Hub.

The weights are in ``cccjc/vse-infty``.

Each folder there holds the ``model_best.pth`` their ``train.py`` wrote; ``from_pretrained`` downloads it,
checks it against the Hub's sha256 and converts it once (``convert.py``). The numbers are the authors'
(README of woodfrog/vse_infty: R@1 and R@5 of both directions; rsum from the paper where it gives one),
never ours: mmzoo has not evaluated these weights on COCO or Flickr30K.

Their BUTD-grid variants are not here: that backbone is a Caffe-style ResNet-101 that no timm or
torchvision architecture computes (docs/vse-infinity.md). The bi-GRU variants need SCAN's vocabulary,
which is not in the Hub folders, so they are ``manual``: download both, then ``mmzoo convert``.
"""

from __future__ import annotations

from mmzoo.plugin import CONVERTED, MANUAL, PretrainedEntry, Weights

PAPER = "Chen et al., Learning the Best Pooling Strategy for Visual Semantic Embedding, CVPR 2021"
CODE = "https://github.com/woodfrog/vse_infty"
LICENSE = "mit"
CITATION = """@inproceedings{chen2021vseinfty,
  title={Learning the Best Pooling Strategy for Visual Semantic Embedding},
  author={Chen, Jiacheng and Hu, Hexiang and Wu, Hao and Jiang, Yuning and Wang, Changhu},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2021}
}"""

REPO = "cccjc/vse-infty"
SOURCE = "Chen et al. 2021: R@1 / R@5 from the README of woodfrog/vse_infty (29df9d6, bigru branch 8600f89)"
SOURCE_RSUM = SOURCE + "; rsum from the paper"

DATASETS = {
    "coco": ("MS-COCO (Karpathy split)", "coco", "COCO 1K (5-fold)"),
    "f30k": ("Flickr30K (Karpathy split)", "flickr30k", "Flickr30K 1K test"),
}
REGION_INPUTS = "(N, 36, 2048) float32 bottom-up-attention region features (Anderson et al. 2018, SCAN's precomp)"
GRID_INPUTS = "RGB images (PIL or paths): resized to 512 x 512 (aspect not kept), ImageNet mean / std"


def recalls(i2t_r1: float, i2t_r5: float, t2i_r1: float, t2i_r5: float, rsum: float | None = None) -> dict:
    """The authors' numbers as published; the README gives no R@10."""
    out = {"i2t_r1": i2t_r1, "i2t_r5": i2t_r5, "t2i_r1": t2i_r1, "t2i_r5": t2i_r5}
    if rsum is not None:
        out["rsum"] = rsum
    return out


#: (variant, dataset) -> their published numbers.
RESULTS = {
    ("butd_region_bert", "coco"): recalls(79.7, 96.4, 64.8, 91.4, 527.5),
    ("butd_region_bert", "f30k"): recalls(81.7, 95.4, 61.4, 85.9, 513.5),
    ("wsl_grid_bert", "coco"): recalls(84.5, 98.1, 72.0, 93.9),
    ("wsl_grid_bert", "f30k"): recalls(88.4, 98.3, 74.2, 93.7),
    ("butd_region_bigru", "coco"): recalls(78.5, 96.0, 61.7, 90.3),
    ("butd_region_bigru", "f30k"): recalls(76.5, 94.2, 56.4, 83.4),
}


def entry(alias: str, recipe: str, variant: str, data: str, **extra: object) -> PretrainedEntry:
    dataset, dataset_id, split = DATASETS[data]
    grid = "grid" in variant
    options = extra.pop("options", {"bert": "bert-base-uncased"})
    url = extra.pop("url", None)
    fields = {
        "alias": alias,
        "recipe": recipe,
        "dataset": f"{dataset}, {'images' if grid else '36x2048 BUTD region features, ' + data + '_precomp'}",
        "dataset_id": dataset_id,
        "weights": Weights(
            repo=REPO,
            filename=f"{data}_{variant}/model_best.pth",
            format="vse-infinity-grid" if grid else "vse-infinity",
            options=options,
            url=url,
        ),
        "status": CONVERTED,
        "license": LICENSE,
        "paper": PAPER,
        "citation": CITATION,
        "code": CODE,
        "inputs": GRID_INPUTS if grid else REGION_INPUTS,
        "published_results": {split: RESULTS[(variant, data)]},
        "results_source": SOURCE_RSUM if "rsum" in RESULTS[(variant, data)] else SOURCE,
    }
    fields.update(extra)
    return PretrainedEntry(**fields)


def _entries() -> list[PretrainedEntry]:
    entries = []
    for data in ("coco", "f30k"):
        entries.append(
            entry(
                f"vse-infinity-{data}",
                "vse-infinity",
                "butd_region_bert",
                data,
                notes="BUTD region features + BERT-base. Their BUTD-grid variant has no entry: its Caffe-style "
                "ResNet-101 maps onto no timm / torchvision architecture (docs/vse-infinity.md).",
            )
        )
        entries.append(
            entry(
                f"vse-infinity-wsl-grid-{data}",
                "vse-infinity-wsl-grid",
                "wsl_grid_bert",
                data,
                notes="From pixels: WSL-Images ResNeXt-101 32x8d (timm resnext101_32x8d, strictly the same network) "
                "+ BERT-base; `mmzoo search FOLDER 'query'` works on images. Their cv2 resize does not antialias, "
                "timm's PIL resize does: pixels differ slightly from theirs.",
            )
        )
        vocab = f"{data}_precomp_vocab.json"
        entries.append(
            entry(
                f"vse-infinity-bigru-{data}",
                "vse-infinity-bigru",
                "butd_region_bigru",
                data,
                options={},
                url=f"https://huggingface.co/{REPO}/tree/main/{data}_butd_region_bigru",
                status=MANUAL,
                notes=f"bi-GRU text (their bigru branch). Needs SCAN's {vocab}, which the Hub folder does not hold: "
                f"download {data}_butd_region_bigru/model_best.pth from {REPO} and the vocabulary from SCAN's data, "
                f"then `mmzoo convert vse-infinity-bigru-{data} model_best.pth --vocab {vocab}`.",
            )
        )
    return entries


ENTRIES = _entries()
