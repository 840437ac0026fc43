"""``mmzoo download NAME``: prefetch a model into the caches and print its local folder.

Run it on a machine with network, copy ``HF_HOME`` (the Hugging Face cache and mmzoo's cache of converted
checkpoints under it) to the air-gapped machine and load there with ``HF_HUB_OFFLINE=1``:
``mmzoo.from_pretrained(NAME)`` then makes no request at all. A zoo entry in its authors' checkpoint format is
downloaded, verified and converted once.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="prefetch a pretrained model for offline use", description=__doc__)
    p.add_argument("name", help="zoo alias, hf-hub:ORG/REPO[@REV], local-dir:PATH or a folder")
    p.add_argument("--revision", default=None, help="branch, tag or commit (default: the alias's pin or main)")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: HF_HUB_CACHE, under HF_HOME)")
    p.add_argument("--token", default=None, help="Hub token for private repositories (default: the stored login)")
    p.add_argument("--force", action="store_true", help="download again even when cached (repairs a corrupted cache)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mmzoo.pretrained import download

    folders = download(
        args.name, revision=args.revision, cache_dir=args.cache_dir, token=args.token, force_download=args.force
    )
    for folder in folders if isinstance(folders, list) else [folders]:
        print(folder)
    return 0
