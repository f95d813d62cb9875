"""Dump parsing, the SQL store and the knowledge graph."""
