"""The custom Locust message types of the control channel (``runner.register_message``).

Master -> worker: ``PING`` {id}; ``START`` {run, label, role, module, plan, stdin} (a load
process to start, its plan as JSON without secrets); ``TELL`` {run, label, line} (a line on its
stdin, e.g. ``start <ns>`` in the worker's clock); ``STOP`` {run, labels, grace}; ``COLLECT``
{run} (stop the run's processes, send its shards and logs back, forget the run);
``CHUNK_ACK`` {run}; ``REFUSE`` {reason} (the worker exits with it).

Worker -> master: ``HELLO`` {name, host, pid}; ``PONG`` {id, t} (its clock, ns); ``LINE`` {run,
label, line} (a progress line, as printed); ``EXIT`` {run, label, code, failure};
``START_FAILED`` {run, label, error}; ``CHUNK`` {run, path, data, last} (one piece of a
returned file, sent after the previous one's ``CHUNK_ACK``); ``COLLECTED`` {run, files, error}.
"""

PING = "bb-ping"
PONG = "bb-pong"
HELLO = "bb-hello"
START = "bb-start"
START_FAILED = "bb-start-failed"
TELL = "bb-tell"
STOP = "bb-stop"
LINE = "bb-line"
EXIT = "bb-exit"
COLLECT = "bb-collect"
CHUNK = "bb-chunk"
CHUNK_ACK = "bb-chunk-ack"
COLLECTED = "bb-collected"
REFUSE = "bb-refuse"

CHUNK_BYTES = 512 * 1024
"""Bytes per returned-file message (one in flight per worker)."""
