"""The whole chain on the embedded phantom, as one resumable job (`cxr-fgbg demo`, `make demo`).

Each stage writes into its own sub-folder of the output directory and, when it finishes, a marker in
`stages.json`; a rerun skips the finished stages, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_fgbg.config import PipelineConfig, dump_config
from cxr_fgbg.io import write_json_atomic, write_text_atomic

logger = logging.getLogger(__name__)

QUICK_OVERRIDES: dict[str, Any] = {"phantom": {"studies": 60, "size": 256}}
FULL_OVERRIDES: dict[str, Any] = {"phantom": {"studies": 400, "size": 512}}


@dataclass
class StageRecord:
    name: str
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""


class StageRunner:
    """Runs named stages once; finished stages are recorded in `stages.json` and skipped on rerun."""

    def __init__(self, out_dir: Path, echo: Callable[[str], None] = print) -> None:
        self.out_dir = out_dir
        self.echo = echo
        self.marker = out_dir / "stages.json"
        self.records: dict[str, StageRecord] = {}
        if self.marker.exists():
            for name, raw in json.loads(self.marker.read_text()).items():
                self.records[name] = StageRecord(**raw)

    def run(self, name: str, func: Callable[[], tuple[dict[str, str], str]]) -> StageRecord:
        if name in self.records:
            self.echo(f"[{name}] done before, skipped ({self.records[name].seconds:.1f} s then)")
            return self.records[name]
        self.echo(f"[{name}] running ...")
        start = time.perf_counter()
        outputs, summary = func()
        record = StageRecord(name, time.perf_counter() - start, outputs, summary)
        self.records[name] = record
        write_json_atomic(self.marker, {key: vars(value) for key, value in self.records.items()})
        self.echo(f"[{name}] finished in {record.seconds:.1f} s")
        return record


def demo_config(config: PipelineConfig, quick: bool) -> PipelineConfig:
    """Apply the quick/full presets underneath anything the user set explicitly."""
    preset = QUICK_OVERRIDES if quick else FULL_OVERRIDES
    data = config.model_dump()
    explicit = config.model_dump(exclude_unset=True)
    for section, values in preset.items():
        for key, value in values.items():
            if key not in explicit.get(section, {}):
                data[section][key] = value
    return PipelineConfig.model_validate(data)


def run_demo(out_dir: str | Path, config: PipelineConfig, quick: bool = False,
             echo: Callable[[str], None] = print) -> dict[str, StageRecord]:
    """Run every stage of the chain on the phantom into `out_dir`; returns the stage records."""
    from cxr_fgbg.data.phantom import generate_phantom

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = demo_config(config, quick)
    write_text_atomic(out / "config.yaml", dump_config(config))
    runner = StageRunner(out, echo)

    def phantom_stage() -> tuple[dict[str, str], str]:
        summary = generate_phantom(
            out / "phantom",
            studies=config.phantom.studies,
            seed=config.phantom.seed if config.phantom.seed is not None else config.seed,
            size=config.phantom.size,
            settings=config.phantom,
        )
        return {"phantom": str(out / "phantom")}, summary.format()

    record = runner.run("phantom", phantom_stage)
    echo(record.summary)
    return runner.records
