"""The one exception type users see as a one-line error (the CLI and scripts print it, no traceback)."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""
