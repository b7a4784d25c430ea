"""What pydicom raises for a file it cannot read, named once for every reader.

A damaged or hostile file fails pydicom in several ways: not DICOM at all
(``InvalidDicomError``), a value whose length does not fit its VR (``BytesLengthException``,
found by the intake's fuzz test), a value it cannot convert (``ValueError``), a file gone or
unreadable (``OSError``). Every place that reads a DICOM file turns these into its own error or
status and adds what its own call can also raise, so the next such discovery is one edit here.
"""

from __future__ import annotations

from pydicom.errors import BytesLengthException, InvalidDicomError

UNREADABLE_DICOM_ERRORS: tuple[type[Exception], ...] = (
    InvalidDicomError,
    BytesLengthException,
    OSError,
    ValueError,
)
