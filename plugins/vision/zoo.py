"""Where the grid-features idea comes from and how to cite it; no zoo entries (no trained weights to publish).

The backbones' ImageNet weights are not zoo entries: they are the timm backbone's own (``weights.py``).
"""

from __future__ import annotations

from mmzoo.plugin import PretrainedEntry

PAPER = "Grid features as regions: Jiang et al., In Defense of Grid Features for Visual Question Answering, CVPR 2020"
CITATION = """@inproceedings{jiang2020defense,
  title={In Defense of Grid Features for Visual Question Answering},
  author={Jiang, Huaizu and Misra, Ishan and Rohrbach, Marcus and Learned-Miller, Erik and Chen, Xinlei},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2020}
}"""
#: nothing is ported: the encoder is mmzoo's own code, Apache-2.0.
LICENSE = "apache-2.0"

ENTRIES: list[PretrainedEntry] = []
