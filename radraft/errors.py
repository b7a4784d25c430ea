"""The base error of radraft and the kinds of refusal every edge knows how to say.

Each domain defines its errors next to the code that raises them and makes each one a kind:
not found, conflict, invalid input, not allowed, not authenticated, too many attempts. Each
edge translates kinds once (the web app to HTTP statuses in ``reporting/web/errors.py``; the
DIMSE and HL7 edges answer with their own statuses and ACK codes).
"""

from __future__ import annotations


class RadraftError(Exception):
    """Base class of every error radraft raises on purpose.

    Catching it separates "we detected this and said why" from bugs, which stay other exceptions.
    """

    def details(self) -> dict[str, object]:
        """Machine-readable facts about the refusal beyond its message (none by default)."""
        return {}


class ConfigurationError(RadraftError):
    """A setting is missing, unknown or unsafe; raised at start-up, before anything runs."""


class NotFoundError(RadraftError):
    """What the request names does not exist."""


class GoneError(NotFoundError):
    """What the request names existed here and was removed on purpose (spool retention); the
    caller should look for it where it came from."""


class ConflictError(RadraftError):
    """The request does not fit the current state of what it names (retrying as is won't help)."""


class InvalidInputError(RadraftError):
    """A value the caller gave is outside what is allowed."""


class NotAllowedError(RadraftError):
    """The caller is known but may not do this."""


class NotAuthenticatedError(RadraftError):
    """The caller has not said who it is, or said it wrongly."""


class TooManyAttemptsError(RadraftError):
    """The caller must wait before trying again."""


class MalformedRequestError(RadraftError):
    """The request cannot be understood as its protocol defines it (a DICOMweb query key with an
    unusable value, a multipart body without a boundary)."""


class NotAcceptableError(RadraftError):
    """None of the media types the caller accepts can be produced."""


class UnsupportedMediaTypeError(RadraftError):
    """The request body's media type is not one this route takes."""


class PayloadTooLargeError(RadraftError):
    """The request body, or a part of it, is over its limit."""
