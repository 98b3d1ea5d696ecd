"""Write docs/config-reference.md from the pydantic config models (every key, type, default, meaning).

Run: `.venv/bin/python tools/gen_config_docs.py` (tests/test_cli_docs.py checks the file is current).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel

HEADER = """# Configuration reference

Generated from the config models by `tools/gen_config_docs.py`; do not edit by hand. How the file and
`--set` overrides work: [configuration.md](configuration.md).
"""


def _type_name(annotation: Any) -> str:
    text = str(annotation) if get_args(annotation) else (getattr(annotation, "__name__", None) or str(annotation))
    text = text.replace("typing.", "").replace("NoneType", "None")
    return text.replace(" | ", " or ").replace("|", " or ")


def _default(field: Any) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value, default=str)}`"


def _walk(model: type[BaseModel], prefix: str, sections: list[tuple[str, type[BaseModel]]]) -> None:
    sections.append((prefix, model))
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _walk(annotation, f"{prefix}.{name}" if prefix else name, sections)


def render() -> str:
    from cxr_fgbg.config import PipelineConfig

    sections: list[tuple[str, type[BaseModel]]] = []
    _walk(PipelineConfig, "", sections)
    lines = [HEADER]
    for prefix, model in sections:
        rows = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                continue
            key = f"{prefix}.{name}" if prefix else name
            description = " ".join((field.description or "").split())
            rows.append(f"| `{key}` | {_type_name(annotation)} | {_default(field)} | {description} |")
        if rows:
            header = ["| key | type | default | meaning |", "|---|---|---|---|"]
            lines += [f"\n## `{prefix or '(top level)'}`\n", *header, *rows]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
