"""The playbook reference in docs/playbooks.md, generated from schemas/playbook.schema.json.

The schema is the single source of truth: a test renders this and compares
it with the section of docs/playbooks.md between the reference markers, so the two
cannot drift. ``python -m suture.sidecar.reference --write`` updates docs/playbooks.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from suture.engine.documents import load_schema

START = "<!-- reference:start (generated from schemas/playbook.schema.json; do not edit by hand) -->"
END = "<!-- reference:end -->"
COMBINATORS = ("all", "any", "not")


def _type(node: Mapping[str, Any]) -> str:
    ref = node.get("$ref", "")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        return {"condition": "condition", "action": "action", "duration": "duration", "name": "name",
                "path": "path"}.get(name, "mapping")
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if isinstance(kind, list):
        return " or ".join(kind)
    return {"object": "mapping", "integer": "integer", "number": "number", "string": "string",
            "boolean": "boolean"}.get(kind, kind or "any")


def _table(node: Mapping[str, Any], *, skip: tuple[str, ...] = ()) -> list[str]:
    required = set(node.get("required", ()))
    rows = ["| key | type | meaning |", "|---|---|---|"]
    for key, prop in node.get("properties", {}).items():
        if key in skip:
            continue
        need = " (required)" if key in required else ""
        default = f" Default: `{prop['default']}`." if "default" in prop else ""
        text = (prop.get("description", "") + default).replace("|", "\\|").strip()
        rows.append(f"| `{key}`{need} | {_type(prop)} | {text} |")
    return rows


def render_reference(schema: Mapping[str, Any] | None = None) -> str:
    schema = schema or load_schema("playbook")
    defs = schema["$defs"]
    out = [START, "", "### Top-level keys", "", *_table(schema), ""]
    out += ["### Conditions (in `when` and in `validate.expect`)", ""]
    combinators = defs["condition"]["properties"]
    for name in [k for k in combinators if k not in COMBINATORS]:  # every condition kind the schema has
        out += [f"`{name}`: {combinators[name].get('description', '')}", "", *_table(defs[name]), ""]
    out += [f"`all` / `any` / `not`: {combinators['all']['description']} / {combinators['any']['description']} / "
            f"{combinators['not']['description']}", ""]
    out += ["### Actions (in `fix` and `on_rollback`)", ""]
    actions = defs["action"]["properties"]
    for name in actions:
        out += [f"`{name}`: {actions[name].get('description', '')}", "", *_table(defs[name]), ""]
    out += ["### `validate`", "", *_table(defs["validate"]), ""]
    out += ["### `examples`", "", *_table(schema["properties"]["examples"]), ""]
    out += [f"Durations: {defs['duration']['description']}", "", END]
    return "\n".join(out)


def readme_section(readme: str) -> str:
    start, end = readme.index(START), readme.index(END) + len(END)
    return readme[start:end]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, nargs="?", const=Path("docs/playbooks.md"),
                        help="replace the section in docs/playbooks.md (or the given file)")
    args = parser.parse_args(argv)
    text = render_reference()
    if args.write:
        readme = args.write.read_text()
        args.write.write_text(readme.replace(readme_section(readme), text))
    else:
        print(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
