"""Zoo entries for the official CLIP, SigLIP and SigLIP 2 (fixed-resolution and NaFlex) weights, loaded natively
from their Hub repositories.

The repositories hold what transformers' ``save_pretrained`` writes (``config.json``, ``model.safetensors``,
``preprocessor_config.json``, tokenizer files); ``Weights(format="transformers")`` makes mmzoo download those files
only (never ``pytorch_model.bin`` / TF / Flax weights), verify each against the Hub's record, refuse a folder with
code, and build the towers from the folder itself: no conversion. No revision or sha256 is pinned yet (mmzoo has
not read the repositories' commits from here): the Hub's own sha256 of ``model.safetensors`` is what is checked.

Published numbers (zero-shot retrieval, R@1 image->text | text->image) are labelled by their source; mmzoo has not
measured any of these weights. Where no source we could check gives a number for these exact weights, the entry
has none (never an invented one).
"""

from __future__ import annotations

from typing import Any

from mmzoo.plugin import PUBLISHED, PretrainedEntry, Weights

PAPERS = {
    "clip": "Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021 "
    "(arXiv:2103.00020)",
    "siglip": "Zhai et al., Sigmoid Loss for Language Image Pre-Training, ICCV 2023 (arXiv:2303.15343)",
    "siglip2": "Tschannen et al., SigLIP 2: Multilingual Vision-Language Encoders with Improved Semantic "
    "Understanding, Localization, and Dense Features, 2025 (arXiv:2502.14786)",
}
CITATIONS = {
    "clip": """@inproceedings{radford2021clip,
  title={Learning Transferable Visual Models From Natural Language Supervision},
  author={Radford, Alec and Kim, Jong Wook and Hallacy, Chris and Ramesh, Aditya and Goh, Gabriel and Agarwal, Sandhini and Sastry, Girish and Askell, Amanda and Mishkin, Pamela and Clark, Jack and Krueger, Gretchen and Sutskever, Ilya},
  booktitle={International Conference on Machine Learning},
  year={2021}
}""",
    "siglip": """@inproceedings{zhai2023siglip,
  title={Sigmoid Loss for Language Image Pre-Training},
  author={Zhai, Xiaohua and Mustafa, Basil and Kolesnikov, Alexander and Beyer, Lucas},
  booktitle={International Conference on Computer Vision},
  year={2023}
}""",
    "siglip2": """@article{tschannen2025siglip2,
  title={SigLIP 2: Multilingual Vision-Language Encoders with Improved Semantic Understanding, Localization, and Dense Features},
  author={Tschannen, Michael and others},
  journal={arXiv preprint arXiv:2502.14786},
  year={2025}
}""",
}
#: the weights' licences as their authors state them (openai/CLIP: MIT; Google's SigLIP model cards: Apache 2.0).
LICENSES = {"clip": "mit", "siglip": "apache-2.0", "siglip2": "apache-2.0"}
#: the family template's one-string forms (three families of weights share this plugin)
PAPER = "; ".join(PAPERS.values())
CITATION = "\n\n".join(CITATIONS.values())
LICENSE = "MIT (OpenAI's CLIP weights); Apache-2.0 (Google's SigLIP and SigLIP 2 weights)"
CODE = {
    "clip": "https://github.com/openai/CLIP",
    "siglip": "https://github.com/google-research/big_vision",
    "siglip2": "https://github.com/google-research/big_vision",
}
DATASET = {
    "clip": "WebImageText (400M image-text pairs from the web; OpenAI, not released)",
    "siglip": "WebLI (Google's web image-text data, English subset; not released)",
    "siglip2": "WebLI (Google's multilingual web image-text data; not released)",
}
F30K, COCO5K = "Flickr30K 1K test", "COCO 5K"
NOT_MEASURED = "not measured by mmzoo"
PAPER_TABLE13 = "Radford et al. 2021, Table 13 (zero-shot retrieval, ViT-L/14@336px); " + NOT_MEASURED
#: open_clip's table of CLIP_benchmark runs (docs/openclip_retrieval_results.csv: "Flickr" is the Flickr30K 1K test
#: split, "MSCOCO" the 5K test split; "text retr." is image->text, "image retr." text->image), rows of the same
#: weights: OpenAI's own for CLIP, open_clip's conversion of the same big_vision checkpoints for SigLIP
CLIP_BENCHMARK = (
    "CLIP_benchmark (LAION) measurement of the same weights, zero-shot, from open_clip's "
    "docs/openclip_retrieval_results.csv (row {row}); " + NOT_MEASURED
)
#: the authors' table of the SigLIP 2 checkpoints (google-research/big_vision,
#: big_vision/configs/proj/image_text/README_siglip2.md): columns "COCO T->I" and "COCO I->T", read here as zero-shot
#: R@1 on COCO 5K (SigLIP's retrieval protocol; the README names neither the recall level nor the split)
BIG_VISION_SIGLIP2 = (
    "the authors' table in big_vision's README_siglip2.md (row {row}; its 'COCO' columns, taken as zero-shot R@1 on "
    "COCO 5K: the README names neither); " + NOT_MEASURED
)


def r1(i2t: float, t2i: float) -> dict[str, float]:
    return {"i2t_r1": i2t, "t2i_r1": t2i}


#: alias -> (family, repo, embed_dim, resolution, published numbers, their source)
WEIGHTS: dict[str, tuple[str, str, int, int, dict[str, dict[str, float]], str]] = {
    "clip-vit-base-patch32": (
        "clip",
        "openai/clip-vit-base-patch32",
        512,
        224,
        {F30K: r1(78.9, 58.8), COCO5K: r1(50.1, 30.4)},
        CLIP_BENCHMARK.format(row="ViT-B-32, openai"),
    ),
    "clip-vit-base-patch16": (
        "clip",
        "openai/clip-vit-base-patch16",
        512,
        224,
        {F30K: r1(82.2, 62.2), COCO5K: r1(52.4, 33.1)},
        CLIP_BENCHMARK.format(row="ViT-B-16, openai"),
    ),
    "clip-vit-large-patch14": (
        "clip",
        "openai/clip-vit-large-patch14",
        768,
        224,
        {F30K: r1(85.2, 65.0), COCO5K: r1(56.3, 36.5)},
        CLIP_BENCHMARK.format(row="ViT-L-14, openai"),
    ),
    "clip-vit-large-patch14-336": (
        "clip",
        "openai/clip-vit-large-patch14-336",
        768,
        336,
        {F30K: r1(88.0, 68.7), COCO5K: r1(58.4, 37.8)},
        PAPER_TABLE13,
    ),
    "siglip-base-patch16-224": (
        "siglip",
        "google/siglip-base-patch16-224",
        768,
        224,
        {F30K: r1(89.1, 74.7), COCO5K: r1(65.7, 47.8)},
        CLIP_BENCHMARK.format(row="ViT-B-16-SigLIP, webli"),
    ),
    "siglip-so400m-patch14-384": (
        "siglip",
        "google/siglip-so400m-patch14-384",
        1152,
        384,
        {F30K: r1(94.3, 83.0), COCO5K: r1(72.4, 54.2)},
        CLIP_BENCHMARK.format(row="ViT-SO400M-14-SigLIP-384, webli"),
    ),
    "siglip2-base-patch16-224": (
        "siglip2",
        "google/siglip2-base-patch16-224",
        768,
        224,
        {COCO5K: r1(68.9, 52.1)},
        BIG_VISION_SIGLIP2.format(row="SigLIP 2 B/16 224"),
    ),
    # NaFlex: no fixed resolution (0); images keep their aspect ratio, at most max_num_patches 16x16 patches
    "siglip2-base-patch16-naflex": (
        "siglip2",
        "google/siglip2-base-patch16-naflex",
        768,
        0,
        {COCO5K: r1(67.3, 51.1)},
        BIG_VISION_SIGLIP2.format(row="SigLIP 2 (NaFlex) B/16 var., at sequence length 256"),
    ),
}
#: the NaFlex processor's patch budget in Google's preprocessor_config.json, and the length the numbers above use
NAFLEX_MAX_NUM_PATCHES = 256

NOTES = {
    "clip": "Zero-shot. Text: CLIP's BPE, at most 77 tokens (longer captions are truncated with a warning). Score: "
    "cosine of the projected pooled embeddings; calibrated probabilities (softmax over captions with the "
    "checkpoint's logit scale): mmzoo_plugins.clip.calibration.probabilities.",
    "siglip": "Zero-shot. Text: lower-cased and padded to 64 tokens, run without an attention mask, as big_vision "
    "trained it (not doing so costs ~4 R@1: big_vision#166). Score: cosine; calibrated sigmoid probabilities with the "
    "checkpoint's logit scale and bias: mmzoo_plugins.clip.calibration.probabilities.",
    "siglip2": "Zero-shot. SigLIP 2's fixed-resolution weights have SigLIP's architecture (config model_type "
    "'siglip') with the Gemma tokenizer; text lower-cased and padded to 64 tokens as in training.",
    "siglip2-naflex": "Zero-shot. SigLIP 2 NaFlex (transformers' Siglip2Model, config model_type 'siglip2'): each image "
    "keeps its aspect ratio, resized by the checkpoint's Siglip2ImageProcessor to at most visual.max_num_patches "
    "16x16 patches (default 256, the length of the published numbers; more gives finer detail at quadratic cost) and "
    "padded; only the real patches are fragments. Text as SigLIP 2's: Gemma tokenizer without <bos>, <eos> appended, "
    "lower-cased, padded to 64, run without an attention mask (big_vision). Calibrated sigmoid probabilities with the "
    "checkpoint's logit scale and bias: mmzoo_plugins.clip.calibration.probabilities.",
}


def entry(alias: str) -> PretrainedEntry:
    family, repo, dim, size, results, source = WEIGHTS[alias]
    options: dict[str, Any] = {"embed_dim": dim, "visual.source": alias, "text.source": alias}
    inputs = f"RGB images (PIL or paths) at {size}x{size}, preprocessed by the checkpoint's own image processor"
    note = NOTES[family]
    if size == 0:  # NaFlex
        options["visual.max_num_patches"] = NAFLEX_MAX_NUM_PATCHES
        inputs = (
            "RGB images (PIL or paths) of any size and aspect ratio, resized by the checkpoint's own "
            f"Siglip2ImageProcessor to at most {NAFLEX_MAX_NUM_PATCHES} patches (visual.max_num_patches)"
        )
        note = NOTES["siglip2-naflex"]
    return PretrainedEntry(
        alias=alias,
        recipe="siglip" if family.startswith("siglip") else "clip",
        dataset=DATASET[family],
        weights=Weights(repo=repo, format="transformers", options=options),
        status=PUBLISHED,
        license=LICENSES[family],
        paper=PAPERS[family],
        citation=CITATIONS[family],
        code=CODE[family],
        inputs=inputs,
        published_results=results,
        results_source=source or NOT_MEASURED + "; no published number for these exact weights is recorded here",
        notes=note + f" Weights: https://huggingface.co/{repo} (no revision pinned).",
    )


def zoo_entries() -> list[PretrainedEntry]:
    return [entry(alias) for alias in WEIGHTS]


#: the zoo entries this family registers
ENTRIES = zoo_entries()


__all__ = [
    "CITATION",
    "CITATIONS",
    "ENTRIES",
    "LICENSE",
    "LICENSES",
    "NAFLEX_MAX_NUM_PATCHES",
    "PAPER",
    "PAPERS",
    "WEIGHTS",
    "entry",
    "zoo_entries",
]
