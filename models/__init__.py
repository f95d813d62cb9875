"""The models: causal LM backends (``models.lm``) and the passage/question embedder (``models.embedding``).

Each loads a local model once, on demand; importing this package loads nothing.
"""
