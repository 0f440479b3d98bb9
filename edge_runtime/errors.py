"""Exceptions raised by the edge runtime.

One tree, so callers can catch exactly what they mean::

    EdgeRuntimeError
    ├── ConfigError          bad or missing configuration value
    ├── BundleError          model bundle missing, corrupt or inconsistent
    ├── SourceError          a frame source cannot be opened or read
    ├── TransportError       socket / key problems
    └── DecodeError          a message on the wire is malformed (receiver drops it)
        ├── HeaderError      bad magic, version, field or limit
        ├── ChecksumError    payload checksum mismatch
        ├── ModelMismatchError  features of a model this receiver does not serve
        └── PayloadError     payload cannot be decoded into the declared tensor
"""

from __future__ import annotations

__all__ = [
    "EdgeRuntimeError",
    "ConfigError",
    "BundleError",
    "SourceError",
    "TransportError",
    "DecodeError",
    "HeaderError",
    "ChecksumError",
    "ModelMismatchError",
    "PayloadError",
]


class EdgeRuntimeError(Exception):
    """Base of every error raised on purpose by edge_runtime."""


class ConfigError(EdgeRuntimeError):
    """A configuration value is missing, unknown or of the wrong type."""


class BundleError(EdgeRuntimeError):
    """A model bundle is missing a file, has a wrong hash or an inconsistent manifest."""


class SourceError(EdgeRuntimeError):
    """A frame source cannot be opened or read."""


class TransportError(EdgeRuntimeError):
    """A socket cannot be set up (bad endpoint, bad or missing keys)."""


class DecodeError(EdgeRuntimeError):
    """A message cannot be decoded; the receiver counts it and drops it."""

    reason = "decode"


class HeaderError(DecodeError):
    """Bad magic, version, field value, or a declared size beyond the limits."""

    reason = "header"


class ChecksumError(DecodeError):
    """The payload checksum does not match."""

    reason = "checksum"


class ModelMismatchError(DecodeError):
    """The message carries features of a model this receiver does not serve."""

    reason = "model"


class PayloadError(DecodeError):
    """The payload does not decode into the tensor the header declares."""

    reason = "payload"
