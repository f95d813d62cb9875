"""Built-in evaluation: retrieval recall/MRR/nDCG, answer EM/F1, ALCE-style citation quality, reports and plots.

Everything here measures the engine from the outside, through ``QAEngine.retrieve``
and ``QAEngine.ask``, on a question set (generated from the knowledge graph, or your own JSONL).
"""
