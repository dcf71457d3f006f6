"""Evaluation of a build: BM25 and embedding retrieval, NDCG, paired bootstrap."""
