"""Jobs and their attempts, events and metric points: submit, read, cancel, delete
(``router``, ``service``), idempotent submits (``idempotency``), how much memory a job needs
(``memory``) and how long an attempt may run (``time_limits``).

May import: ``core``, ``spec``, ``observability``, and the services a job's life touches
(artifacts, datasets, scheduling, stream, webhooks).
"""
