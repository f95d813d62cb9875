"""The QA engine: grounded, cited answers from retrieved evidence and a local causal LM, or an abstention.

Citations and abstention are decided here from retrieval and attribution
signals, never trusted to the language model.
"""
