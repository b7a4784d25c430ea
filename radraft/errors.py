"""The base error of radraft; each domain defines subclasses next to the code raising them."""


class RadraftError(Exception):
    """Base class of every error radraft raises on purpose.

    Catching it separates "we detected this and said why" from bugs, which stay other exceptions.
    """


class ConfigurationError(RadraftError):
    """A setting is missing, unknown or unsafe; raised at start-up, before anything runs."""
