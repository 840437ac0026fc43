"""Who made VSE-infinity, where its code lives, and how to cite it (shown on converted models' cards)."""

from __future__ import annotations

PAPER = "Chen et al., Learning the Best Pooling Strategy for Visual Semantic Embedding, CVPR 2021"
CODE = "https://github.com/woodfrog/vse_infty"
LICENSE = "mit"
CITATION = """@inproceedings{chen2021vseinfty,
  title={Learning the Best Pooling Strategy for Visual Semantic Embedding},
  author={Chen, Jiacheng and Hu, Hexiang and Wu, Hao and Jiang, Yuning and Wang, Changhu},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2021}
}"""
