"""The errors crossrec raises for bad input: each carries a message a user can act on."""


class CrossrecError(Exception):
    """Base class of every error crossrec raises on purpose."""


class DataError(CrossrecError):
    """Input data is malformed, incomplete or inconsistent (the message names file, line,
    column)."""


class ConfigError(CrossrecError):
    """An experiment configuration is invalid (the message names the key)."""
