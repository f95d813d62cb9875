"""Retrieval: passage embeddings, the FAISS vector index, BM25, fusion and entity linking.

Heavy libraries (torch, onnxruntime, faiss) load inside functions, so importing
this package stays cheap.
"""
