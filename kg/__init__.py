"""The knowledge base: dump parsing, the SQL store, the FAISS vector index kept in step with it, and the graph."""
