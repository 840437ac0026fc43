"""``python -m mmzoo.hub [FOLDER]``: write the zoo's model cards (``model_cards/<alias>.md``) for every entry."""

from __future__ import annotations

import sys

from mmzoo.hub.cards import write_zoo_cards

for written in write_zoo_cards(*sys.argv[1:2]):
    print(written)
