"""How the service can be watched: log formats and secret redaction (``logs``), the context
each log line carries (``request_context``, ``request_id``), Prometheus metrics (``metrics``,
``http_metrics``, ``metrics_dir`` for several API processes, ``metrics_scrape`` for
``GET /metrics``) and ``/healthz`` and ``/readyz`` (``health``).

May import: ``core``, the standard library, prometheus-client; the routes here read the
``auth`` settings dependency, and the job and broker names they count.
"""
