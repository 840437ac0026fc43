"""``mmzoo push RUNDIR --repo ORG/NAME``: publish a training run (or a saved model folder) in one commit.

RUNDIR is a training run folder (``run.json``, ``metrics.jsonl`` with one line of dev metrics per epoch, and
``best/``, a save_pretrained folder) or a plain save_pretrained folder. The repository is created when needed;
the model card's evaluation results come from the run's own metrics file.
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a trained model to the Hugging Face Hub", description=__doc__)
    p.add_argument("run_dir", metavar="RUNDIR", help="training run folder or save_pretrained folder")
    p.add_argument("--repo", required=True, help="Hub repository id, ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to commit to (created from main when missing)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--token", default=None, help="Hub token with write access (default: the stored login)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mmzoo.hub import push_run

    info = push_run(
        args.run_dir,
        args.repo,
        private=args.private,
        token=args.token,
        revision=args.revision,
        commit_message=args.message,
    )
    print(f"pushed {args.run_dir} to {args.repo}: commit {info.oid}")
    print(info.commit_url)
    return 0
