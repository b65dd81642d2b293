"""The ``taas`` command (typer): running the service (``serve``, ``api``, ``worker``,
``migrate``), using it (jobs, datasets, sweeps, keys) and showing the answers in a terminal.

``main.py`` defines the commands; the other modules say things: ``errors`` (a failure in one
sentence), ``format`` and ``sweep_format`` (tables and summaries), ``watch`` and ``job_feed``
(a job's events as they happen), ``keys`` (keys with or without a server), ``serve`` (the
embedded service in one process tree).

May import anything of taas: it is the outermost layer. Heavy imports (torch, the API app) are
made inside the command that needs them, so ``taas --help`` stays fast.
"""
