"""Export the knowledge graph for other tools: GraphML (Gephi, yEd) or JSON lines (one edge per line).

JSON lines stream the page links from SQL after the fact graph, so an export of any
size runs in the fact graph's memory; GraphML is written from one NetworkX graph,
links included, so it suits knowledge bases whose links fit in memory.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Iterable
from typing import TextIO

import networkx as nx


def export_jsonl(graph: nx.MultiDiGraph, out: TextIO, links: Iterable[tuple[str, str, dict]] = ()) -> int:
    """One JSON object per node (``type: node``) then per edge (``type: edge``); returns lines written.

    ``links`` (``kg.graph.link_edges``) follow the graph's own edges; a link target that is
    no node of the graph gets its ``missing`` node line just before its first edge.
    """
    lines = 0
    for node, attrs in graph.nodes(data=True):
        out.write(json.dumps({"type": "node", "id": node, **attrs}, ensure_ascii=False) + "\n")
        lines += 1
    for subject, obj, attrs in graph.edges(data=True):
        out.write(json.dumps({"type": "edge", "subject": subject, "object": obj, **attrs}, ensure_ascii=False) + "\n")
        lines += 1
    missing: set[str] = set()
    for subject, obj, attrs in links:
        if obj not in graph and obj not in missing:
            missing.add(obj)
            out.write(json.dumps({"type": "node", "id": obj, "kind": "missing"}, ensure_ascii=False) + "\n")
            lines += 1
        attrs = {k: v for k, v in attrs.items() if k != "object_is_title"}
        out.write(json.dumps({"type": "edge", "subject": subject, "object": obj, **attrs}, ensure_ascii=False) + "\n")
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
