"""What the CLI says when a request fails: one sentence a person can act on, never a traceback.

A rejected job spec (422) is one line per field, with a did-you-mean for a near-miss of a field
name or of one of a field's allowed values, found in the spec models of app/spec/.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

import httpx
from pydantic import BaseModel

from taas.app.spec import BUILTIN_DATASETS, JobSpec
from taas.errors import ApiError


@dataclass(frozen=True)
class Target:
    """Where the CLI sent the request, and what a message about it needs to know."""

    api_url: str
    key_origin: str  # "TAAS_API_KEY" or the key file's path
    spec: dict[str, Any] | None = None  # the job spec sent, for did-you-mean on its values
    job_id: str | None = None


def explain(error: Exception, target: Target) -> str:
    if isinstance(error, ApiError):
        return explain_answer(error, target)
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return (
            f"cannot reach the taas API at {target.api_url} ({_reason(error)}): is `taas serve` "
            "running? set TAAS_API_URL to point elsewhere"
        )
    if isinstance(error, httpx.TimeoutException):
        return f"the taas API at {target.api_url} did not answer in time ({_reason(error)})"
    return f"the connection to the taas API at {target.api_url} failed: {_reason(error)}"


def _reason(error: Exception) -> str:
    # "[Errno 111] Connection refused" -> "connection refused"
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(error)).strip() or type(error).__name__
    return text[:1].lower() + text[1:]


def explain_answer(error: ApiError, target: Target) -> str:
    detail = error.detail
    if error.status_code == 401:
        origin = (
            "the key in TAAS_API_KEY"
            if target.key_origin == "TAAS_API_KEY"
            else f"the key saved in {target.key_origin} by `taas serve`"
        )
        return (
            f"the API key was refused ({detail}): the CLI sent {origin}; set TAAS_API_KEY to a "
            "valid key (`taas keys create --tenant NAME` makes one)"
        )
    if error.status_code == 404 and target.job_id and "job" in str(detail):
        return f"unknown job {target.job_id}: no job with that id is yours (see `taas jobs`)"
    if error.status_code == 422 and isinstance(detail, list):
        what = "job spec" if target.spec is not None else "request"
        lines = [f"the server refused the {what} (HTTP 422):"]
        lines += [f"  {line}" for line in field_errors(detail, target.spec)]
        return "\n".join(lines)
    return f"{detail} (HTTP {error.status_code})"


def field_errors(detail: list[dict[str, Any]], spec: dict[str, Any] | None) -> list[str]:
    """One line per rejected field: `training.lr: Input should be greater than 0`."""
    return [_field_error(item, spec) for item in detail]


def _field_error(item: dict[str, Any], spec: dict[str, Any] | None) -> str:
    loc = [part for part in item.get("loc", []) if part != "body"]
    message = str(item.get("msg", ""))
    if spec is None or item.get("loc", [None])[0] != "body":
        return f"{'.'.join(map(str, loc)) or 'request'}: {message}"
    walk = _walk(loc)
    shown = walk.path or "spec"
    if item.get("type") == "extra_forbidden" and walk.parent_fields:
        name = str(loc[-1])
        return f"{shown}: unknown field{_did_you_mean(name, walk.parent_fields)}"
    sent = _sent_value(spec, walk.fields)
    hint = _did_you_mean(sent, walk.choices) if isinstance(sent, str) else ""
    if message.startswith(f"{shown}="):  # a limit message names the field and value itself
        return f"{message}{hint}"
    return f"{shown}: {message}{hint}"


@dataclass
class _Walk:
    path: str  # the field's dotted path as a person writes it (training.lr, model.channels[1])
    fields: list[str | int]  # the keys to reach the value in the sent spec
    parent_fields: list[str]  # the field names allowed beside the last one
    choices: list[str]  # the values the field allows, when it is a closed set


def _walk(loc: list[Any]) -> _Walk:
    """Follow an error's location through the spec models. Union members the location names by
    their tag (`cnn`), class (`AccelerationSpec`) or label (`literal['off','auto']`) are steps
    that are not shown."""
    annotation: Any = JobSpec
    walk = _Walk("", [], [], [])
    for part in loc:
        models = _models(annotation)
        member = _named_member(models, part)
        if isinstance(part, int):
            walk.path += f"[{part}]"
            walk.fields.append(part)
            annotation = _item_type(annotation)
        elif member is not None:
            annotation = member
        elif "[" in str(part):  # a union's label for one of its kinds of value
            continue
        else:
            owner = next((model for model in models if part in model.model_fields), None)
            walk.parent_fields = [name for model in models for name in model.model_fields]
            walk.path += f".{part}" if walk.path else str(part)
            walk.fields.append(str(part))
            annotation = owner.model_fields[str(part)].annotation if owner else None
    walk.choices = _choices(annotation) or (
        list(BUILTIN_DATASETS) if walk.path == "dataset" else []
    )
    return walk


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [member for arg in typing.get_args(annotation) for member in _members(arg)]
    if typing.get_origin(annotation) is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    return [annotation]


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [
        member
        for member in _members(annotation)
        if isinstance(member, type) and issubclass(member, BaseModel)
    ]


def _named_member(models: list[type[BaseModel]], part: Any) -> type[BaseModel] | None:
    """The member of a union of models that ``part`` names by its tag or class name."""
    if len(models) < 2 and not (models and part == models[0].__name__):
        return None
    for model in models:
        tag = model.model_fields.get("arch")
        if part == model.__name__ or (tag is not None and part == tag.default):
            return model
    return None


def _item_type(annotation: Any) -> Any:
    for member in _members(annotation):
        args = typing.get_args(member)
        if typing.get_origin(member) in (list, tuple) and args:
            return args[0]
    return None


def _choices(annotation: Any) -> list[str]:
    """The allowed values of a closed-set field (Literal), or the tags of a tagged union."""
    values: list[str] = []
    for member in _members(annotation):
        if typing.get_origin(member) is Literal:
            values += [str(value) for value in typing.get_args(member)]
        elif isinstance(member, type) and issubclass(member, BaseModel):
            tag = member.model_fields.get("arch")
            values += [str(tag.default)] if tag is not None else []
    return values


def _sent_value(spec: dict[str, Any], fields: list[str | int]) -> Any:
    value: Any = spec
    for key in fields:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(value, dict):
        return value.get("arch")  # a model given by its tag
    return value


def _did_you_mean(given: str, known: list[str]) -> str:
    if given in known:
        return ""
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""
