"""How many threads torch uses for mmzoo's work on the CPU: decided once, in one place, overridable.

torch starts with one thread per physical core. On a machine other jobs already keep busy that is a poor
default: a thread that waits for a core stalls every parallel region of every product (OpenMP threads meet
at a barrier after each), and on the shared 2-core machine this project is developed on a training run with
torch's default was about 30x slower than with one thread (``benchmarks/threads.py`` measures it). So
:func:`configure_threads`, which the ``mmzoo`` command calls once at start-up, picks

1. ``MMZOO_NUM_THREADS`` when it is set (a positive integer; ``0`` or ``auto`` mean the rule below);
2. otherwise nothing at all when ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` is set: torch already honours them;
3. otherwise :func:`default_threads`: of the cores this process may use, those the load average leaves free, at
   least one.

Library code never changes torch's thread count by itself; a Python user calls
``mmzoo.scoring.configure_threads()`` (or ``torch.set_num_threads``) if they want the same policy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import torch

from mmzoo.errors import ConfigError

logger = logging.getLogger(__name__)

ENV = "MMZOO_NUM_THREADS"
#: environment variables through which the user already told torch (OpenMP, MKL) how many threads to use
DEFERRED_TO = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (``taskset``, a cgroup cpuset, a batch scheduler's
    share) where the platform tells it, else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """The cores that the 1-minute load average leaves free, rounded, at least 1 and at most ``cores``
    (default: :func:`usable_cores`).

    Examples:
        >>> default_threads(cores=2, load=0.1), default_threads(cores=2, load=1.6), default_threads(cores=16, load=3.0)
        (2, 1, 13)
    """
    cores = cores or usable_cores()
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - load)))


def requested_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """What the environment asks for: a count, or None when the rule (or the user's OpenMP setting) decides."""
    environ = os.environ if environ is None else environ
    raw = environ.get(ENV, "").strip()
    if raw in ("", "0", "auto"):
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{ENV}={raw!r} is not a positive integer; set it to e.g. 1, or to 'auto' for mmzoo's rule.")
    return value


def configure_threads(environ: Mapping[str, str] | None = None) -> int:
    """Set torch's intra-op thread count by the policy above (once, at start-up); returns the count in use."""
    environ = os.environ if environ is None else environ
    requested = requested_threads(environ)
    if requested is None and any(environ.get(name) for name in DEFERRED_TO):
        return torch.get_num_threads()
    count = requested if requested is not None else default_threads()
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
        logger.debug("torch threads: %d (%s)", count, f"{ENV}" if requested else "free cores by load average")
    return count


__all__ = ["DEFERRED_TO", "ENV", "configure_threads", "default_threads", "requested_threads", "usable_cores"]
