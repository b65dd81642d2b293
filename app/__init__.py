"""The API service, installed as ``taas.app``. One folder per concern; ``main.py`` builds the
FastAPI application from the routers and maps errors to HTTP responses in one place.

- ``spec/``: the job spec, the contract the API, the worker and the trainer share (pydantic
  only: it imports nothing else of taas).
- ``core/``: what every route and process shares: settings, the database, domain errors,
  body-size and rate limits, the OpenAPI document's shared parts, migrations, disk space.
- ``observability/``: logs and request ids, Prometheus metrics, health checks.
- One package per domain, each with ``router.py`` (HTTP only), ``service.py`` (logic),
  ``models.py`` (ORM) and ``schemas.py`` (pydantic): ``jobs/``, ``datasets/``, ``artifacts/``,
  ``auth/``, ``sweeps/``, ``webhooks/``, ``stream/`` (live events), ``scheduling/`` (which
  worker runs what, the broker and the reconciler), ``internal/`` (the routes workers call),
  ``dashboard/`` (the web pages, a client of the public API).
- ``cli/``: the ``taas`` command and how it shows things in a terminal.

Import rules: a router never builds a query and a service never raises HTTPException; ``core``
and ``spec`` import no domain package (but ``core/models.py``, the registry of every table);
of the worker, only the CLI (which starts workers and the bench) and the dataset service (which
checks an upload with the worker's own readers) import anything.
"""
