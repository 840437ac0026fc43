"""Who made VSE++ and how to cite it; no zoo entries (mmzoo has trained no VSE++ weights to publish)."""

from __future__ import annotations

from mmzoo.plugin import PretrainedEntry

PAPER = "Faghri et al., VSE++: Improving Visual-Semantic Embeddings with Hard Negatives, BMVC 2018"
CODE = "https://github.com/fartashf/vsepp"
LICENSE = "apache-2.0"
CITATION = """@inproceedings{faghri2018vse++,
  title={VSE++: Improving Visual-Semantic Embeddings with Hard Negatives},
  author={Faghri, Fartash and Fleet, David J and Kiros, Jamie Ryan and Fidler, Sanja},
  booktitle={Proceedings of the British Machine Vision Conference (BMVC)},
  year={2018}
}"""

ENTRIES: list[PretrainedEntry] = []
