"""The one error type users see: a clear message naming what is wrong.

Entry points (the CLI) catch :class:`OmnifieldError`, print its message on one
line and exit with code 2. Everything that validates user input raises it.
"""


class OmnifieldError(Exception):
    """User-facing error: bad input, impossible config, corrupt file.

    The message must name the offending file or option and say what is wrong.
    """

    exit_code = 2
