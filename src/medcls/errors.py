"""The exception types medcls raises for bad input, in one place below every other module.

The entry points (:func:`medcls.config.run_guarded`) end a command on any of them with its
one-line message and exit code 2; the API raises them to the caller. Each message names the file
or value at fault and the fix.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input found before or after training (a folder, file, label, id, setting or
    checkpoint that does not fit): the message names it and the fix."""


class BadImageError(OSError):
    """An image file exists but cannot be decoded."""


class WeightsError(ValueError):
    """Weights that do not fit (another architecture, a missing package or file): bad input,
    which the command-line entry points report in one line with exit code 2."""


class WeightsNotFound(FileNotFoundError):
    """The weights asked for are not on this machine; the message names what to install or
    give. A ``FileNotFoundError``: entry points end with its message and exit 2."""


class SearchSpaceError(ValueError):
    """A search-space entry the sweeper cannot turn into an Optuna distribution."""
