"""SCAN's vocabulary: the JSON its ``vocab.py`` writes (``serialize_vocab``), read and written unchanged.

The file holds ``{"word2idx": {word: id}, "idx2word": {"id": word}, "idx": next_id}`` (JSON turns the
integer keys of ``idx2word`` into strings). SCAN's ``build_vocab`` adds ``<pad>`` (0), ``<start>`` (1),
``<end>`` (2), ``<unk>`` (3) and then every word seen at least ``threshold`` (4) times in the training
and dev captions. A caption becomes ``<start>``, its word ids (``<unk>`` for unknown words), ``<end>``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmzoo.errors import CheckpointError
from mmzoo_plugins.scan.tokenizer import word_tokenize

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)


class Vocabulary:
    """Word <-> id of a SCAN model; ``vocab(word)`` is the id, ``<unk>``'s for unknown words.

    Example:
        >>> vocab = Vocabulary.build(["a red circle", "a red square"], threshold=1)
        >>> vocab.encode("A red triangle")
        [1, 4, 5, 3, 2]
    """

    def __init__(self, words: Sequence[str]) -> None:
        if len(set(words)) != len(words):
            seen: set[str] = set()
            dupes = sorted({w for w in words if w in seen or seen.add(w)})
            raise CheckpointError(f"A SCAN vocabulary cannot hold a word twice; repeated: {dupes[:5]}.")
        missing = [s for s in SPECIALS if s not in words]
        if missing:
            raise CheckpointError(
                f"The vocabulary lacks SCAN's special token(s) {missing}; SCAN's vocab.py always adds "
                "<pad>, <start>, <end> and <unk>. Is this a vocabulary of another model?"
            )
        self.words = list(words)
        self.word2idx = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def __call__(self, word: str) -> int:
        return self.word2idx.get(word, self.word2idx[UNK])

    @property
    def pad_id(self) -> int:
        return self.word2idx[PAD]

    def encode(self, caption: str) -> list[int]:
        """Caption -> ids of ``<start>``, its tokens, ``<end>`` (SCAN's ``PrecompDataset.__getitem__``)."""
        return [self.word2idx[START], *(self(t) for t in word_tokenize(caption)), self.word2idx[END]]

    @classmethod
    def build(cls, captions: Iterable[str], threshold: int = 4) -> Vocabulary:
        """SCAN's ``build_vocab``: the specials, then words seen at least ``threshold`` times.

        SCAN kept the order of a Python 2 dict (arbitrary); here words come by falling count, then
        alphabetically, so the same captions always give the same ids.
        """
        counts = Counter(t for c in captions for t in word_tokenize(c))
        kept = sorted(
            (w for w, n in counts.items() if n >= threshold and w not in SPECIALS), key=lambda w: (-counts[w], w)
        )
        return cls([*SPECIALS, *kept])

    # -- the JSON of serialize_vocab / deserialize_vocab ------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "word2idx": dict(self.word2idx),
            "idx2word": {str(i): w for i, w in enumerate(self.words)},
            "idx": len(self.words),
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()), encoding="utf-8")

    @classmethod
    def from_json(cls, data: Any, source: str = "the vocabulary") -> Vocabulary:
        """Validate SCAN's vocabulary JSON: ids 0..n-1, ``word2idx`` and ``idx2word`` agreeing, ``idx`` = n."""
        if not isinstance(data, Mapping) or not {"word2idx", "idx2word"} <= set(data):
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise CheckpointError(
                f"{source} is not a SCAN vocabulary: expected the keys word2idx, idx2word, idx "
                f"(as SCAN's serialize_vocab writes them); found {keys}."
            )
        word2idx, idx2word = data["word2idx"], data["idx2word"]
        if not isinstance(word2idx, Mapping) or not isinstance(idx2word, Mapping):
            raise CheckpointError(f"{source}: word2idx and idx2word must be JSON objects.")
        n = len(word2idx)
        try:
            ids = sorted(int(i) for i in word2idx.values())
        except (TypeError, ValueError):
            raise CheckpointError(f"{source}: word2idx must map words to integer ids.") from None
        if ids != list(range(n)):
            raise CheckpointError(f"{source}: the ids of word2idx must be 0..{n - 1}, each once.")
        words = [""] * n
        for word, i in word2idx.items():
            words[int(i)] = word
        disagree = [i for i, w in enumerate(words) if idx2word.get(str(i)) != w]
        if len(idx2word) != n or disagree:
            raise CheckpointError(
                f"{source}: idx2word does not mirror word2idx (first differing id: "
                f"{disagree[0] if disagree else 'sizes differ'}); the file is damaged or was edited."
            )
        if "idx" in data and data["idx"] != n:
            raise CheckpointError(f"{source}: idx is {data['idx']} but the vocabulary holds {n} words.")
        return cls(words)

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CheckpointError(f"Cannot read the SCAN vocabulary {path}: {exc.strerror or exc}.") from None
        except ValueError as exc:
            raise CheckpointError(f"The SCAN vocabulary {path} is not valid JSON: {exc}.") from None
        return cls.from_json(data, source=f"The vocabulary file {path}")


__all__ = ["END", "PAD", "SPECIALS", "START", "UNK", "Vocabulary"]
