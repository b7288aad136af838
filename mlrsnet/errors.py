"""Errors that reach the user as one readable paragraph, never as a traceback."""


class UserError(Exception):
    """A mistake in input or environment the user can fix (bad config, missing data).

    The CLI prints the message and exits with :attr:`exit_code`.
    """

    exit_code = 2
