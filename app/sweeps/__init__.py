"""Sweeps: many trials of one spec, each a job: the search space and each trial's parameters
(``search``), objectives and constraints (``objectives``), early stopping (``pruning``), and the
controller that starts the next trials (``controller``).

May import: ``core``, ``spec``, ``jobs``, ``scheduling``, ``webhooks``.
"""
