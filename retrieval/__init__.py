"""Retrieval: entity linking, BM25, dense search, fusion, graph expansion and fact ranking, composed by the pipeline.

Heavy libraries (onnxruntime, faiss, bm25s) load inside functions, so importing
this package stays cheap.
"""
