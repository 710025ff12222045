"""A TEST DOUBLE: brokerbench's own misbehaving in-memory broker, for the harness's own tests.

``server.py`` is a small broker process (127.0.0.1 only; ``brokerbench up --only memory``)
with partitions, consumer groups, acks, nacks, redelivery and dead letters; ``driver.py`` is
the ``memory`` driver that talks to it; ``knobs.py`` holds the knobs that make it lose,
duplicate, reorder or delay a given fraction of messages (``targets:`` in brokerbench.yaml).

It exists so the orchestrator, the checkers and the reports can be shown to catch a broker
that misbehaves, in seconds and without a JVM. It measures nothing about any real broker and
never replaces a real-broker test: results against it say ``environment.test_double: true``.
"""
