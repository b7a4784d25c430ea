"""radraft: the shared core (settings, database, outbox, logging, CLI) of the three services."""

__all__ = ["__version__"]

__version__ = "0.1.0"
