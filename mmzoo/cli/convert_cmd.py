"""``mmzoo convert NAME CHECKPOINT [--out DIR] [--OPTION VALUE ...]``: another codebase's checkpoint -> mmzoo folder.

NAME is a registered converter (``mmzoo components converter``) or a zoo alias. With an alias, the entry's
converter and options apply and, without ``--out``, the converted model goes into mmzoo's cache so that
``mmzoo.from_pretrained(ALIAS)`` loads it from then on, offline too (the way to use checkpoints the authors
publish outside the Hub). The checkpoint is read without unpickling anything but ``argparse.Namespace``; every
tensor must fit; nothing is left behind on an error.

Each converter's options are flags (``mmzoo components converter --fields`` lists them), e.g.
``--bert bert-base-uncased`` or ``--vocab f30k_precomp_vocab.json``.

Examples::

    mmzoo convert vse-infinity model_best.pth --out vse-coco --bert bert-base-uncased
    mmzoo convert scan model_best.pth --vocab f30k_precomp_vocab.json --out scan-f30k
    mmzoo convert saf-f30k SAF_model_best.pth --vocab f30k_precomp_vocab.json
"""

from __future__ import annotations

import argparse

from mmzoo.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert another codebase's checkpoint into an mmzoo folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help="converter name or zoo alias")
    p.add_argument("checkpoint", help="the checkpoint file (e.g. model_best.pth)")
    p.add_argument("--out", default=None, help="folder to write (default with an alias: mmzoo's cache)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=run)


def parse_options(extra: list[str]) -> dict[str, object]:
    """``--bert X --no-imgnorm --vocab Y`` -> {"bert": "X", "no_imgnorm": True, "vocab": "Y"} (values via YAML)."""
    options: dict[str, object] = {}
    i = 0
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--") or len(flag) < 3:
            raise ConfigError(f"Unexpected argument {flag!r}: converter options are --name value.")
        key, _, inline = flag[2:].partition("=")
        key = key.replace("-", "_")
        if inline:
            raw = inline
        elif i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            i += 1
            raw = extra[i]
        else:
            raw = "true"
        options[key] = _scalar(raw)
        i += 1
    return options


def _scalar(raw: str) -> object:
    """A number or boolean when YAML reads one, else the string itself (a path such as ``*x.json`` or ``[a``).

    Converter options are scalars: what YAML reads as a list, a mapping or null, or cannot read at all, is
    taken as the text the user typed.
    """
    import yaml

    from mmzoo.config import parse_yaml

    try:
        value = parse_yaml(raw)
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, dict | list) or value is None else value


def run(args: argparse.Namespace) -> int:
    from mmzoo.hub.zoo import is_alias
    from mmzoo.pretrained import convert_checkpoint
    from mmzoo.registry import converter

    options = parse_options(list(getattr(args, "extra", [])))
    folder = convert_checkpoint(args.name, args.checkpoint, args.out, overwrite=args.overwrite, **options)
    installed = args.out is None and is_alias(args.name) and args.name not in converter
    print(f"converted {args.checkpoint} into {folder}")
    print(f"load it with mmzoo.from_pretrained({(args.name if installed else 'local-dir:' + str(folder))!r})")
    return 0
