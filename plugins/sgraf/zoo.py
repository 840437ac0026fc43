"""Who made SGRAF, how to cite it, and the zoo entries of the checkpoints its authors published.

The checkpoints are on Google Drive, for the python3.6 branch. Each dataset has one archive with an SAF and an SGR model (their README, "Pre-trained models and evaluation";
their evaluation.py loads ``runs/Flickr30K_SGRAF/f30k_SAF/model_best.pth.tar``); SGRAF proper is the two
averaged, so each dataset also gets an ensemble entry. Nothing is copied to the Hub: the entries are MANUAL,
and say how to download the archive and convert a model (which installs it under its alias).

``published_results`` are the authors' numbers, from the "updated results (better than the original paper)"
table of their README (R@1/5/10, sentence retrieval = i2t, image retrieval = t2i); rsum is their six recalls
added up. mmzoo has not re-measured them: the features and checkpoints cannot be fetched here.
"""

from __future__ import annotations

from mmzoo.plugin import MANUAL, PretrainedEntry, Weights

PAPER = "Diao et al., Similarity Reasoning and Filtration for Image-Text Matching, AAAI 2021"
CITATION = """@inproceedings{Diao2021SGRAF,
  title={Similarity reasoning and filtration for image-text matching},
  author={Diao, Haiwen and Zhang, Ying and Ma, Lin and Lu, Huchuan},
  booktitle={Proceedings of the AAAI conference on artificial intelligence},
  volume={35},
  number={2},
  pages={1218--1226},
  year={2021}
}"""
CODE = "https://github.com/Paranioar/SGRAF/tree/python3.6"
LICENSE = "apache-2.0"

ARCHIVES = {
    "f30k": "https://drive.google.com/file/d/1OBRIn1-Et49TDu8rk0wgP0wKXlYRk4Uj/view?usp=sharing",
    "coco": "https://drive.google.com/file/d/1SpuORBkTte_LqOboTgbYRN5zXhn4M7ag/view?usp=sharing",
}
VOCABS = {
    "f30k": "https://github.com/Paranioar/SGRAF/blob/python3.6/vocab/f30k_precomp_vocab.json",
    "coco": "https://github.com/Paranioar/SGRAF/blob/python3.6/vocab/coco_precomp_vocab.json",
}
DATASETS = {
    "f30k": "Flickr30K (1,000 test images, 5 captions each; 36x2048 BUTD region features, f30k_precomp)",
    "coco": "MS-COCO (Karpathy split, 36x2048 BUTD region features, coco_precomp; 1K = 5-fold testall, 5K = testall)",
}
INPUTS = "(N, 36, 2048) float32 bottom-up-attention region features (Anderson et al. 2018), as SCAN's precomp data"
SOURCE = "Diao et al. 2021, README of Paranioar/SGRAF ('updated results, better than the original paper')"


def _recalls(i2t: tuple[float, float, float], t2i: tuple[float, float, float]) -> dict[str, float]:
    keys = ("i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")
    out = dict(zip(keys, (*i2t, *t2i), strict=True))
    out["rsum"] = round(sum(out.values()), 1)
    return out


#: their README table: dataset -> model -> split -> (i2t R@1, R@5, R@10), (t2i R@1, R@5, R@10)
PUBLISHED = {
    "f30k": {
        "saf": {"Flickr30K 1K test": _recalls((75.6, 92.7, 96.9), (56.5, 82.0, 88.4))},
        "sgr": {"Flickr30K 1K test": _recalls((76.6, 93.7, 96.6), (56.1, 80.9, 87.0))},
        "sgraf": {"Flickr30K 1K test": _recalls((78.4, 94.6, 97.5), (58.2, 83.0, 89.1))},
    },
    "coco": {
        "saf": {
            "COCO 1K (5-fold)": _recalls((78.0, 95.9, 98.5), (62.2, 89.5, 95.4)),
            "COCO 5K": _recalls((55.5, 83.8, 91.8), (40.1, 69.7, 80.4)),
        },
        "sgr": {
            "COCO 1K (5-fold)": _recalls((77.3, 96.0, 98.6), (62.1, 89.6, 95.3)),
            "COCO 5K": _recalls((57.3, 83.2, 90.6), (40.5, 69.6, 80.3)),
        },
        "sgraf": {
            "COCO 1K (5-fold)": _recalls((79.2, 96.5, 98.6), (63.5, 90.2, 95.8)),
            "COCO 5K": _recalls((58.8, 84.8, 92.1), (41.6, 70.9, 81.5)),
        },
    },
}
HUB_DATASET = {"f30k": "flickr30k", "coco": "coco"}
ARCHIVE_NAMES = {"f30k": "Flickr30K_SGRAF", "coco": "MSCOCO_SGRAF"}


def steps(dataset: str, module: str) -> str:
    """The manual steps of one model: download, unpack, convert (which installs it under its alias)."""
    alias = f"{module}-{dataset}"
    return (
        f"1. Download the authors' archive {ARCHIVE_NAMES[dataset]} from {ARCHIVES[dataset]} (Google Drive; it holds "
        f"an SAF and an SGR model with their logs) and unpack it. "
        f"2. Download their vocabulary {VOCABS[dataset]} ({dataset}_precomp_vocab.json). "
        f"3. Run `mmzoo convert {alias} PATH/TO/{module.upper()}/model_best.pth.tar --vocab {dataset}_precomp_vocab.json` "
        f"with the {module.upper()} model's model_best.pth.tar; mmzoo.from_pretrained({alias!r}) then loads it."
    )


def _entries() -> list[PretrainedEntry]:
    out = []
    for dataset in ("f30k", "coco"):
        about = {  # what every entry of this dataset shares
            "dataset": DATASETS[dataset],
            "dataset_id": HUB_DATASET[dataset],
            "status": MANUAL,
            "license": LICENSE,
            "paper": PAPER,
            "citation": CITATION,
            "code": CODE,
            "inputs": INPUTS,
            "results_source": SOURCE,
        }
        for module in ("saf", "sgr"):
            alias = f"{module}-{dataset}"
            out.append(
                PretrainedEntry(
                    alias=alias,
                    recipe=module,
                    weights=Weights(
                        repo=None,
                        filename="model_best.pth.tar",
                        format="sgraf",
                        options={"vocab": f"{dataset}_precomp_vocab.json"},
                        url=ARCHIVES[dataset],
                    ),
                    published_results=PUBLISHED[dataset][module],
                    notes=steps(dataset, module),
                    **about,
                )
            )
        out.append(
            PretrainedEntry(
                alias=f"sgraf-{dataset}",
                recipe="sgr",
                weights=Weights(url=ARCHIVES[dataset]),  # nothing to convert: the members are
                published_results=PUBLISHED[dataset]["sgraf"],
                members=(f"saf-{dataset}", f"sgr-{dataset}"),
                notes=(
                    f"SGRAF = the mean of the SAF and SGR similarities. Install both members by hand first "
                    f"(`mmzoo convert saf-{dataset} ...` and `mmzoo convert sgr-{dataset} ...`, see their entries); "
                    f"then mmzoo.from_pretrained('sgraf-{dataset}') loads the ensemble."
                ),
                **about,
            )
        )
    return out


ENTRIES = _entries()
