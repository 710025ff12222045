"""The message envelope and the run history (see ``docs/history.md``).

- ``envelope``: the 36-byte header every message carries (no pyarrow, cheap to import).
- ``schema``: the Arrow schemas of the ``sends``, ``receives`` and ``events`` tables.
- ``shards``: one process's append-only Arrow IPC stream file per table, and its reader.
- ``recorder``: ``Recorder``, what load generators, consumers and the nemesis call.
- ``store``: reading shards, compacting them into Parquet, loading a run's ``History``.

This package deliberately imports nothing itself, so that importing the envelope does not pull
in pyarrow.
"""
