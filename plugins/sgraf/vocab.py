"""SGRAF's vocabulary: word <-> id, read and written as the JSON their ``vocab.py`` serialises.

The file is ``{"word2idx": {word: id}, "idx2word": {"id": word}, "idx": next_id}`` (JSON turns the integer
keys of ``idx2word`` into strings). Ids 0-3 are ``<pad>``, ``<start>``, ``<end>``, ``<unk>``; a caption becomes
``<start> w1 ... wn <end>`` and unknown words ``<unk>``. ``build`` counts tokens over captions and keeps the
words seen at least ``min_count`` times (their threshold: 4), in order of first appearance, which is the order
their ``Counter`` yields under Python 3.7+.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmzoo.errors import CheckpointError
from mmzoo_plugins.sgraf.tokenize import word_tokenize

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)


@dataclass
class Vocabulary:
    """Words by id (``words[i]`` is the word of id ``i``) and the reverse map."""

    words: list[str]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        if tuple(self.words[:4]) != SPECIALS:
            raise CheckpointError(
                f"An SGRAF vocabulary starts with {', '.join(SPECIALS)} (ids 0-3); this one starts with "
                f"{self.words[:4]}. Use the JSON their vocab.py wrote (vocab/*_precomp_vocab.json)."
            )
        self.index = {}
        for i, word in enumerate(self.words):
            if word in self.index:
                raise CheckpointError(f"The vocabulary lists {word!r} twice (ids {self.index[word]} and {i}).")
            self.index[word] = i

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str) -> list[int]:
        """A caption -> ids of ``<start>``, its tokens (``<unk>`` when unknown) and ``<end>``."""
        unk = self.index[UNK]
        return [self.index[START], *(self.index.get(t, unk) for t in word_tokenize(caption)), self.index[END]]

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 4) -> Vocabulary:
        """Count the captions' tokens; keep those seen ``min_count`` times, in order of first appearance."""
        counts = Counter(token for caption in captions for token in word_tokenize(caption))
        kept = [w for w, n in counts.items() if n >= min_count and w not in SPECIALS]
        return cls([*SPECIALS, *kept])

    # -- their JSON ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "word2idx": dict(self.index),
            "idx2word": {str(i): w for i, w in enumerate(self.words)},
            "idx": len(self.words),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "vocabulary") -> Vocabulary:
        """Their serialised vocabulary -> :class:`Vocabulary`; every inconsistency is a CheckpointError."""
        if not isinstance(data, Mapping) or not isinstance(data.get("word2idx"), Mapping):
            raise CheckpointError(
                f"{source} is not an SGRAF/SCAN vocabulary: it needs a 'word2idx' mapping "
                "(the JSON their vocab.py's serialize_vocab writes)."
            )
        word2idx = data["word2idx"]
        ids = sorted(word2idx.values()) if all(isinstance(i, int) for i in word2idx.values()) else None
        if ids != list(range(len(word2idx))):
            raise CheckpointError(f"{source}: word2idx must map its {len(word2idx)} words to the ids 0..n-1 once each.")
        words = sorted(word2idx, key=word2idx.__getitem__)
        idx2word = data.get("idx2word")
        if idx2word is not None and (
            not isinstance(idx2word, Mapping) or {str(k): v for k, v in idx2word.items()} != _idx2word(words)
        ):
            raise CheckpointError(f"{source}: idx2word disagrees with word2idx.")
        if data.get("idx", len(words)) != len(words):
            raise CheckpointError(f"{source}: 'idx' is {data.get('idx')} but word2idx holds {len(words)} words.")
        return cls(words)

    @classmethod
    def read(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"Cannot read the SGRAF vocabulary {path}: {exc}") from None
        return cls.from_json(data, source=str(path))

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()), encoding="utf-8")


def _idx2word(words: list[str]) -> dict[str, str]:
    return {str(i): w for i, w in enumerate(words)}


__all__ = ["END", "PAD", "SPECIALS", "START", "UNK", "Vocabulary"]
