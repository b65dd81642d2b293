"""Did-you-mean for a refused job spec: a near-miss of a field name, or of one of a field's
allowed values, found in the spec models. The API adds it to its 422 messages, so curl, the
Python client and the CLI all get it."""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel

from taas.app.spec.datasets import BUILTIN_DATASETS
from taas.app.spec.job import JobSpec


def spec_hint(item: dict[str, Any], spec: object) -> str:
    """``; did you mean `x`?`` for one error of a spec (``loc`` starting with "body"), or "".
    ``spec`` is what was sent."""
    loc = [part for part in item.get("loc", []) if part != "body"]
    if not isinstance(spec, dict) or item.get("loc", [None])[0] != "body":
        return ""
    walk = walk_spec(loc)
    if item.get("type") == "extra_forbidden" and walk.parent_fields:
        return did_you_mean(str(loc[-1]), walk.parent_fields)
    sent = sent_value(spec, walk.fields)
    return did_you_mean(sent, walk.choices) if isinstance(sent, str) else ""


@dataclass
class _Walk:
    path: str  # the field's dotted path as a person writes it (training.lr, model.channels[1])
    fields: list[str | int]  # the keys to reach the value in the sent spec
    parent_fields: list[str]  # the field names allowed beside the last one
    choices: list[str]  # the values the field allows, when it is a closed set


def walk_spec(loc: list[Any]) -> _Walk:
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


def sent_value(spec: dict[str, Any], fields: list[str | int]) -> Any:
    value: Any = spec
    for key in fields:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    if isinstance(value, dict):
        return value.get("arch")  # a model given by its tag
    return value


def did_you_mean(given: str, known: list[str]) -> str:
    if given in known:
        return ""
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""
