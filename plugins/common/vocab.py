"""The vocabulary of SCAN-style text encoders: the JSON SCAN's ``vocab.py`` writes (``serialize_vocab``), unchanged.

SCAN built the vocabularies that SGRAF and VSE-infinity's bi-GRU branch reuse, so the three families share this
one class. The file holds ``{"word2idx": {word: id}, "idx2word": {"id": word}, "idx": next_id}`` (JSON turns the
integer keys of ``idx2word`` into strings; ``idx2word`` and ``idx`` may be absent, and are checked when present).
SCAN's ``build_vocab`` adds ``<pad>`` (0), ``<start>`` (1), ``<end>`` (2), ``<unk>`` (3) and then every word seen
at least ``threshold`` (4) times. A caption becomes ``<start>``, its word ids (``<unk>`` for unknown words),
``<end>``; its words come from :func:`mmzoo_plugins.common.tokenizer.word_tokenize` with the family's ``rules``.

The two families that build vocabularies order the kept words differently: SCAN's Python 2 dict had no order
(here: falling count, then alphabetical, ``order="frequency"``); SGRAF's and VSE-infinity's ``Counter`` yields them
in order of first appearance under Python 3.7+ (``order="first-seen"``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mmzoo.errors import CheckpointError, ConfigError
from mmzoo_plugins.common.tokenizer import word_tokenize

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)
ORDERS = ("frequency", "first-seen")


class Vocabulary:
    """Word <-> id of a SCAN-style model; ``vocab(word)`` is the id, ``<unk>``'s for unknown words.

    Example:
        >>> vocab = Vocabulary.build(["a red circle", "a red square"], threshold=1)
        >>> vocab.encode("A red triangle")
        [1, 4, 5, 3, 2]
    """

    def __init__(self, words: Sequence[str]) -> None:
        if len(set(words)) != len(words):
            seen: set[str] = set()
            dupes = sorted({w for w in words if w in seen or seen.add(w)})
            raise CheckpointError(f"A SCAN-style vocabulary cannot hold a word twice; repeated: {dupes[:5]}.")
        missing = [s for s in SPECIALS if s not in words]
        if missing:
            raise CheckpointError(
                f"The vocabulary lacks {', '.join(missing)}, the special token(s) SCAN's vocab.py always adds "
                "(<pad>, <start>, <end>, <unk>). Is this a vocabulary of another model?"
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

    def with_word(self, word: str) -> Vocabulary:
        """This vocabulary with ``word`` appended (unless it holds it): VSE-infinity's ``<mask>``."""
        return self if word in self.word2idx else Vocabulary([*self.words, word])

    def encode(self, caption: str, rules: str = "nltk-3.10") -> list[int]:
        """Caption -> ids of ``<start>``, its tokens by ``rules``, ``<end>`` (SCAN's ``PrecompDataset``)."""
        return [self.word2idx[START], *(self(t) for t in word_tokenize(caption, rules)), self.word2idx[END]]

    @classmethod
    def build(
        cls,
        captions: Iterable[str],
        min_count: int = 4,
        *,
        threshold: int | None = None,
        rules: str = "nltk-3.10",
        order: str = "frequency",
    ) -> Vocabulary:
        """SCAN's ``build_vocab``: the specials, then the words seen at least ``min_count`` times.

        Args:
            captions: the training captions.
            min_count: keep words seen this often (SCAN's and SGRAF's threshold: 4); ``threshold`` is SCAN's name.
            rules: the tokenizer's rule set (:data:`mmzoo_plugins.common.tokenizer.RULES`).
            order: ``"frequency"`` (falling count, then alphabetical: the same captions always give the same
                ids) or ``"first-seen"`` (order of first appearance, as a Python 3.7+ ``Counter`` yields them).

        Raises:
            ConfigError: unknown ``order`` or ``rules``.
        """
        if order not in ORDERS:
            raise ConfigError(f"Unknown vocabulary order {order!r}; choose one of {', '.join(ORDERS)}.")
        keep = min_count if threshold is None else threshold
        counts = Counter(t for c in captions for t in word_tokenize(c, rules))
        kept = [w for w, n in counts.items() if n >= keep and w not in SPECIALS]
        if order == "frequency":
            kept.sort(key=lambda w: (-counts[w], w))
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
        """Validate SCAN's vocabulary JSON: ids 0..n-1, ``idx2word`` mirroring ``word2idx``, ``idx`` = n.

        Raises:
            CheckpointError: not SCAN's format, ids not 0..n-1, ``idx2word`` or ``idx`` disagreeing, or a special
                token missing.
        """
        word2idx = data.get("word2idx") if isinstance(data, Mapping) else None
        if not isinstance(word2idx, Mapping):
            keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise CheckpointError(
                f"{source} is not a SCAN vocabulary: expected a JSON object with 'word2idx' mapping words to ids "
                f"(and idx2word, idx, as SCAN's serialize_vocab writes them); found {keys}."
            )
        n = len(word2idx)
        ids = [i for i in word2idx.values() if isinstance(i, int) and not isinstance(i, bool)]
        if len(ids) != n or sorted(ids) != list(range(n)):
            raise CheckpointError(
                f"{source}: the word ids are not exactly 0 .. {n - 1} (word2idx must map its {n} words to "
                f"0..{n - 1}, each once)."
            )
        words = sorted(word2idx, key=word2idx.__getitem__)
        idx2word = data.get("idx2word")
        if idx2word is not None:
            if not isinstance(idx2word, Mapping):
                raise CheckpointError(f"{source}: idx2word must be a JSON object.")
            disagree = [i for i, w in enumerate(words) if idx2word.get(str(i)) != w]
            if len(idx2word) != n or disagree:
                raise CheckpointError(
                    f"{source}: idx2word does not mirror word2idx (first differing id: "
                    f"{disagree[0] if disagree else 'sizes differ'}); the file is damaged or was edited."
                )
        if "idx" in data and data["idx"] != n:
            raise CheckpointError(f"{source}: idx is {data['idx']} but the vocabulary holds {n} words.")
        try:
            return cls(words)
        except CheckpointError as exc:
            raise CheckpointError(f"{source}: {exc}") from None

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

    #: SGRAF's spelling of :meth:`load` and :meth:`save`.
    read = load
    write = save


__all__ = ["END", "ORDERS", "PAD", "SPECIALS", "START", "UNK", "Vocabulary"]
