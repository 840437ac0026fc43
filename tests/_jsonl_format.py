"""A third-party data format the tests register: one JSON line per image, ``{split}.jsonl`` beside the manifest.

Each line is ``{"regions": [[...], ...], "captions": [...]}``. ``tests/test_plugins.py`` ships this very file as a
plugin's module (it must import only public names); ``tests/test_data_layout.py`` imports it.
"""

import json
from pathlib import Path

import numpy as np

import mmzoo


class JsonLinesSplit(mmzoo.plugin.Split):
    """A split read from one ``.jsonl`` file: images may have different numbers of regions (masked)."""

    def __init__(self, path, split, manifest):
        rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
        self.name, self.manifest = split, manifest
        self.captions_per_image = len(rows[0]["captions"])
        self.captions = [c for r in rows for c in r["captions"]]
        self.num_images = len(rows)
        self._regions = [np.asarray(r["regions"], dtype=np.float32) for r in rows]
        self.regions = max(len(r) for r in self._regions)
        self.region_dim = self._regions[0].shape[1]

    def image_features(self, indices):
        feats = np.zeros((len(indices), self.regions, self.region_dim), np.float32)
        mask = np.zeros((len(indices), self.regions), bool)
        for n, i in enumerate(indices):
            r = self._regions[i]
            feats[n, : len(r)], mask[n, : len(r)] = r, True
        return feats, mask

    def __getitem__(self, index):
        image = index // self.captions_per_image
        feats, mask = self.image_features([image])
        return feats[0], mask[0], self.captions[index], index, image


class JsonLines(mmzoo.plugin.DataFormat):
    """``{split}.jsonl`` beside the manifest: the default ``files`` finds it."""

    description = "one JSON line per image"

    def open_split(self, root, split, manifest, **options):
        return JsonLinesSplit(Path(root) / f"{split}.jsonl", split, manifest)
