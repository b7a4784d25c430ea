"""radraft's Alembic migrations; a package only so that a wheel carries them (``radraft db
upgrade`` runs them from wherever radraft is installed)."""
