"""Causal LM backends: load a local model once and turn chat messages into (streamed, batched) text."""
