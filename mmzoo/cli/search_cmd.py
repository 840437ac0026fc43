"""``mmzoo search MODEL --images DIR "query" ...``: the images of a folder that best match each caption.

Prints the top matches and, with ``--sheet FILE``, writes a contact sheet (a PNG grid, or a self-contained
HTML page when the name ends in .html) with thumbnails and scores. Files of the folder that cannot be read as
images are skipped with a warning that names them. The reverse direction,
``mmzoo search MODEL --image PHOTO --captions FILE``, ranks the captions of FILE (one per line) for
each image. MODEL is a saved model folder (or any name ``mmzoo.from_pretrained`` accepts, when
available) whose visual encoder takes pixels, e.g. one trained with the ``timm-grid`` encoder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmzoo.errors import InputError

# torch, the model and the image reader load when the command runs, not when `mmzoo --help` builds the parser


class IntermixedParser(argparse.ArgumentParser):
    """Lets captions follow options (``search MODEL --images DIR "a red circle"``), which plain argparse refuses."""

    _parsing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._parsing:  # parse_known_intermixed_args calls back into parse_known_args
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a folder of images with captions, or captions with an image")
    p.__class__ = IntermixedParser  # the sub-parsers action builds plain parsers; this one needs intermixing
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("model", help="saved model folder (or a name mmzoo.from_pretrained accepts)")
    p.add_argument("queries", nargs="*", help="captions to search the image folder with")
    p.add_argument("--images", help="folder of images to search (searched recursively)")
    p.add_argument("--image", nargs="+", help="reverse direction: image file(s) to find captions for")
    p.add_argument("--captions", help="reverse direction: text file with one candidate caption per line")
    p.add_argument("--top", type=int, default=5, help="matches shown per query (default 5)")
    p.add_argument("--sheet", help="contact sheet to write (.png or .html); none when not given")
    p.add_argument("--batch-size", type=int, default=32, help="images or captions encoded at once")
    p.add_argument("--device", default=None, help="e.g. cuda; default cpu")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mmzoo._atomic import writable_file
    from mmzoo.cli._contact_sheet import Hit, SheetRow, write_contact_sheet
    from mmzoo.cli._load import load_model, resolve_device
    from mmzoo.data.images import ImageFolder, skip_unreadable
    from mmzoo.evaluation import encode_captions, encode_folder
    from mmzoo.model import MatchingModel
    from mmzoo.model.matching import check_queries

    forward = bool(args.images)
    if forward == bool(args.image):
        raise InputError("Give either --images DIR with captions to search for, or --image FILE with --captions FILE.")
    if forward and not args.queries:
        raise InputError('Give at least one caption to search for, e.g. "a red circle left of a blue square".')
    if not forward and not args.captions:
        raise InputError("--image needs --captions FILE (one candidate caption per line).")
    if args.top < 1:
        raise InputError(f"--top must be at least 1; got {args.top}.")
    if args.sheet:
        writable_file(args.sheet, "--sheet file")
    model = load_model(args.model, resolve_device(args.device) if args.device else "cpu")
    if not isinstance(model, MatchingModel) or not model.visual.takes_pixels:
        name = model.config.visual.name if isinstance(model, MatchingModel) else "an ensemble"
        raise InputError(f"{args.model} has a region-feature visual encoder ({name}); it cannot read images.")

    if forward:
        found = ImageFolder(args.images).paths
        paths = [found[i] for i in skip_unreadable(found, what=f"files of {args.images}")]
        if not paths:
            raise InputError(f"No file in {args.images} can be read as an image; see the warning above.")
        images = encode_folder(model, paths, args.batch_size)
        check_queries(model, list(args.queries))
        texts = encode_captions(model, list(args.queries), batch_size=args.batch_size, keep_on_device=True)
        scores = model.similarity(images, texts).t()  # (queries, images)
        items: list[Any] = paths
        queries: list[Any] = list(args.queries)
    else:
        try:
            candidates = [line.strip() for line in Path(args.captions).read_text(encoding="utf-8").splitlines()]
        except OSError as exc:
            raise InputError(f"Cannot read --captions {args.captions}: {exc.strerror}.") from None
        items = [c for c in candidates if c]
        if not items:
            raise InputError(f"{args.captions} holds no captions.")
        queries = [Path(p) for p in args.image]
        images = encode_folder(model, queries, args.batch_size)
        texts = encode_captions(model, items, batch_size=args.batch_size, keep_on_device=True)
        scores = model.similarity(images, texts)  # (images, captions)

    top = scores.topk(min(args.top, scores.shape[1]), dim=1)
    rows = []
    for q, query in enumerate(queries):
        hits = [Hit(items[int(i)], float(s)) for s, i in zip(top.values[q], top.indices[q], strict=True)]
        rows.append(SheetRow(query, hits, query_is_image=not forward))
        print(f"{query}")
        for rank, hit in enumerate(hits, 1):
            print(f"  {rank}. {hit.score:+.4f}  {hit.item}")
    if args.sheet:
        print(f"contact sheet: {write_contact_sheet(rows, args.sheet)}")
    return 0
