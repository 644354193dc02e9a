"""``newsstream up``: the supervisor of the embedded stack and what it launches.

The local broker and Milvus launchers, the Milvus server runner, the supervised children, the
marker that lets other commands find a running ``up``, the replay server for ``--replay`` (and
the feed snapshots it replays), and process-tree helpers. Bench and eval code may use it.
"""
