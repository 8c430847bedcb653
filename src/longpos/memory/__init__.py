"""Product-key memories: static PKM (arXiv 1907.05242) and fast-weight PKM (arXiv 2601.00671).

``pkm``: :class:`StaticPKM`, :class:`PKMConfig`, product-key helpers and optimiser groups.
``fwpkm``: :class:`FwPKMLayer`, :class:`FwPKMConfig`, :class:`FwPKMState`.
``placement``: :class:`MemoryConfig` (``ModelConfig.memory``: which blocks of the reference model
get FwPKM / static PKM) and :func:`memory_param_groups` (their optimiser groups).
``naive``: slow loop references used by tests and benchmarks.
"""

from longpos.memory.fwpkm import FwPKMConfig, FwPKMLayer, FwPKMState, access_stats
from longpos.memory.pkm import (
    PKMConfig,
    StaticPKM,
    pkm_param_groups,
    pkm_value_parameters,
    product_topk,
)
from longpos.memory.placement import (
    MemoryConfig,
    memory_param_groups,
    resolve_layers,
)

__all__ = [
    "FwPKMConfig",
    "FwPKMLayer",
    "FwPKMState",
    "MemoryConfig",
    "PKMConfig",
    "StaticPKM",
    "access_stats",
    "memory_param_groups",
    "pkm_param_groups",
    "pkm_value_parameters",
    "product_topk",
    "resolve_layers",
]
