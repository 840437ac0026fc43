"""``python -m mmzoo.hub [FOLDER]``: write the zoo's model cards (``model_cards/<alias>.md``) for every entry."""

from __future__ import annotations

import argparse

from mmzoo.hub.cards import write_zoo_cards

parser = argparse.ArgumentParser(prog="python -m mmzoo.hub", description=__doc__)
parser.add_argument("folder", nargs="?", default=None, help="where to write the cards (default: model_cards)")
args = parser.parse_args()
for written in write_zoo_cards(*([args.folder] if args.folder else [])):
    print(written)
