"""Errors a user can cause and fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """A problem the user can fix; the message names the fix in one line."""

    exit_code = 2


class BrokerUnreachableError(UserError):
    """A broker did not answer on its address."""


class RunFailedError(UserError):
    """A run could not execute (its consumers died, its producers were too slow, a process
    was never ready). ``brokerbench run`` records the run as failed and goes on with the
    suite; elsewhere it is one line and exit 2 like any user error."""
