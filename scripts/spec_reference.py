"""Write the job spec reference, docs/reference/job-spec.md, from the spec's own JSON schema.

The page lists every field of ``JobSpec.model_json_schema()`` (following ``$defs``, the
discriminated union of ``model`` and nested objects such as ``training`` and ``acceleration``)
with its dotted path, type, default, limits and description, so it cannot drift from the code.
tests/test_docs.py fails when the committed page differs from what this writes.

From the repository root:

    .venv/bin/python -m scripts.spec_reference           # rewrite the page
    .venv/bin/python -m scripts.spec_reference --check   # exit 1 if the page is out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from taas.app.spec import ARCH_TRAINING_DEFAULTS, JobSpec

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "job-spec.md"
COMMAND = "python -m scripts.spec_reference"

Schema = dict[str, Any]


class SchemaWithFactoryDefaults(GenerateJsonSchema):
    """Pydantic leaves out the defaults of fields made by a ``default_factory`` (the network, the
    training recipe, the lists); this generator calls each factory that takes no arguments."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)


def spec_schema() -> Schema:
    """The job spec's JSON schema (validation mode), with the defaults of factory fields."""
    return JobSpec.model_json_schema(schema_generator=SchemaWithFactoryDefaults)


@dataclass
class Section:
    """One object of the spec: a heading, its docstring and one table row per field."""

    anchor: str
    title: str
    description: str
    rows: list[list[str]] = field(default_factory=list)


class Walker:
    """Walks the schema depth first, one section per object, in the order fields are declared."""

    def __init__(self, schema: Schema) -> None:
        self.defs: dict[str, Schema] = schema.get("$defs", {})
        self.sections: list[Section] = []
        self.closed = True  # whether every object refuses unknown fields

    def resolve(self, node: Schema) -> Schema:
        ref = node.get("$ref")
        if ref is None:
            return node
        return self.defs[ref.removeprefix("#/$defs/")]

    def walk_object(self, node: Schema, path: str, anchor: str, title: str) -> None:
        node = self.resolve(node)
        if node.get("additionalProperties") is not False:
            self.closed = False
        section = Section(anchor, title, _text(node.get("description", "")))
        self.sections.append(section)
        required = set(node.get("required", []))
        nested: list[tuple[str, Schema]] = []
        for name, prop in node.get("properties", {}).items():
            dotted = f"{path}.{name}" if path else name
            section.rows.append(
                [
                    f"`{dotted}`",
                    self.type_text(prop, dotted),
                    self.default_text(prop, name in required),
                    _limits_text(self.branches(prop)),
                    _text(prop.get("description", "")),
                ]
            )
            nested.append((dotted, prop))
        for dotted, prop in nested:
            self.walk_nested(prop, dotted)

    def walk_nested(self, prop: Schema, path: str) -> None:
        """A section for each object a field may hold: one per variant of a discriminated union."""
        discriminator = prop.get("discriminator")
        alternatives = _alternatives(prop)
        objects = [branch for branch in alternatives if _is_object(self.resolve(branch))]
        for branch in objects:
            if discriminator is not None:
                key = discriminator["propertyName"]
                value = self.resolve(branch)["properties"][key]["const"]
                title = f'`{path}` with `{key}: "{value}"`'
                self.walk_object(branch, path, _anchor(f"{path}-{value}"), title)
            else:
                other = len(objects) < len([b for b in alternatives if b.get("type") != "null"])
                title = f"`{path}` as an object" if other else f"`{path}`"
                self.walk_object(branch, path, _anchor(path), title)

    def variants(self, prop: Schema, key: str) -> list[str]:
        """The discriminator values of a union's alternatives, in the order they are declared."""
        return [branch["properties"][key]["const"] for branch in self.branches(prop)]

    def branches(self, prop: Schema) -> list[Schema]:
        """The alternatives a field accepts, each resolved (a plain field is its one branch)."""
        return [self.resolve(branch) for branch in _alternatives(prop)]

    def type_text(self, prop: Schema, path: str) -> str:
        discriminator = prop.get("discriminator")
        if discriminator is not None:
            key = discriminator["propertyName"]
            links = ", ".join(
                f"[`{value}`](#{_anchor(f'{path}-{value}')})" for value in self.variants(prop, key)
            )
            return f"object, by `{key}`: {links}"
        return " or ".join(self.branch_type(branch, path) for branch in _alternatives(prop))

    def branch_type(self, node: Schema, path: str) -> str:
        if "$ref" in node:
            return f"object ([fields](#{_anchor(path)}))"
        if "const" in node:
            return f"`{json.dumps(node['const'])}`"
        kind = node.get("type", "any")
        if kind == "array":
            if "prefixItems" in node:
                items = ", ".join(self.branch_type(item, path) for item in node["prefixItems"])
                return f"array [{items}]"
            return f"array of {self.branch_type(node.get('items', {}), path)}"
        return str(kind)

    def default_text(self, prop: Schema, required: bool) -> str:
        if required:
            return "required"
        if "default" not in prop:
            return "none"
        default = prop["default"]
        if isinstance(default, dict):
            return self.object_default_text(prop, default)
        return _code(default)

    def object_default_text(self, prop: Schema, default: dict[str, Any]) -> str:
        """An object default that is its fields' own defaults is said so; any other in full."""
        discriminator = prop.get("discriminator")
        for target in self.branches(prop):
            properties = target.get("properties", {})
            own = {name: sub.get("default") for name, sub in properties.items()}
            if own != default:
                continue
            if discriminator is not None:
                key = discriminator["propertyName"]
                return f"`{json.dumps({key: default[key]})}` with its defaults"
            return "its fields' defaults"
        return _code(default)

    def render(self) -> str:
        lines: list[str] = []
        for section in self.sections:
            lines += [f"## {section.title} {{#{section.anchor}}}", ""]
            if section.description:
                lines += [section.description, ""]
            lines += [
                "| Field | Type | Default | Limits | Description |",
                "|---|---|---|---|---|",
            ]
            lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in section.rows]
            lines.append("")
        return "\n".join(lines)


def _alternatives(prop: Schema) -> list[Schema]:
    """What a field accepts: each branch of a union, or the field itself."""
    branches: list[Schema] = prop.get("oneOf") or prop.get("anyOf") or [prop]
    return branches


def _is_object(node: Schema) -> bool:
    return node.get("type") == "object" and "properties" in node


def _limits_text(branches: list[Schema]) -> str:
    """The bounds of every non-null alternative of a field, joined."""
    parts: list[str] = []
    for node in branches:
        if node.get("type") == "null":
            continue
        for part in _bounds(node):
            if part not in parts:
                parts.append(part)
    return "; ".join(parts)


def _bounds(node: Schema) -> list[str]:
    parts: list[str] = []
    for key, sign in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in node:
            parts.append(f"{sign} {_number(node[key])}")
    for low, high, unit in (
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "items"),
    ):
        if node.get("prefixItems") and unit == "items":
            continue  # a tuple: its length is in its type
        if low in node and high in node:
            parts.append(f"{node[low]} to {node[high]} {unit}")
        elif low in node:
            parts.append(f"at least {node[low]} {unit}")
        elif high in node:
            parts.append(f"at most {node[high]} {unit}")
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{json.dumps(value)}`" for value in node["enum"]))
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    items = [node["items"]] if isinstance(node.get("items"), dict) else node.get("prefixItems", [])
    item_bounds: list[str] = []
    for item in items:
        for part in _bounds(item):
            if part not in item_bounds:
                item_bounds.append(part)
    if item_bounds:
        parts.append("each item " + ", ".join(item_bounds))
    return parts


def _number(value: float) -> str:
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"{value} (2^{value.bit_length() - 1})"
    return json.dumps(value)


def _code(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _text(docstring: str) -> str:
    """A docstring or description as Markdown: paragraphs kept, reST ``code`` as `code`."""
    paragraphs = [" ".join(part.split()) for part in re.split(r"\n\s*\n", docstring.strip())]
    return "\n\n".join(re.sub(r"``(.+?)``", r"`\1`", part) for part in paragraphs if part)


def _cell(text: str) -> str:
    return text.replace("\n\n", "<br>").replace("|", "\\|")


def _anchor(path: str) -> str:
    return "spec-" + re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _recipe_defaults(walker: Walker, model: Schema) -> list[str]:
    """The training defaults each architecture's recipe puts under the fields a spec gives."""
    lines = ["| `model.arch` | training defaults of its recipe |", "|---|---|"]
    for arch in walker.variants(model, model["discriminator"]["propertyName"]):
        defaults = ARCH_TRAINING_DEFAULTS.get(arch)
        text = _code(defaults) if defaults else "none: the defaults of `training` above"
        lines.append(f"| `{arch}` | {_cell(text)} |")
    return lines


def render() -> str:
    """The reference page, as committed."""
    schema = spec_schema()
    walker = Walker(schema)
    walker.walk_object(schema, "", _anchor("top-level"), "Top level")
    required = ", ".join(f"`{name}`" for name in schema.get("required", []))
    closed = (
        " Every object refuses fields it does not list: a typo is a 422 naming the field."
        if walker.closed
        else ""
    )
    head = [
        "# Job spec reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the job spec's JSON schema: do not edit. -->",
        "",
        f"Generated from the job spec's JSON schema (`JobSpec.model_json_schema()`) by "
        f"`{COMMAND}`. Required: {required}; every other field has a default.{closed} "
        "The [spec guide](../spec-guide.md) explains the fields and shows examples; "
        "the service's own limits (epochs, batch size, widths, parameters, run time) are "
        "[settings](../configuration.md).",
        "",
        "Where a field's type is an object, its fields follow in their own table.",
        "",
    ]
    recipes = [
        "## Recipe defaults per architecture {#spec-recipe-defaults}",
        "",
        "The `training` fields a spec leaves out are filled first from its network's recipe, "
        "then from the defaults above. A recipe's `test_time_flip` applies only where training "
        "flips images (`training.augment.flip`).",
        "",
        *_recipe_defaults(walker, schema["properties"]["model"]),
        "",
    ]
    return "\n".join([*head, walker.render(), *recipes]).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed page is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if PAGE.read_text(encoding="utf-8") != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
