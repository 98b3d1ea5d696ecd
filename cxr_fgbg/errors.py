"""Exceptions that carry a message meant for the person running the tool."""


class CxrFgbgError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(CxrFgbgError):
    """A configuration file or override is invalid; the message names the file and the key."""


class InputDataError(CxrFgbgError):
    """An input file or row is unusable; the message names the file, the row or the field."""
