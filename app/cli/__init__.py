"""The ``taas`` command (typer): running the service (``serve``, ``api``, ``worker``,
``migrate``), using it (jobs, datasets, sweeps, keys) and showing the answers in a terminal.

``main.py`` assembles the commands, one module per group: ``service`` (serve, api, worker,
migrate), ``jobs``, ``datasets``, ``sweeps``, ``keys`` (with or without a server) and
``tenants``; ``session`` is what every command that calls the API shares (the client, the exit
codes). The rest say things: ``errors`` (a failure in one sentence), ``format`` and
``sweep_format`` (tables and summaries), ``watch`` and ``job_feed`` (a job's events as they
happen), ``serve`` (the embedded service in one process tree).

May import anything of taas: it is the outermost layer. Heavy imports (torch, the API app) are
made inside the command that needs them, so ``taas --help`` stays fast.
"""
