"""longpos: where tokens sit in a transformer's context.

Learned positions (RePo, arXiv 2512.14391), dropped positions (DroPE, arXiv 2512.12167),
fast-weight product-key memory (FwPKM, arXiv 2601.00671) and the baselines they are
compared with (RoPE, NoPE, RoPE/NoPE hybrids, PI, NTK, YaRN, Llama-3 scaling).
"""

__version__ = "0.1.0"
