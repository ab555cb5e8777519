"""Recorded ratios for `benches/run --record` and `--check` (benches/baseline.json).

A run's ratios (realmgate against the best peer of its scenario, and against its own public
route where the scenario has one) are stored per scenario and worker count. `--check`
compares a new run with them and prints one warning line per path that lost more than
TOLERANCE: a warning, not a failure, because two runs on a shared 2-core VM differ by that
much on their own. Ratios, not absolute rates, are compared: the machine's load moves both
sides of a ratio.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

BASELINE = Path(__file__).resolve().parent / "baseline.json"
TOLERANCE = 0.10


def key(scenario: str, workers: int, pinned: bool) -> str:
    return f"{scenario}/w{workers}" + ("/pinned" if pinned else "")


def load(path: Path = BASELINE) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def record(ratios: dict[str, float], run_key: str, command: str, machine: str,
           path: Path = BASELINE) -> None:
    """Store `ratios` (name → value, higher is better) under `run_key`."""
    data = load(path)
    data[run_key] = {
        "ratios": {name: round(value, 3) for name, value in sorted(ratios.items())},
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine,
    }
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def check(ratios: dict[str, float], run_key: str, path: Path = BASELINE) -> list[str]:
    """One line per ratio: `WARNING` when it lost more than TOLERANCE against the recorded
    value, `ok` otherwise, `new` when nothing was recorded for it."""
    recorded = load(path).get(run_key, {}).get("ratios", {})
    lines = []
    if not recorded:
        lines.append(f"check {run_key}: nothing recorded in {path.name} (run with --record)")
    for name, value in sorted(ratios.items()):
        before = recorded.get(name)
        if before is None:
            lines.append(f"check {run_key} {name}: {value:.2f}× (new, not recorded)")
            continue
        change = value / before - 1 if before else 0.0
        verdict = "WARNING: lost" if change < -TOLERANCE else "ok:"
        lines.append(f"check {run_key} {name}: {verdict} {value:.2f}× against recorded "
                     f"{before:.2f}× ({change:+.0%})")
    return lines
