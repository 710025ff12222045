"""Where a bundled locustfile's Locust listens: on 127.0.0.1 unless told otherwise.

Locust's own defaults bind its web UI (``--web-host``, port 8089) and a master's port for its
workers (``--master-bind-host``, 5557) on every interface, which would let anyone who can
reach the machine start or stop a load. The bundled locustfiles move both defaults to
127.0.0.1; to open them, say so: ``--web-host '*'`` (or ``LOCUST_WEB_HOST='*'``) and
``--master-bind-host '*'`` (or ``LOCUST_MASTER_BIND_HOST``), or an interface's address. Locust's
``--processes`` workers connect over 127.0.0.1 and need neither.
"""

from argparse import ArgumentParser

LOOPBACK = "127.0.0.1"


def listen_on_loopback_by_default(parser: ArgumentParser) -> None:
    """Called from a locustfile's ``init_command_line_parser`` listener; the command line and
    Locust's environment variables still win over these defaults."""
    parser.set_defaults(web_host=LOOPBACK, master_bind_host=LOOPBACK)
