"""``vexplain methods``: the registered methods, generated from the registry."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from vexplain import methods, plugin_failures


def add_parser(subcommands: Any) -> None:
    parser = subcommands.add_parser("methods", help="list registered methods", description="List the registered explanation methods: name, aliases (names are also matched ignoring case, '-' and '_'), required capabilities, plugin, and the backends each works on.")
    parser.add_argument("--long", action="store_true", help="also show each method's definition and options")
    parser.set_defaults(run=run)


def method_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, aliases, requires, plugin, works-on) for each registered method."""
    return [(m.name, ", ".join(m.aliases) or "-", ", ".join(m.requires), m.plugin, " / ".join(m.backends) or "-") for m in methods()]


def run(args: argparse.Namespace) -> int:
    header = ("method", "aliases", "requires", "plugin", "works on")
    rows = [header] + method_rows()
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    if args.long:
        for info in methods():
            print(f"\n{info.name}: {info.summary}\n  paper: {info.paper}")
            for key, default in info.options.items():
                print(f"  option {key} (default {default!r})")
    for plugin, error in plugin_failures():
        print(f"plugin '{plugin}' failed to load: {error}", file=sys.stderr)
    return 0
