"""Product-key memories: static PKM (arXiv 1907.05242) and fast-weight PKM (arXiv 2601.00671).

``pkm``: :class:`StaticPKM`, :class:`PKMConfig`, product-key helpers and optimiser groups.
``fwpkm``: :class:`FwPKMLayer`, :class:`FwPKMConfig`, :class:`FwPKMState`.
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

__all__ = [
    "FwPKMConfig",
    "FwPKMLayer",
    "FwPKMState",
    "PKMConfig",
    "StaticPKM",
    "access_stats",
    "pkm_param_groups",
    "pkm_value_parameters",
    "product_topk",
]
