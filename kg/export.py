"""Export the knowledge graph for other tools: GraphML (Gephi, yEd) or JSON lines (one edge per line).

JSON lines stream from SQL (``kg.graph.graph_lines``), so an export of any size runs
in little memory; GraphML is written from one NetworkX graph, links included, so it
suits knowledge bases that fit in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterable
from typing import TextIO

import networkx as nx


def export_jsonl(records: Iterable[dict], out: TextIO) -> int:
    """One JSON object a line: nodes (``type: node``) and edges (``type: edge``); returns lines written."""
    lines = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        lines += 1
    return lines


def export_graphml(graph: nx.MultiDiGraph, path: Path) -> None:
    """GraphML allows only scalar attributes: lists become "|"-joined strings and None becomes ""."""
    flat = nx.MultiDiGraph()
    for node, attrs in graph.nodes(data=True):
        flat.add_node(node, **{k: _scalar(v) for k, v in attrs.items()})
    for subject, obj, key, attrs in graph.edges(keys=True, data=True):
        flat.add_edge(subject, obj, key=key, **{k: _scalar(v) for k, v in attrs.items()})
    nx.write_graphml(flat, str(path))


def _scalar(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple, set)):
        return "|".join(map(str, value))
    return value
