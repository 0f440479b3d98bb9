"""Wire codec: versioned messages, entropy-coded feature maps, a decoder that trusts nothing.

See ``docs/wire.md`` for the byte layout. Public names::

    Frame, Tensor            what is sent (tensor=None: an empty frame)
    Encoder, Decoder, Limits encode / check-and-decode, with limits applied before allocation
    MissingKeyFrameError     PayloadError for a delta frame whose key frame was lost
    train_dictionary, main   zstd dictionary training (``edge-runtime train-dict``)
"""

from edge_runtime.codec.dictionary import main, train_dictionary
from edge_runtime.codec.wire import (
    CODERS,
    MAGIC,
    VERSION,
    Decoder,
    Encoder,
    Frame,
    Limits,
    MissingKeyFrameError,
    Tensor,
)

__all__ = [
    "CODERS",
    "MAGIC",
    "VERSION",
    "Decoder",
    "Encoder",
    "Frame",
    "Limits",
    "MissingKeyFrameError",
    "Tensor",
    "main",
    "train_dictionary",
]
