"""Tenants and API keys: keys stored hashed, scoped and expiring (``service``), the dependencies
every public route uses to find its tenant (``dependencies``), the ``/v1/keys`` routes.

May import: ``core``, ``observability``.
"""
