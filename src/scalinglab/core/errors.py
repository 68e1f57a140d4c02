"""The one exception type users see as a one-line error (the CLI and scripts print it, no traceback)."""

from contextlib import contextmanager


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line of at most 200 characters (its type name if it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextmanager
def needs_package(package: str, message: str):
    """Imports of an optional package: where `package` itself is missing, UserError(message) (how to
    install it); a module missing inside the package raises as it is."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if not (exc.name or package).startswith(package):
            raise
        raise UserError(message) from None
