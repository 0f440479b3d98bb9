"""The wire format, one message per frame: the names callers import from here.

The implementation is split by concern (``docs/wire.md`` has the byte layout of versions 1 and 2)::

    format.py    constants, field codes, varints, Tensor / Frame / Limits, the error bound of
                 float16 scale / offset (QPARAM_REL_ERROR)
    encoder.py   Encoder: Frame -> bytes (version 2, or 1 on request)
    decoder.py   Decoder: bytes -> Frame, every field checked against a limit before allocation
    state.py     the per-stream inter-frame state of an encoder and of a decoder

Errors raised while decoding all derive from :class:`~edge_runtime.errors.DecodeError`
(``HeaderError``, ``ChecksumError``, ``ModelMismatchError``, ``PayloadError`` >
:class:`MissingKeyFrameError`).
"""

from __future__ import annotations

from edge_runtime.codec.decoder import Decoder
from edge_runtime.codec.encoder import Encoder
from edge_runtime.codec.format import (
    CODERS,
    MAGIC,
    QPARAM_REL_ERROR,
    VERSION,
    VERSIONS,
    Frame,
    Limits,
    MissingKeyFrameError,
    Tensor,
    serialize_values,
)

__all__ = [
    "MAGIC",
    "VERSION",
    "VERSIONS",
    "CODERS",
    "QPARAM_REL_ERROR",
    "Tensor",
    "Frame",
    "Limits",
    "Encoder",
    "Decoder",
    "MissingKeyFrameError",
    "serialize_values",
]
