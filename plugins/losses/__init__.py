"""Built-in losses: the bidirectional triplet ranking loss (VSE++, Faghri et al., BMVC 2018)."""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import hookimpl
from mmzoo_plugins.losses.triplet import TripletLoss


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.loss.register("triplet", TripletLoss)
