"""The OpenAPI document's shared parts: one error shape, the statuses every route can answer,
and the links from an operation that creates a resource to the operations on it.

Routers declare only what is theirs (``responses=error_responses({404: "no such job"})``);
``complete_openapi`` adds what follows from an operation's security, inputs and method, so a new
router gets 401, 403, 422, 429 and the rest without declaring them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from taas.app.auth.dependencies import api_key_scheme
from taas.app.core.config import get_settings
from taas.app.spec.limits import add_maxima_to_schema

Responses = dict[int | str, dict[str, Any]]

API_KEY = api_key_scheme.scheme_name  # the security scheme of the public routes
SCHEMA_REF_PREFIX = "#/components/schemas/"
ERROR_REF = {"$ref": SCHEMA_REF_PREFIX + "Error"}
ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "title": "Error",
        "type": "object",
        "description": "Every error: a message, or (422) a list of problems each naming a field.",
        "required": ["detail"],
        "properties": {
            "detail": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/ErrorItem"}},
                ]
            }
        },
    },
    "ErrorItem": {
        "title": "ErrorItem",
        "type": "object",
        "required": ["loc", "msg", "type"],
        "properties": {
            "loc": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": "where: body, query, path or header, then the field's path",
            },
            "msg": {"type": "string", "description": "what is wrong, naming field and value"},
            "type": {"type": "string", "description": "the kind of problem"},
        },
    },
}

RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying (sent whenever the wait is known)",
        "schema": {"type": "integer", "minimum": 0},
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}},
}

# (status, meaning) by what an operation has; a router's own description of a status wins.
AUTHENTICATED = {
    401: "missing, invalid, expired or revoked credentials",
    503: "the database is unavailable (restarting or unreachable); retry after Retry-After",
}
# Public routes: the API key's scopes, and the tenant's rate limits and quotas.
TENANT = {
    403: "the API key lacks the scope this operation needs",
    429: "too many requests: a rate limit or a quota of the tenant; the detail says which",
}
WITH_PARAMETERS = {422: "a parameter or the body does not validate; each item names the field"}
WITH_PATH_PARAMETERS = {404: "no such resource (or it belongs to another tenant)"}
WITH_BODY = {
    400: "the body does not parse (malformed JSON or multipart)",
    413: "the request body is larger than the server accepts",
    415: "the body's Content-Type is not one this operation reads",
}
WRITES = {507: "the server's storage is full; nothing was kept"}
HEADERS_BY_STATUS = {401: WWW_AUTHENTICATE, 429: RETRY_AFTER, 503: RETRY_AFTER}


def error_response(description: str, status: int | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status in HEADERS_BY_STATUS:
        response["headers"] = HEADERS_BY_STATUS[status]
    return response


def error_responses(descriptions: Mapping[int, str]) -> Responses:
    """``responses=`` for a route's own error statuses, each with its meaning and the Error body."""
    return {status: error_response(text, status) for status, text in descriptions.items()}


def complete_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with the shared error statuses, links and this server's
    configured limits added (cached)."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        add_error_statuses(document)
        add_links(document)
        add_maxima_to_schema(document, get_settings().limits)
        app.openapi_schema = document
    return app.openapi_schema


def public_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document without the workers' internal routes, their security scheme, and the
    schemas only those routes use."""
    paths = {
        path: item for path, item in document["paths"].items() if not path.startswith("/internal/")
    }
    components = document.get("components", {})
    schemes = {
        name: scheme
        for name, scheme in components.get("securitySchemes", {}).items()
        if name != "WorkerToken"
    }
    schemas = components.get("schemas", {})
    used = _referenced_schemas(paths, schemas)
    public_components = {
        **components,
        "securitySchemes": schemes,
        "schemas": {name: schema for name, schema in schemas.items() if name in used},
    }
    return {**document, "paths": paths, "components": public_components}


def _referenced_schemas(start: object, schemas: Mapping[str, Any]) -> set[str]:
    """The names of the schemas ``start`` refers to, directly or through other schemas."""
    found: set[str] = set()
    pending = [start]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith(SCHEMA_REF_PREFIX):
                name = reference.removeprefix(SCHEMA_REF_PREFIX)
                if name not in found and name in schemas:
                    found.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) of every operation in the document."""
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def add_error_statuses(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(ERROR_SCHEMAS)
    for schema_name in ("HTTPValidationError", "ValidationError"):  # replaced by Error
        schemas.pop(schema_name, None)
    for _path, method, operation in operations(document):
        responses = operation["responses"]
        implied = _implied_statuses(method, operation)
        for status, text in implied.items():
            responses.setdefault(str(status), {"description": text})
        for status, response in responses.items():
            if status[0] in "45":
                responses[status] = _as_error(int(status), response, implied.get(int(status)))


def _as_error(status: int, response: dict[str, Any], implied: str | None) -> dict[str, Any]:
    """A declared error status with the Error body; one that names a model of its own (the
    readiness report of /readyz's 503) stays as it is."""
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    if schema == {"$ref": "#/components/schemas/HTTPValidationError"}:
        return error_response(implied or response["description"], status)  # FastAPI's own 422
    if schema is not None and schema != ERROR_REF:
        return response
    return error_response(response.get("description") or implied or "error", status)


def _implied_statuses(method: str, operation: dict[str, Any]) -> dict[int, str]:
    """The error statuses an operation can answer because of what it has."""
    secured = bool(operation.get("security"))
    parameters = operation.get("parameters", [])
    statuses: dict[int, str] = {}
    if secured:
        statuses.update(AUTHENTICATED)
    if any(API_KEY in requirement for requirement in operation.get("security", [])):
        statuses.update(TENANT)
    if parameters or "requestBody" in operation:
        statuses.update(WITH_PARAMETERS)
    if any(parameter["in"] == "path" for parameter in parameters):
        statuses.update(WITH_PATH_PARAMETERS)
    if "requestBody" in operation:
        statuses.update(WITH_BODY)
    if secured and method in ("post", "put", "patch", "delete"):
        statuses.update(WRITES)
    return statuses


PATH_PARAMETER = re.compile(r"\{([^}]+)\}")


def add_links(document: dict[str, Any]) -> None:
    """Link each operation that creates a resource (POST on a collection answering an object
    with an ``id``) to every operation on ``{collection}/{id}...`` that needs nothing else."""
    for path, method, operation in operations(document):
        if method != "post" or PATH_PARAMETER.search(path):
            continue
        targets = _operations_on_one_item(document, path)
        if not targets:
            continue
        for status, response in operation["responses"].items():
            if status.startswith("2") and _returns_object_with_id(document, response):
                response["links"] = {
                    target["operationId"]: {
                        "operationId": target["operationId"],
                        "parameters": {parameter: "$response.body#/id"},
                        "description": f"`id` is the `{parameter}` of {verb.upper()} {item}",
                    }
                    for item, verb, target, parameter in targets
                }


def _operations_on_one_item(
    document: dict[str, Any], collection: str
) -> list[tuple[str, str, dict[str, Any], str]]:
    """(path, method, operation, parameter) under ``{collection}/{parameter}`` with no other
    path parameter."""
    found = []
    for path, method, operation in operations(document):
        if not path.startswith(collection + "/{"):
            continue
        parameters = PATH_PARAMETER.findall(path)
        if len(parameters) == 1:
            found.append((path, method, operation, parameters[0]))
    return found


def _returns_object_with_id(document: dict[str, Any], response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    reference = schema.get("$ref", "")
    if not reference.startswith("#/components/schemas/"):
        return False
    component = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    return "id" in component.get("properties", {})


def methods_of_path(document: dict[str, Any], path: str) -> set[str]:
    """The methods the document declares for a request path (HEAD wherever GET is); empty for
    a path it does not describe."""
    methods: set[str] = set()
    for template, item in document["paths"].items():
        if re.fullmatch(_path_pattern(template), path):
            methods |= {method.upper() for method in item}
    return methods | {"HEAD"} if "GET" in methods else methods


def _path_pattern(template: str) -> str:
    """`/v1/jobs/{job_id}` -> `/v1/jobs/[^/]+`: each parameter one segment, the rest literal."""
    literals = PATH_PARAMETER.split(template)[::2]  # split() puts each name between literals
    return "[^/]+".join(re.escape(literal) for literal in literals)
