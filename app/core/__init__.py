"""What every route and every process shares: settings (``config``), the database engine and
sessions (``db``), the domain errors services raise (``errors``), the schema's migrations
(``migrate``), the request-body and per-key rate limits (``body_size``, ``rate_limits``), the
OpenAPI document's shared parts (``openapi``) and free disk space (``storage_space``).

May import: the standard library, pydantic, SQLAlchemy, Starlette/FastAPI, ``taas.app.spec``.
No domain package, with two exceptions that exist to see them all: ``models.py`` imports every
domain's ORM models so that ``Base.metadata`` knows each table, and ``openapi.py`` names the
API-key security scheme of ``auth``.
"""
