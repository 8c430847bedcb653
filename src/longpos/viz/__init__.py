"""longpos.viz: the offline HTML position viewer, report plots and Markdown tables.

- :func:`write_position_viewer` / :func:`viz_positions_command`: one self-contained HTML
  page with the positions each layer and head assigned to a text or a task sample.
- :func:`write_report`: evaluation runs -> ``report.md`` with tables and PNG plots.
- Building blocks: :func:`plot_accuracy_vs_length`, :func:`plot_heatmap`,
  :func:`markdown_table`, :func:`plot_positions_png`.
"""

from longpos.viz.markdown import format_number, markdown_table
from longpos.viz.plots import plot_accuracy_vs_length, plot_heatmap
from longpos.viz.positions import (
    plot_positions_png,
    viewer_data,
    viz_positions_command,
    write_position_viewer,
)
from longpos.viz.report import load_run, write_report

__all__ = [
    "format_number",
    "load_run",
    "markdown_table",
    "plot_accuracy_vs_length",
    "plot_heatmap",
    "plot_positions_png",
    "viewer_data",
    "viz_positions_command",
    "write_position_viewer",
    "write_report",
]
