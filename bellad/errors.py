"""The exception hierarchy.

Every error bellad raises on purpose derives from :class:`BelladError`. Its
``str()`` is one line meant for a person: it names what is wrong (the config
key, the file, the device, the model) and, where there is one, the fix. The
CLI prints it without a traceback and exits non-zero.
"""

from __future__ import annotations


class BelladError(Exception):
    """Base class: a problem bellad can explain in one line."""

    #: process exit status used by the CLI when this error ends a command
    exit_code: int = 1


class ConfigError(BelladError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 78  # EX_CONFIG: systemd is told not to restart on it


class AudioError(BelladError):
    """An audio input (device, file, stdin) cannot be opened or decoded."""

    exit_code = 66  # EX_NOINPUT


class ModelError(BelladError):
    """A model is missing, corrupt or cannot be loaded."""

    exit_code = 78


class PublishError(BelladError):
    """Results cannot be handed to a sink (broker refused, TLS failure...)."""

    exit_code = 69  # EX_UNAVAILABLE


class MissingDependencyError(BelladError):
    """An optional backend was chosen but its package is not installed."""

    exit_code = 69

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the Python package {package!r}, which is not installed: "
            f"install it with  pip install 'bellad[{extra}]'"
        )
        self.package = package
        self.extra = extra
