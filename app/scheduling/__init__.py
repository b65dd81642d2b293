"""Which job runs where: the Celery broker both sides share (``broker``), fair dispatch decided
in the database (``dispatch``), the workers' presence (``presence``), and the reconciler, which
treats the database as the truth and re-enqueues what the broker lost (``reconciler``).

May import: ``core``, ``observability``, ``jobs``, ``sweeps``, ``artifacts``.
"""
