"""Parts that several families share; not a plugin (no ``mmzoo_register`` hook, no entry point).

A family imports from here what another family's checkpoints also need, instead of copying it: the
NLTK-free ``word_tokenize`` of SCAN-style codebases with its two rule sets (``tokenizer.py``) and their
vocabulary JSON (``vocab.py``), used by SCAN, SGRAF and VSE-infinity's bi-GRU encoder. ``images.py``: the check of an
already preprocessed pixel batch, used by ``vision`` and ``clip``. Like every plugin
module, these import only the public face ``mmzoo`` and ``mmzoo.errors`` (docs/plugins.md, "Family template").
"""
