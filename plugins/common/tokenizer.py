"""The NLTK ``word_tokenize(caption.lower())`` that SCAN-style codebases call, without NLTK, by two rule sets.

SCAN's ``data.py`` and ``vocab.py`` (and SGRAF's and VSE-infinity's bi-GRU branch, which reuse its vocabularies)
lower-case a caption and split it with ``nltk.word_tokenize``: the Punkt sentence splitter (its pretrained
English model) cuts the text into sentences and NLTK's Treebank-style word tokenizer splits each sentence. A
converted model only gives its authors' scores if its captions become the same word ids, so this module
reproduces both steps for lower-cased text. It lives in ``mmzoo_plugins.common`` because three families use
it; each names its rule set once (``rules=``):

* ``"nltk-3.10"`` (SCAN, VSE-infinity's bi-GRU): the Treebank rules of NLTK 3.10's ``NLTKWordTokenizer``.
* ``"nltk-2018"`` (SGRAF): the rules of NLTK 3.2/3.3, with which SCAN built the vocabularies SGRAF reuses: a
  bare ``...`` is split but ``water..`` is not, a leading apostrophe stays on its word (``'stop``), as both
  published vocabularies show; the rare rules for ``d'ye``, ``'tis``, ``'twas`` and ``more'n`` are absent.

Both rule sets split sentences the same way:

* **Sentences.** Punkt proposes a break after every ``.``, ``?`` and ``!`` followed by whitespace or
  certain punctuation and decides each from the tokens around it. On lower-cased text its
  decisions depend only on a few facts of the English model, kept below: its abbreviations (no break
  after ``mr.``, ``st.``, ``u.s.``...), its collocations (no break in ``j. walter``), and the four words
  that it saw starting sentences in lower case and never capitalised (a break after an initial or a
  number when one of them follows). Its orthographic statistics about capitalised words are not
  needed because a lower-cased caption has none.
* **Words** (``"nltk-3.10"``). Each sentence is split by the Treebank rules: quotes, commas and colons (not
  inside numbers), ``;@#$%&``, dashes, ``?!``, brackets, ``*``, ellipses, the sentence-final period, and the
  clitics (``'s``, ``n't``, ``cannot`` -> ``can not``...).

Known divergences (documented in docs/scan.md and docs/sgraf.md): text that still has capital letters after
``str.lower()`` (none in practice) is treated as if Punkt knew nothing about the capitalised word;
SCAN ran Python 2, whose ``str.lower()`` on byte strings lower-cased ASCII letters only (``É`` stayed
``É``); and the NLTK of 2018 kept ``..``, ``*`` and Unicode dashes inside words and did not split a
leading apostrophe, where NLTK 3.10 splits them (``"nltk-2018"`` keeps the old behaviour for ``..`` and the
apostrophe). NLTK compiles its rules with the ``regex`` engine, this module with ``re``: the ASCII separators
``\x1c``-``\x1f`` and combining marks beside an apostrophe split differently (never in real captions).

Example:
    >>> word_tokenize("A man, in a red shirt, isn't riding his bike. The dog runs!")
    ['a', 'man', ',', 'in', 'a', 'red', 'shirt', ',', 'is', "n't", 'riding', 'his', 'bike', '.', 'the', 'dog', 'runs', '!']
    >>> word_tokenize("boats on the water.. a sign says 'stop'", rules="nltk-2018")
    ['boats', 'on', 'the', 'water..', 'a', 'sign', 'says', "'stop", "'"]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

from mmzoo.errors import ConfigError

# -- facts of Punkt's pretrained English model (NLTK data, Kiss & Strunk; Apache-2.0) -------------------------
#: abbreviation types: a word ending in "." whose stem is one of these (or ends in "-" + one) is no break.
ABBREVIATIONS = frozenset(
    [
        "a.a",
        "a.c",
        "a.d",
        "a.g",
        "a.h",
        "a.m",
        "a.m.e",
        "a.s",
        "a.t",
        "adm",
        "ala",
        "ariz",
        "aug",
        "ave",
        "b.f",
        "b.v",
        "bros",
        "c",
        "c.i.t",
        "c.o.m.b",
        "c.v",
        "calif",
        "chg",
        "cie",
        "co",
        "col",
        "colo",
        "conn",
        "corp",
        "cos",
        "ct",
        "d",
        "d.c",
        "d.h",
        "d.w",
        "dec",
        "dr",
        "e",
        "e.f",
        "e.h",
        "e.l",
        "e.m",
        "f",
        "f.g",
        "f.j",
        "feb",
        "fla",
        "fri",
        "ft",
        "g",
        "g.d",
        "g.f",
        "g.k",
        "ga",
        "gen",
        "h",
        "h.c",
        "h.f",
        "h.m",
        "i.m.s",
        "ill",
        "inc",
        "j.b",
        "j.c",
        "j.j",
        "j.k",
        "j.p",
        "j.r",
        "jan",
        "jr",
        "k",
        "kan",
        "ky",
        "l",
        "l.a",
        "l.f",
        "l.p",
        "lt",
        "ltd",
        "m",
        "m.b.a",
        "m.d.c",
        "m.j",
        "maj",
        "messrs",
        "mg",
        "mich",
        "minn",
        "mr",
        "mrs",
        "ms",
        "n",
        "n.c",
        "n.d",
        "n.h",
        "n.j",
        "n.m",
        "n.v",
        "n.y",
        "nev",
        "nov",
        "oct",
        "ok",
        "okla",
        "ore",
        "p",
        "p.a.m",
        "p.m",
        "pa",
        "ph.d",
        "prof",
        "r",
        "r.a",
        "r.h",
        "r.i",
        "r.j",
        "r.k",
        "r.t",
        "rep",
        "reps",
        "s",
        "s.a",
        "s.a.y",
        "s.c",
        "s.g",
        "s.p.a",
        "s.s",
        "sen",
        "sep",
        "sept",
        "sr",
        "st",
        "sw",
        "t",
        "t.j",
        "tenn",
        "tues",
        "u.k",
        "u.n",
        "u.s",
        "u.s.a",
        "u.s.s.r",
        "v",
        "va",
        "vs",
        "vt",
        "w",
        "w.c",
        "w.r",
        "w.va",
        "w.w",
        "wash",
        "wed",
        "wis",
        "yr",
    ]
) | {". . "}
#: (word before the period, word after it) pairs that Punkt keeps in one sentence.
COLLOCATIONS = frozenset(
    [
        ("##number##", w)
        for w in [
            "abreast",
            "aes",
            "business",
            "cbot",
            "colgate",
            "commodities",
            "cooper",
            "corrections",
            "credit",
            "dividend",
            "financing",
            "genentech",
            "henley",
            "insider",
            "international",
            "leisure",
            "letters",
            "notable",
            "pay-fone",
            "pegasus",
            "pepper",
            "review",
            "rj",
            "wedgestone",
            "who",
            "zimmer",
        ]
    ]
    + [("b", w) for w in ("edelman", "levine", "smith", "stewart", "wigton")]
    + [("i", "magnin"), ("i", "toussie"), ("j", "aron"), ("j", "fialka"), ("j", "walter"), ("o", "ludcke")]
)
#: lower-case words the model saw starting a sentence and never capitalised: after an initial or a
#: number with a period, one of these makes Punkt keep the break.
LOWER_CASE_STARTERS = frozenset({"administrators", "b-week", "r-revised", "z-holiday"})

# -- Punkt's tokens, candidate breaks and realignment ------------------------------------------------------------
_NON_WORD = "[)\";}\\]*:@'({\\[\u2018\u2019\u201c\u201d\xab\xbb?!]"
_MULTI_CHAR = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"
_PUNKT_WORD = re.compile(
    rf"""(
        {_MULTI_CHAR}
        | (?=[^(\"`{{\[:;&\#*@)}}\]\-,])\S+?
          (?=\s|$|{_NON_WORD}|{_MULTI_CHAR}|,(?=$|\s|{_NON_WORD}|{_MULTI_CHAR}))
        | \S
    )""",
    re.UNICODE | re.VERBOSE,
)
_CANDIDATE = re.compile(rf"[.?!](?=(?P<after>{_NON_WORD}|\s+(?P<next>\S+)))", re.UNICODE)
_REALIGN = re.compile("[\"')\\]}\u2018\u2019\u201c\u201d\xab\xbb]+?(?:\\s+|(?=--)|$)", re.MULTILINE)
_NUMBER = re.compile(r"^-?[\.,]?\d[\d,\.-]*\.?$")
_INITIAL = re.compile(r"[^\W\d]\.$", re.UNICODE)
_SENTENCE_END = (".", "?", "!")
_NOT_A_START = tuple(";:,.!?")


class _Token:
    """A Punkt token with the one decision that matters here: whether a sentence ends after it.

    A period ends a sentence unless it closes an ellipsis or a known abbreviation (Punkt's first pass).
    """

    __slots__ = ("sentbreak", "text", "type")

    def __init__(self, text: str) -> None:
        self.text = text
        self.type = _NUMBER.sub("##number##", text.lower())
        if text in _SENTENCE_END:
            self.sentbreak = True
        elif not text.endswith(".") or text.endswith(".."):  # no period, or an ellipsis: no break
            self.sentbreak = False
        else:
            stem = text[:-1].lower()
            self.sentbreak = not (stem in ABBREVIATIONS or stem.split("-")[-1] in ABBREVIATIONS)

    @property
    def bare_type(self) -> str:
        """The type without its final period."""
        return self.type[:-1] if len(self.type) > 1 and self.type.endswith(".") else self.type

    @property
    def sentence_type(self) -> str:
        """The type without the period that ends a sentence (if this token ends one)."""
        return self.bare_type if self.sentbreak else self.type


def _starts_sentence(token: _Token) -> bool | None:
    """Punkt's orthographic evidence that ``token`` starts a sentence: False, or None (no evidence).

    It can only say True for a capitalised word, which lower-cased text does not have.
    """
    if token.text in _NOT_A_START:
        return False
    if token.text[0].islower() and token.sentence_type not in LOWER_CASE_STARTERS:
        return False
    return None


def _decide(first: _Token, second: _Token) -> None:
    """Revise the break after ``first`` (a period-final token) from the token that follows it."""
    typ, next_typ = first.bare_type, second.sentence_type
    if (typ, next_typ) in COLLOCATIONS:
        first.sentbreak = False
        return
    initial = bool(_INITIAL.match(first.text))
    if (initial or typ == "##number##") and _starts_sentence(second) is False:
        first.sentbreak = False


def _has_break(context: str) -> bool:
    """Whether Punkt finds a sentence break in ``context`` before its last token."""
    tokens = [_Token(t) for line in context.split("\n") if line.strip() for t in _PUNKT_WORD.findall(line)]
    for first, second in pairwise(tokens):
        if first.text.endswith("."):
            _decide(first, second)
        if first.sentbreak:
            return True
    return False


def _candidates(text: str) -> Iterator[tuple[re.Match[str], str]]:
    """Each candidate break with its context (the word before it, the mark, what follows).

    Consecutive marks (``!!!``) share the word before them; only the last of such a run is kept.
    """
    previous: tuple[re.Match[str], slice] | None = None
    prev_word = slice(0, 0)
    for match in _CANDIDATE.finditer(text):
        before = text[prev_word.stop : match.start()]
        space = max((i for i, c in enumerate(before) if c.isspace()), default=0)
        start = space + prev_word.stop + 1 if space else prev_word.start
        word = slice(start, match.start())
        if previous is not None and prev_word.stop <= word.start:
            yield previous[0], text[previous[1]] + previous[0].group() + previous[0].group("after")
        previous, prev_word = (match, word), word
    if previous is not None:
        yield previous[0], text[previous[1]] + previous[0].group() + previous[0].group("after")


def sentences(text: str) -> list[str]:
    """Split lower-cased text into sentences as Punkt's English model does."""
    spans, last = [], 0
    for match, context in _candidates(text):
        if _has_break(context):
            spans.append((last, match.end()))
            last = match.start("next") if match.group("next") else match.end()
    spans.append((last, len(text.rstrip())))
    out, shift = [], 0
    for (start, stop), following in zip(spans, [*spans[1:], None], strict=True):
        start += shift
        shift = 0
        if following is not None:
            glued = _REALIGN.match(text[following[0] : following[1]])
            if glued:
                out.append(text[start : following[0] + len(glued.group(0).rstrip())])
                shift = glued.end()
                continue
        if text[start:stop]:
            out.append(text[start:stop])
    return out


# -- the Treebank word rules (NLTK 3.10's NLTKWordTokenizer), applied in order --------------------------------------
def _rules(*pairs: tuple[str, str], flags: int = 0) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(pattern, flags), repl) for pattern, repl in pairs]


_OPENING_QUOTES = _rules(
    ("([\xab\u201c\u2018\u201e]|[`]+)", r" \1 "),
    (r'^"', r"``"),
    (r"(``)", r" \1 "),
    (r"([ \(\[{<])(\"|\'{2})", r"\1 `` "),
    (r"(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", r"\1 "),
)
_PUNCTUATION = _rules(
    ("([^\\.])(\\.)([\\]\\)}>\"'\xbb\u201d\u2019 ]*)\\s*$", r"\1 \2 \3 "),
    (r"([:,])([^\d])", r" \1 \2"),
    (r"([:,])$", r" \1 "),
    (r"\.{2,}", r" \g<0> "),
    (r"[;@#$%&]", r" \g<0> "),
    ("[\u2012-\u2015]", r" \g<0> "),
    (r'([^\.])(\.)([\]\)}>"\']*)\s*$', r"\1 \2\3 "),
    (r"[?!]", r" \g<0> "),
    (r"([^'])' ", r"\1 ' "),
    (r"[*]", r" \g<0> "),
    (r"[\]\[\(\)\{\}\<\>]", r" \g<0> "),
    (r"--", r" -- "),
)
_CLOSING_QUOTES = _rules(
    ("([\xbb\u201d\u2019])", r" \1 "),
    (r"''", " '' "),
    (r'"', " '' "),
    (r"\s+", " "),
    (r"([^' ])('[sS]|'[mM]|'[dD]|') ", r"\1 \2 "),
    (r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", r"\1 \2 "),
)
_CONTRACTIONS = _rules(
    *(
        (rf"(?i)\b({a})({b})\b", r" \1 \2 ")
        for a, b in (("can", "not"), ("d", "'ye"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"))
    ),
    (r"(?i)\b(more)('n)\b", r" \1 \2 "),
    (r"(?i)\b(wan)(na)(?=\s)", r" \1 \2 "),
    (r"(?i) ('t)(is)\b", r" \1 \2 "),
    (r"(?i) ('t)(was)\b", r" \1 \2 "),
)


# -- the Treebank word rules of 2018 (NLTK 3.2/3.3), with which SCAN built the vocabularies SGRAF reuses ----------
_OPENING_QUOTES_2018 = _rules((r'^"', "``"), (r"(``)", r" \1 "), (r"([ (\[{<])(\"|'{2})", r"\1 `` "))
_PUNCTUATION_2018 = _rules(
    (r"([:,])([^\d])", r" \1 \2"),  # comma or colon, except inside numbers (3,000 / 10:30)
    (r"([:,])$", r" \1 "),
    (r"\.\.\.", r" ... "),
    (r"[;@#$%&]", r" \g<0> "),
    (r"([^.])(\.)([\])}>\"']*)\s*$", r"\1 \2\3 "),  # the sentence's final period
    (r"[?!]", r" \g<0> "),
    (r"([^'])' ", r"\1 ' "),
    (r"[\]\[(){}<>]", r" \g<0> "),
    (r"--", r" -- "),
)
_CLOSING_2018 = _rules(
    (r'"', " '' "),
    (r"(\S)('')", r"\1 \2 "),
    (r"([^' ])('s|'m|'d|') ", r"\1 \2 "),  # clitics, on lower-cased text
    (r"([^' ])('ll|'re|'ve|n't) ", r"\1 \2 "),
)
_CONTRACTIONS_2018 = _rules(
    *(
        (rf"\b({a})({b})\b", r" \1 \2 ")
        for a, b in (("can", "not"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"))
    ),
    (r"\b(wan)(na)\s", r" \1 \2 "),
)

#: rule set -> (rules applied to the sentence, rules applied after padding it with a space on each side).
RULES = {
    "nltk-3.10": (_OPENING_QUOTES + _PUNCTUATION, _CLOSING_QUOTES + _CONTRACTIONS),
    "nltk-2018": (_OPENING_QUOTES_2018 + _PUNCTUATION_2018, _CLOSING_2018 + _CONTRACTIONS_2018),
}


def _rule_set(rules: str) -> tuple[list[tuple[re.Pattern[str], str]], list[tuple[re.Pattern[str], str]]]:
    try:
        return RULES[rules]
    except KeyError:
        raise ConfigError(f"Unknown tokenizer rules {rules!r}; choose one of {', '.join(RULES)}.") from None


def treebank_words(sentence: str, rules: str = "nltk-3.10") -> list[str]:
    """Split one sentence into words by the Treebank rules of ``rules`` (``"nltk-3.10"`` or ``"nltk-2018"``)."""
    before, after = _rule_set(rules)
    text = sentence
    for pattern, repl in before:
        text = pattern.sub(repl, text)
    text = f" {text} "
    for pattern, repl in after:
        text = pattern.sub(repl, text)
    return text.split()


def word_tokenize(caption: str, rules: str = "nltk-3.10") -> list[str]:
    """``nltk.word_tokenize(caption.lower())`` as SCAN calls it, caption stripped first (``line.strip()``).

    ``rules`` picks the NLTK release whose word rules apply: ``"nltk-3.10"`` (SCAN, VSE-infinity's bi-GRU) or
    ``"nltk-2018"`` (SGRAF, whose vocabularies were built with it).

    Raises:
        ConfigError: unknown ``rules``.
    """
    _rule_set(rules)
    text = caption.strip().lower()
    return [word for sentence in sentences(text) for word in treebank_words(sentence, rules)]


__all__ = [
    "ABBREVIATIONS",
    "COLLOCATIONS",
    "LOWER_CASE_STARTERS",
    "RULES",
    "sentences",
    "treebank_words",
    "word_tokenize",
]
