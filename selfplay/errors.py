"""Errors that reach the user as one clear message (exit status 2), never as a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for: a config value, an env id, a path, a move."""
