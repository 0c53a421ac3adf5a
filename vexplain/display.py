"""Figures and tables for people: the pieces of ``vexplain demo``'s figure and of the reports.

``grid(tiles, column_titles, captions, scale)`` lays out uint8 RGB tiles (rows of equal-size
images) under column titles with a caption per tile; ``draw_box(image, box)`` outlines an
(x0, y0, x1, y1) box; ``mark_peak(image, (row, col))`` draws a cross at a map's peak;
``markdown_table(headers, rows)`` renders rows of strings as a markdown table (``|`` escaped).
"""
from vexplain.core.gallery import draw_box, grid, mark_peak
from vexplain.core.readme_tables import markdown_table

__all__ = ["draw_box", "grid", "mark_peak", "markdown_table"]
