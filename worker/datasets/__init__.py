"""A dataset's files on the worker: fetched from the API and verified (``files``), and cached
by content hash so that a dataset is downloaded once per machine (``cache``).

May import: ``taas.app.spec``, the trainer's dataset readers, the reporter.
"""
