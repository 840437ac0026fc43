"""Built-in data formats, registered through the same hook as any plugin's: ``precomp``.

``precomp`` is the precomputed-feature layout of SCAN and VSE++ (``{split}_ims.npy`` and ``{split}_caps.txt``),
extended with per-image region counts, boxes and ids (:class:`mmzoo.plugin.PrecomputedFormat`).
"""

from __future__ import annotations

from types import ModuleType

from mmzoo.plugin import PrecomputedFormat, hookimpl


@hookimpl
def mmzoo_register(registry: ModuleType) -> None:
    registry.data_format.register("precomp", PrecomputedFormat)
