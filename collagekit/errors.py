"""The one exception type for user mistakes (bad input, bad recipe, unknown component).

The CLI prints these as a one-line message and exits non-zero; anything else is a bug and keeps its
traceback. ``COLLAGEKIT_DEBUG=1`` shows tracebacks for user errors too.
"""


class CollagekitError(Exception):
    """A user-facing error: the message is complete, one line, and says what to change."""
