"""SGRAF's tokenisation without NLTK: lower-case, split sentences, then Penn-Treebank word rules.

SGRAF's ``data.py`` and ``vocab.py`` (as SCAN's) tokenise a caption with ``nltk.tokenize.word_tokenize(
caption.lower())``: Punkt splits the text into sentences, and NLTK's improved Treebank tokenizer splits each
sentence into words. Their published vocabularies (``vocab/{f30k,coco}_precomp_vocab.json``) hold the
resulting tokens (``man's`` became ``man`` + ``'s``, ``can't`` became ``ca`` + ``n't``, the final period
its own token), so a converted checkpoint only sees the word ids it was trained with if captions are cut the
same way. NLTK itself needs the Punkt model files at run time, which cannot be downloaded offline; this module
re-implements the rules.

Known divergences from ``word_tokenize`` (see docs/sgraf.md):

* Sentence splitting: Punkt's learned English model (abbreviations, collocations, orthographic statistics)
  is replaced by a rule: ``.``, ``?`` or ``!`` followed by white space ends a sentence unless the word
  before it is a single letter, holds a period itself (``u.s.``) or is one of :data:`ABBREVIATIONS`.
  Captions are almost always one sentence.
* The word rules are those of NLTK's Treebank tokenizer as of 2018 (NLTK 3.2/3.3), with which SCAN built the
  vocabularies SGRAF reuses; later NLTK releases also split ``..`` and a leading apostrophe. The rare
  rules for ``d'ye``, ``'tis``, ``'twas`` and ``more'n`` are left out.
"""

from __future__ import annotations

import re

#: words that Punkt's English model treats as abbreviations in captions: a period after them ends no sentence.
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "prof", "mt", "ft", "co", "inc", "ltd", "no", "approx"}
    | {"dept", "gen", "gov", "sgt", "capt", "lt", "col", "rev", "ave", "blvd"}
)

_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")

# (pattern, replacement) pairs applied in order to one sentence; together they put spaces around every
# token boundary of the Treebank rules as NLTK applied them when SCAN built the vocabularies SGRAF reuses
# (NLTK 3.2/3.3, 2018): a bare "..." is split but "water.." is not, and a leading apostrophe stays on its
# word ("'stop"), as both published vocabularies show; later NLTK releases split those.
_OPENING_QUOTES = [
    (re.compile(r'^"'), "``"),
    (re.compile(r"(``)"), r" \1 "),
    (re.compile(r"([ (\[{<])(\"|'{2})"), r"\1 `` "),
]
_PUNCTUATION = [
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),  # comma or colon, except inside numbers (3,000 / 10:30)
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.\.\."), r" ... "),
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r"([^.])(\.)([\])}>\"']*)\s*$"), r"\1 \2\3 "),  # the sentence's final period
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),
    (re.compile(r"[\]\[(){}<>]"), r" \g<0> "),
    (re.compile(r"--"), r" -- "),
]
_CLOSING = [
    (re.compile(r'"'), " '' "),
    (re.compile(r"(\S)('')"), r"\1 \2 "),
    (re.compile(r"([^' ])('s|'m|'d|') "), r"\1 \2 "),  # clitics, on lower-cased text
    (re.compile(r"([^' ])('ll|'re|'ve|n't) "), r"\1 \2 "),
]
_SPLIT_WORDS = [
    re.compile(r"\b(can)(not)\b"),
    re.compile(r"\b(gim)(me)\b"),
    re.compile(r"\b(gon)(na)\b"),
    re.compile(r"\b(got)(ta)\b"),
    re.compile(r"\b(lem)(me)\b"),
    re.compile(r"\b(wan)(na)\s"),
]


def sentences(text: str) -> list[str]:
    """Split at ``.``/``?``/``!`` + white space, except after single letters, ``u.s.``-like words, abbreviations."""
    parts: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        before = text[start : match.start()]
        last = before.rsplit(None, 1)[-1] if before.strip() else ""
        stem = last.rstrip(".?!").lstrip("\"'([")
        if last.endswith(".") and (len(stem) <= 1 or "." in stem or stem in ABBREVIATIONS):
            continue
        parts.append(before)
        start = match.end()
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def treebank_words(sentence: str) -> list[str]:
    """One sentence -> tokens by the Penn-Treebank rules (as NLTK's ``TreebankWordTokenizer`` in 2018)."""
    text = sentence
    for pattern, repl in _OPENING_QUOTES:
        text = pattern.sub(repl, text)
    for pattern, repl in _PUNCTUATION:
        text = pattern.sub(repl, text)
    text = f" {text} "
    for pattern, repl in _CLOSING:
        text = pattern.sub(repl, text)
    for pattern in _SPLIT_WORDS:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()


def word_tokenize(caption: str) -> list[str]:
    """A caption -> lower-cased word tokens, as SGRAF's ``nltk.tokenize.word_tokenize(caption.lower())``.

    Example:
        >>> word_tokenize("A man's dog can't catch the frisbee.")
        ['a', 'man', "'s", 'dog', 'ca', "n't", 'catch', 'the', 'frisbee', '.']
    """
    return [token for sentence in sentences(caption.lower()) for token in treebank_words(sentence)]


__all__ = ["ABBREVIATIONS", "sentences", "treebank_words", "word_tokenize"]
