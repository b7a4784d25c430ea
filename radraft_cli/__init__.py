"""The composition root: the ``radraft`` command line and the processes it assembles.

The only code that imports the services (gateway, worker, reporting) together, and imported by
nothing in them or in the core, so the import graph by folder has one direction: this package
on top, the three services beneath it, the core (``radraft``) at the bottom.
"""
