"""Text values padded as DICOM stores them, for the gateway's own byte encoders.

``gateway.answers`` (C-STORE responses) and ``gateway.file_meta`` (reception file meta) write
elements without pydicom; both pad their text the same way, here.
"""

from __future__ import annotations


def even_length_ascii(text: str, pad: bytes) -> bytes | None:
    """ASCII ``text`` padded with ``pad`` to an even length (PS3.5 7.1.1: every value has an
    even length; UI pads with NUL, other text with a space), or None if it is not ASCII, which
    the callers leave to the libraries' encoders and their character set handling."""
    if not text.isascii():
        return None
    value = text.encode("ascii")
    return value + pad if len(value) % 2 else value
