"""``brokerbench run`` across machines on Locust's master/worker messaging (docs/distributed.md).

The orchestrator places each load process on itself or on a worker (``placed_children.py``);
a Locust ``MasterRunner`` in its own gevent process (``master_agent.py``) carries the messages;
each load machine runs ``brokerbench worker`` (``worker_agent.py``), which starts the ordinary
load processes there and sends their history shards back when the run ends.
"""
