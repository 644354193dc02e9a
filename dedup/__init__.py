"""Deduplication, a pure domain package: shingling, MinHash signatures, LSH banding, the index
and its storage backends (in-memory for one worker, Redis shared by all workers).

No Kafka, no Milvus, no settings object: callers pass parameters and a storage backend. The
entry point is :class:`dedup.index.DedupIndex`; see its module docstring for the protocol.
"""
