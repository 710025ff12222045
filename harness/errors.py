"""Errors a user can cause and fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """A problem the user can fix; the message names the fix in one line."""

    exit_code = 2


class BrokerUnreachableError(UserError):
    """A broker did not answer on its address."""
