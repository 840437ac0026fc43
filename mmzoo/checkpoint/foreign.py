"""Reading other codebases' checkpoints without running them.

The research repos save ``torch.save({'epoch', 'model': [state dicts], 'best_rsum', 'opt': argparse.Namespace,
'Eiters'})``: a pickle. :func:`read_foreign_checkpoint` opens it with ``torch.load(weights_only=True)``, whose
unpickler builds only tensors and plain containers, and allow-lists exactly one class, ``argparse.Namespace``
(the options). A file that names any other class is refused with the class named; nothing else is ever
unpickled or executed.
"""

from __future__ import annotations

import argparse
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from mmzoo.errors import CheckpointError

#: how torch's safe unpickler names what it refused, across torch versions: "Unsupported global: GLOBAL posix.system",
#: "unsupported GLOBAL posix.system whose module posix is blocked", "... but got <class 'x.Y'>", "unrecognized
#: function <built-in function system>".
_REFUSED = (
    re.compile(r"GLOBAL ([\w.]+)"),
    re.compile(r"but got <class '([\w.]+)'>"),
    re.compile(r"unrecognized function <(?:built-in function )?([^>]+)>"),
)


def refused_class(exc: BaseException) -> str | None:
    """The class or function torch's ``weights_only`` unpickler refused to load, named as in its message."""
    text = str(exc)
    for pattern in _REFUSED:
        found = pattern.search(text)
        if found:
            return found.group(1)
    return None


def unpickle_reason(exc: BaseException) -> str:
    """torch's reason for refusing a file, without its advice to load it with ``weights_only=False`` (which would
    run whatever the file carries; mmzoo never gives that advice)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [
        line
        for line in lines
        if "weights_only" not in line and "trusted source" not in line and "add_safe_globals" not in line
    ]
    return (kept[0] if kept else type(exc).__name__)[:300]


def refused_pickle_message(path: str | Path, name: str, what: str) -> str:
    """The one message of a file refused for carrying a pickled class or function ``name``."""
    return (
        f"{path} carries a pickled {name!r}, which mmzoo never unpickles: {what} is read with "
        "torch.load(weights_only=True), so that loading it can never run code. Nothing was run. Do not load this "
        "file another way unless you know who made it and why it holds this object."
    )


def read_foreign_checkpoint(path: str | Path) -> Any:
    """The object a foreign ``torch.save`` wrote, loaded on the CPU with nothing unpickled but tensors,
    containers and ``argparse.Namespace``.

    Python-2 pickles (PyTorch 0.3 checkpoints) are read with ``encoding="latin1"`` when UTF-8 fails.

    Raises:
        CheckpointError: the file is missing, truncated or not a torch checkpoint, or it carries another
            pickled class (named in the message).

    Examples:
        >>> ckpt = mmzoo.plugin.read_foreign_checkpoint("model_best.pth")  # doctest: +SKIP
        >>> sorted(ckpt), vars(ckpt["opt"])["embed_size"]  # doctest: +SKIP
        (['Eiters', 'best_rsum', 'epoch', 'model', 'opt'], 1024)
    """
    path = Path(path)
    if not path.is_file():
        what = "a folder, not a checkpoint file" if path.is_dir() else "not found"
        raise CheckpointError(f"{path} is {what}.")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # a zip archive (torch >= 1.6) or a pickle (legacy format)
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint: torch.save writes a zip archive or a pickle, and this file "
            "is neither. Download it again."
        )
    last: Exception | None = None
    for encoding in ("utf-8", "latin1"):
        try:
            with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
                # torch warns that pickle arguments are for weights_only=False; the encoding is applied all the same
                warnings.filterwarnings("ignore", message=".*pickle_load_args.*")
                warnings.filterwarnings("ignore", message="Detected pickle protocol")  # refused below if unsafe
                return torch.load(path, map_location="cpu", weights_only=True, encoding=encoding)
        except UnicodeDecodeError as exc:  # a Python-2 pickle: try latin1
            last = exc
        except pickle.UnpicklingError as exc:
            found = refused_class(exc)
            if found:
                raise CheckpointError(
                    refused_pickle_message(
                        path, found, "a foreign checkpoint (only tensors, plain containers and argparse.Namespace)"
                    )
                    + " Is this really a checkpoint of the model you are converting?"
                ) from None
            raise CheckpointError(f"{path} is not a readable torch checkpoint ({unpickle_reason(exc)}).") from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, zipfile.BadZipFile, AttributeError) as exc:
            raise CheckpointError(
                f"{path} is not a readable torch checkpoint: it is truncated or not a file torch.save wrote "
                f"({type(exc).__name__}: {unpickle_reason(exc)}). Download it again."
            ) from None
    raise CheckpointError(f"{path} is not a readable torch checkpoint ({last}).")


def checkpoint_options(checkpoint: Any, path: str | Path) -> dict[str, Any]:
    """The ``opt`` Namespace of a research-repo checkpoint as a dict, with a CheckpointError when absent."""
    opt = checkpoint.get("opt") if isinstance(checkpoint, dict) else None
    if isinstance(opt, argparse.Namespace):
        return vars(opt)
    if isinstance(opt, dict):
        return dict(opt)
    raise CheckpointError(
        f"{path} has no 'opt' options (argparse.Namespace) saved beside the weights: it was not written by the "
        "research code's save_checkpoint, so the architecture cannot be read from it."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "checkpoint_options",
    "read_foreign_checkpoint",
    "refused_class",
    "refused_pickle_message",
    "unpickle_reason",
]
