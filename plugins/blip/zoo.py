"""The zoo entries of BLIP's retrieval weights that Salesforce published on the Hub in the transformers layout.

``from_pretrained("blip-itm-base-coco")`` downloads the official folder (config, tokenizer, image processor,
``model.safetensors``; never ``*.bin``, ``*.h5`` or code) with huggingface_hub, checks it against the Hub's
sha256, and each component reads its own tensors from it: no conversion. The only published number mmzoo holds
is LAVIS's for BLIP ViT-B fine-tuned on COCO (GUIDE.md); mmzoo has measured none of these weights.
"""

from __future__ import annotations

from mmzoo.plugin import PUBLISHED, PretrainedEntry, Weights

#: LAVIS's retrieval configs: candidates the ITM head reranks per query (``k_test``).
K_TEST = {"coco": 256, "flickr": 128}

PAPER = (
    "Li, Li, Xiong, Hoi: BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language "
    "Understanding and Generation, ICML 2022"
)
CITATION = """@inproceedings{li2022blip,
  title={BLIP: Bootstrapping Language-Image Pre-training for Unified Vision-Language Understanding and Generation},
  author={Li, Junnan and Li, Dongxu and Xiong, Caiming and Hoi, Steven},
  booktitle={International Conference on Machine Learning (ICML)},
  pages={12888--12900},
  year={2022}
}"""
LICENSE = "bsd-3-clause"
CODE = "https://github.com/salesforce/BLIP"

INPUTS = "RGB images (PIL or paths): BLIP image processor, 384 x 384 bicubic, CLIP mean / std; captions as text"
DATASETS = {
    "coco": ("MS-COCO (Karpathy split), fine-tuned from BLIP's 129M-image pre-training", "coco"),
    "flickr": ("Flickr30K (Karpathy split), fine-tuned from BLIP's 129M-image pre-training", "flickr30k"),
}
#: the numbers mmzoo holds, with their source; nothing else is claimed.
PUBLISHED_RESULTS = {
    "blip-itm-base-coco": (
        {"COCO 5K test": {"i2t_r1": 82.0, "t2i_r1": 64.5}},
        "LAVIS documentation, BLIP ViT-B fine-tuned on COCO, ITC shortlist + ITM rerank with k_test 256 (R@1 "
        "image->text | text->image) of LAVIS's checkpoint; Salesforce/blip-itm-base-coco is taken to be transformers' "
        "conversion of it (not verified by mmzoo). Not measured by mmzoo.",
    ),
}
NONE_HELD = "No published number is recorded in mmzoo for these weights; not measured by mmzoo."


def entry(size: str, data: str) -> PretrainedEntry:
    alias = f"blip-itm-{size}-{data}"
    dataset, dataset_id = DATASETS[data]
    results, source = PUBLISHED_RESULTS.get(alias, ({}, NONE_HELD))
    k = K_TEST[data]
    return PretrainedEntry(
        alias=alias,
        recipe=f"blip-itm-{size}",
        dataset=dataset,
        dataset_id=dataset_id,
        weights=Weights(repo=f"Salesforce/{alias}", format="transformers"),
        status=PUBLISHED,
        license=LICENSE,
        paper=PAPER,
        citation=CITATION,
        code=CODE,
        inputs=INPUTS,
        published_results=results,
        results_source=source,
        notes=f"The official transformers folder, read natively. Score: ITC cosine + ITM match logit. LAVIS reranks "
        f"the ITC top {k} per query (k_test {k} on {data}): `mmzoo eval {alias} ... --rerank {k}`, "
        f"`model.search(..., rerank={k})`. The ITM input starts with [ENC] as BLIP's code does, not [CLS] as "
        "transformers' forward does (docs/blip.md).",
    )


BLIP2_PAPER = (
    "Li, Li, Savarese, Hoi: BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image Encoders and Large "
    "Language Models, ICML 2023 (arXiv:2301.12597)"
)
BLIP2_CITATION = """@inproceedings{li2023blip2,
  title={BLIP-2: Bootstrapping Language-Image Pre-training with Frozen Image Encoders and Large Language Models},
  author={Li, Junnan and Li, Dongxu and Savarese, Silvio and Hoi, Steven},
  booktitle={International Conference on Machine Learning (ICML)},
  year={2023}
}"""
BLIP2_CODE = "https://github.com/salesforce/LAVIS/tree/main/projects/blip2"
#: LAVIS's BLIP-2 retrieval configs (lavis/projects/blip2/eval/ret_{coco,flickr}_eval.yaml): k_test 128 on both,
#: and the Flickr30K evaluation loads the COCO fine-tuned model (zero-shot transfer).
BLIP2_K_TEST = 128
BLIP2_RESULTS_SOURCE = (
    "Papers with Code's 'Results from the Paper' for arXiv:2301.12597 (BLIP-2 ViT-g; COCO 5K fine-tuned, Flickr30K "
    "1K zero-shot from the COCO model), R@1 image->text | text->image; the paper's own table was not read by mmzoo, "
    "and Salesforce/blip2-itm-vit-g-coco is taken to be transformers' conversion of LAVIS's COCO checkpoint (not "
    "verified). Not measured by mmzoo."
)


BLIP2_ALIAS = "blip2-itm-vit-g-coco"


def blip2_entry() -> PretrainedEntry:
    return PretrainedEntry(
        alias=BLIP2_ALIAS,
        recipe="blip2-itm-vit-g",
        dataset="MS-COCO (Karpathy split), fine-tuned from BLIP-2's stage-1 pre-training (129M images)",
        dataset_id="coco",
        weights=Weights(repo="Salesforce/blip2-itm-vit-g-coco", format="transformers"),
        status=PUBLISHED,
        license="bsd-3-clause",
        paper=BLIP2_PAPER,
        citation=BLIP2_CITATION,
        code=BLIP2_CODE,
        inputs="RGB images (PIL or paths): the folder's BLIP image processor (its size, CLIP mean / std); captions "
        "as text",
        published_results={
            "COCO 5K test": {"i2t_r1": 85.4, "t2i_r1": 68.3},
            "Flickr30K 1K test (zero-shot)": {"i2t_r1": 97.6, "t2i_r1": 89.7},
        },
        results_source=BLIP2_RESULTS_SOURCE,
        notes=f"The official transformers folder (Blip2ForImageTextRetrieval, use_qformer_text_input), read natively. "
        "Score: ITM match logit (mean over the 32 queries) + ITC (max over the 32 queries). LAVIS reranks the ITC top "
        f"{BLIP2_K_TEST} per query (k_test {BLIP2_K_TEST}): `mmzoo eval {BLIP2_ALIAS} ... --rerank {BLIP2_K_TEST}`, "
        f"`model.search(..., rerank={BLIP2_K_TEST})` (docs/blip.md). The licence is LAVIS's (BSD-3-Clause); the Hub card's was "
        "not read by mmzoo.",
    )


def zoo_entries() -> list[PretrainedEntry]:
    return [entry(size, data) for data in ("coco", "flickr") for size in ("base", "large")] + [blip2_entry()]


#: the zoo entries this family registers
ENTRIES = zoo_entries()
