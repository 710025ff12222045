"""Analysis of a history too large to hold in memory at once.

The compacted history (``sends.parquet``, ``receives.parquet``) is sorted by message identity,
so it splits into contiguous *identity ranges* (whole producer+key pairs) without rewriting it:
``ranges`` streams them, ``bounded_checks`` runs the ordinary checkers on each range and merges
their verdicts into the ones ``check_all`` gives on the whole history (Jepsen's independent
checker, per key range), with the few cross-range facts (a Kafka partition's highest offset
read, a scope's handoffs between consumers) computed in a pass of their own.
"""
