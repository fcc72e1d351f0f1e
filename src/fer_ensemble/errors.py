"""The error every layer raises for a user's mistake; the command line prints it as one line."""


class UserError(ValueError):
    """A bad path, file or argument: the message says what is wrong and how to fix it."""
