"""Built-in losses: the bidirectional triplet ranking loss (VSE++, Faghri et al., BMVC 2018)."""

from __future__ import annotations

from types import ModuleType

import mmzoo
from mmzoo_plugins.losses.triplet import TripletLoss


@mmzoo.hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.loss.register("triplet", TripletLoss)
