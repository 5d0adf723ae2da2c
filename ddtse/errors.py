"""The one exception type for user mistakes (bad input, bad config, bad checkpoint)."""


class DdtseError(Exception):
    """A user-facing error: the CLI prints its message as one line, without a traceback."""
