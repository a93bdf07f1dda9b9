"""MkDocs hook: the configuration reference, generated from the config schema at build time.

The one source of every key, type, allowed value and default is
``src/hepflows/schemas/config.schema.yaml`` (and, for the ``model:`` block, which the schema leaves
to :func:`hepflows.flows.check_model_config`, :data:`hepflows.model_config.MODEL_DEFAULTS`).
:func:`render` turns them into Markdown tables; :func:`on_page_markdown` puts the tables where a
page holds :data:`MARKER`. Nothing of the reference is written by hand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

#: The placeholder a page holds where the reference goes.
MARKER = "<!-- config-reference -->"
SCHEMA = Path(__file__).resolve().parents[2] / "src" / "hepflows" / "schemas" / "config.schema.yaml"


def _value(value: Any) -> str:
    """A default or allowed value as YAML would be written in a config."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _default(spec: dict[str, Any], required: bool) -> str:
    if "default" in spec:
        return _value(spec["default"])
    return "required" if required else "(none)"


def _type(spec: dict[str, Any]) -> str:
    if "enum" in spec:
        return " / ".join(_value(v) for v in spec["enum"])
    if "oneOf" in spec:
        return " or ".join(_type(s) for s in spec["oneOf"])
    kind = spec.get("type", "any")
    kinds = kind if isinstance(kind, list) else [kind]
    text = " or ".join(k for k in kinds)
    if "items" in spec and isinstance(spec["items"], dict):
        text += f" of {_type(spec['items'])}"
    bounds = [
        f"{sign} {spec[key]}"
        for key, sign in (
            ("minimum", "≥"),
            ("exclusiveMinimum", ">"),
            ("maximum", "≤"),
            ("exclusiveMaximum", "<"),
        )
        if key in spec
    ]
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _cell(text: str) -> str:
    """One table cell: white space folded, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _rows(spec: dict[str, Any], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """(key path, type, default, description) of ``spec`` and every key nested below it."""
    required = set(spec.get("required", []))
    for name, sub in spec.get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        nested = sub.get("type") == "object" and "properties" in sub
        if nested:
            if sub.get("description"):
                yield key, "section", "", sub["description"]
            yield from _rows(sub, key)
        else:
            yield key, _type(sub), _default(sub, name in required), sub.get("description", "")
        if nested and "items" in sub:
            yield from _rows(sub["items"], f"{key}[]")
        elif sub.get("type") == "array" and isinstance(sub.get("items"), dict):
            yield from _rows(sub["items"], f"{key}[]")


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{k}` | {_cell(t)} | {d} | {_cell(m)} |" for k, t, d, m in rows]
    return lines


def render(schema: dict[str, Any], model_defaults: dict[str, Any]) -> str:
    """Markdown tables of every key of ``schema``, one section per top-level key."""
    lines: list[str] = []
    for name, spec in schema["properties"].items():
        lines += ["", f"### `{name}`", ""]
        if spec.get("description"):
            lines += [_cell(spec["description"]), ""]
        if name == "model":
            rows = [
                (f"model.{k}", type(v).__name__, _value(v), "see the table above")
                for k, v in model_defaults.items()
            ]
        elif spec.get("type") == "object" and "properties" in spec:
            rows = list(_rows(spec, name))
        else:
            rows = [(name, _type(spec), _default(spec, False), "")]
        if rows:
            lines += _table(rows)
    return "\n".join(lines).lstrip("\n") + "\n"


def reference() -> str:
    """The reference of the schema and model defaults of this checkout."""
    from hepflows.model_config import MODEL_DEFAULTS

    schema = yaml.safe_load(SCHEMA.read_text(encoding="utf-8"))
    return render(schema, MODEL_DEFAULTS)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """MkDocs event: the reference replaces :data:`MARKER` wherever a page holds it."""
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
