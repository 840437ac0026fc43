"""Who made SCAN, where its code lives, how to cite it; no zoo entries: the authors published no checkpoints.

Their checkpoints, if you trained one with their code, convert with ``mmzoo convert scan`` (``convert.py``).
"""

from __future__ import annotations

from mmzoo.plugin import PretrainedEntry

PAPER = "Lee et al., Stacked Cross Attention for Image-Text Matching, ECCV 2018"
CODE = "https://github.com/kuanghuei/SCAN"
LICENSE = "apache-2.0"
CITATION = """@inproceedings{lee2018stacked,
  title={Stacked cross attention for image-text matching},
  author={Lee, Kuang-Huei and Chen, Xi and Hua, Gang and Hu, Houdong and He, Xiaodong},
  booktitle={Proceedings of the European conference on computer vision (ECCV)},
  pages={201--216},
  year={2018}
}"""


ENTRIES: list[PretrainedEntry] = []
