"""Feature files written exactly as the tools that publish them write them, for the import tests.

- :func:`write_generate_tsv` mirrors bottom-up-attention's ``tools/generate_tsv.py``: a
  ``csv.DictWriter`` with ``delimiter='\\t'`` and ``FIELDNAMES``, no header, appending one row per image
  whose ``boxes`` / ``features`` are ``base64.b64encode`` of the float32 arrays' bytes (``'\\r\\n'`` line
  ends, the csv default). ``python3_bytes=True`` hands the writer ``b64encode``'s bytes unchanged, as
  Python 3 ports do (the csv module then writes ``b'...'``).
- :func:`write_lxmert_tsv` the same with LXMERT's ten ``FIELDNAMES`` (src/utils.py).
- :func:`write_karpathy` a ``dataset_coco.json`` / ``dataset_flickr30k.json`` with the fields the
  Karpathy files have (filepath, filename, imgid, split, sentences[].raw/tokens, cocoid for COCO).
"""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import numpy as np

FIELDNAMES = ["image_id", "image_w", "image_h", "num_boxes", "boxes", "features"]
LXMERT_FIELDNAMES = [
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
]


def make_image(rng: np.random.Generator, regions: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(features (k, D) float32, boxes (k, 4) float32) like a detector's output."""
    features = rng.standard_normal((regions, dim)).astype(np.float32) * 3
    x0 = rng.uniform(0, 400, size=(regions, 2)).astype(np.float32)
    boxes = np.concatenate([x0, x0 + rng.uniform(5, 200, size=(regions, 2)).astype(np.float32)], axis=1)
    return features, boxes


def make_images(ids, *, dim: int = 32, regions=36, seed: int = 0) -> dict:
    """{id: (features, boxes)}; ``regions`` an int (fixed) or (low, high) (adaptive, inclusive)."""
    rng = np.random.default_rng(seed)
    out = {}
    for image_id in ids:
        k = regions if isinstance(regions, int) else int(rng.integers(regions[0], regions[1] + 1))
        out[image_id] = make_image(rng, k, dim)
    return out


def _b64(array: np.ndarray, python3_bytes: bool):
    encoded = base64.b64encode(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return encoded if python3_bytes else encoded.decode("ascii")


def write_generate_tsv(path: Path, images: dict, *, python3_bytes: bool = False, size=(640, 480)) -> Path:
    """Append rows as generate_tsv.py's ``generate_tsv`` does (``open(outfile, 'ab')`` + DictWriter)."""
    with open(path, "a", newline="") as tsvfile:
        writer = csv.DictWriter(tsvfile, delimiter="\t", fieldnames=FIELDNAMES)
        for image_id, (features, boxes) in images.items():
            writer.writerow(
                {
                    "image_id": image_id,
                    "image_h": size[1],
                    "image_w": size[0],
                    "num_boxes": len(features),
                    "boxes": _b64(boxes, python3_bytes),
                    "features": _b64(features, python3_bytes),
                }
            )
    return path


def write_lxmert_tsv(path: Path, images: dict) -> Path:
    """Rows with LXMERT's ten fields (object/attribute ids and confidences as LXMERT decodes them)."""
    with open(path, "a", newline="") as tsvfile:
        writer = csv.DictWriter(tsvfile, delimiter="\t", fieldnames=LXMERT_FIELDNAMES)
        for image_id, (features, boxes) in images.items():
            k = len(features)

            def enc(a):
                return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")

            writer.writerow(
                {
                    "img_id": image_id,
                    "img_h": 480,
                    "img_w": 640,
                    "objects_id": enc(np.arange(k, dtype=np.int64)),
                    "objects_conf": enc(np.full(k, 0.5, dtype=np.float32)),
                    "attrs_id": enc(np.zeros(k, dtype=np.int64)),
                    "attrs_conf": enc(np.full(k, 0.25, dtype=np.float32)),
                    "num_boxes": k,
                    "boxes": enc(boxes.astype(np.float32)),
                    "features": enc(features.astype(np.float32)),
                }
            )
    return path


def captions_of(image_id, n: int = 5) -> list[str]:
    return [f"photo {image_id} caption {c} ." for c in range(n)]


def write_cocobu(root: Path, images: dict, att: str = "cocobu_att", box: str = "cocobu_box") -> tuple[Path, Path]:
    """As ruotianluo's make_bu_data.py: ``{att}/{id}.npz`` (``feat=...``) and ``{box}/{id}.npy``."""
    att_dir, box_dir = root / att, root / box
    att_dir.mkdir()
    box_dir.mkdir()
    for image_id, (features, boxes) in images.items():
        np.savez_compressed(att_dir / str(image_id), feat=features)
        np.save(box_dir / str(image_id), boxes)
    return att_dir, box_dir


def write_karpathy(path: Path, splits: dict, *, dataset: str = "coco", extra_captions: int = 0) -> Path:
    """A Karpathy split file; ``splits`` maps a Karpathy split name to image ids (in file order)."""
    images, sentid = [], 0
    for split, ids in splits.items():
        for image_id in ids:
            raws = captions_of(image_id, 5 + extra_captions)
            sentences = []
            for raw in raws:
                sentences.append({"tokens": raw.split(), "raw": raw + " ", "imgid": len(images), "sentid": sentid})
                sentid += 1
            entry = {
                "sentids": [s["sentid"] for s in sentences],
                "imgid": len(images),
                "sentences": sentences,
                "split": split,
            }
            if dataset == "coco":
                folder = "val2014" if split in ("val", "test", "restval") else "train2014"
                entry.update(
                    {"filepath": folder, "filename": f"COCO_{folder}_{int(image_id):012d}.jpg", "cocoid": int(image_id)}
                )
            else:
                entry["filename"] = f"{image_id}.jpg"
            images.append(entry)
    path.write_text(json.dumps({"images": images, "dataset": dataset}))
    return path


def expected_split(images: dict, ids: list, regions: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (N, k_max, D), boxes (N, k_max, 4), counts (N,)) as the import must write them."""
    dim = next(iter(images.values()))[0].shape[1]
    feats = np.zeros((len(ids), regions, dim), dtype=np.float32)
    boxes = np.zeros((len(ids), regions, 4), dtype=np.float32)
    counts = np.zeros(len(ids), dtype=np.int64)
    for row, image_id in enumerate(ids):
        f, b = images[image_id]
        feats[row, : len(f)], boxes[row, : len(f)], counts[row] = f, b, len(f)
    return feats, boxes, counts
