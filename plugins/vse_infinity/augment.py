"""The caption augmentation of VSE-infinity's ``process_caption``, shared by the BERT and bi-GRU encoders.

In training, each word independently, with probability ``p`` (theirs: 0.2), is

* masked (half of those cases): every piece of it becomes the mask token,
* replaced (a tenth): every piece becomes a token drawn uniformly from the whole vocabulary,
* deleted (the remaining four tenths; their comment calls it "keep", their code deletes it).

Words here are the units their code draws for: BERT's basic-tokeniser words (whose WordPiece pieces
share one fate), or the bi-GRU's word tokens including ``<start>`` and ``<end>``. Draws come from torch's
generator, which the trainer seeds and checkpoints. When every word is deleted, BERT still gets
``[CLS] [SEP]`` (as theirs does); the bi-GRU caption keeps its words instead (their loader would hand an
empty sequence to the GRU, which fails).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

KEEP, MASK, REPLACE, DELETE = 0, 1, 2, 3


def word_fates(words: int, p: float) -> list[int]:
    """One of KEEP / MASK / REPLACE / DELETE per word, with their probabilities (p/2, p/10, 2p/5)."""
    u = torch.rand(words).tolist()
    fates = []
    for draw in u:
        if draw >= p:
            fates.append(KEEP)
            continue
        draw /= p
        fates.append(MASK if draw < 0.5 else REPLACE if draw < 0.6 else DELETE)
    return fates


def augment_words(
    pieces: Sequence[Sequence[int]], p: float, mask_id: int, vocab_size: int, allow_empty: bool = True
) -> list[int]:
    """Apply one draw of the augmentation to a caption given as the token ids of each word.

    ``allow_empty=False``: a draw that deletes every word returns the caption unchanged.
    """
    fates = word_fates(len(pieces), p)
    out: list[int] = []
    for ids, fate in zip(pieces, fates, strict=True):
        if fate == KEEP:
            out.extend(ids)
        elif fate == MASK:
            out.extend([mask_id] * len(ids))
        elif fate == REPLACE:
            out.extend(torch.randint(vocab_size, (len(ids),)).tolist())
    if not out and not allow_empty:
        return [i for ids in pieces for i in ids]
    return out
