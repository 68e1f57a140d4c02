"""The one exception type users see as a one-line error (the CLI and scripts print it, no traceback)."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line of at most 200 characters (its type name if it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
