"""longpos.analysis: what learned positions and attention do (protocol: longpos).

- :mod:`~longpos.analysis.patterns`: constant / monotonic / hybrid / irregular chunks of
  RePo positions (``spec/repo.md`` section 7.1).
- :mod:`~longpos.analysis.span`: the span max z - min z against context length (7.2).
- :mod:`~longpos.analysis.attention`: attention mass on the needle, distractors and recent
  tokens, RoPE vs RePo side by side (7.3).
"""

from longpos.analysis.attention import (
    AttentionReport,
    analyze_attention,
    attention_mass,
    compare_attention,
    niah_spans,
    plot_attention_mass,
)
from longpos.analysis.collect import LayerPositions, collect_positions
from longpos.analysis.patterns import (
    PatternReport,
    analyze_patterns,
    classify_chunk,
    classify_sequence,
    pattern_report,
)
from longpos.analysis.span import position_spans

__all__ = [
    "AttentionReport",
    "LayerPositions",
    "PatternReport",
    "analyze_attention",
    "analyze_patterns",
    "attention_mass",
    "classify_chunk",
    "classify_sequence",
    "collect_positions",
    "compare_attention",
    "niah_spans",
    "pattern_report",
    "plot_attention_mass",
    "position_spans",
]
