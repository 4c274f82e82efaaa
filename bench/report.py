"""Machine facts, and the figures each benchmark prints and appends to
docs/benchmarks.md (under "Results", newest last)."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS_HEADING = "## Results"


def load_average() -> float:
    with open("/proc/loadavg") as handle:
        return float(handle.read().split()[0])


def machine_facts() -> dict[str, str]:
    cpu = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
                break
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": postgres.split()[0],
        "kernel": platform.release(),
        "load": f"{load_average():.2f}",
    }


def wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "wrk missing"
    match = re.search(r"wrk (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else "wrk"


class Report:
    """One benchmark's figures: printed as they come, then appended to the doc."""

    def __init__(self, name: str, *, scale: str, settings: dict[str, object]):
        self.name = name
        self.scale = scale
        self.settings = settings
        self.started = datetime.now(UTC)
        self.load_at_start = load_average()
        self.tables: list[tuple[str, list[str], list[list[str]]]] = []
        self.notes: list[str] = []
        self.goals: list[tuple[str, bool, str]] = []
        self.memory: dict[str, float] = {}

    def table(self, title: str, header: list[str], rows: list[list[object]]) -> None:
        cells = [[str(c) for c in row] for row in rows]
        self.tables.append((title, header, cells))
        print(f"\n{self.name}: {title}")
        widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
        print("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in cells:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))

    def goal(self, what: str, met: bool, detail: str) -> None:
        self.goals.append((what, met, detail))
        print(f"  goal {'MET' if met else 'MISSED'}: {what} — {detail}")

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}")

    def markdown(self, machine: dict[str, str]) -> str:
        when = self.started.strftime("%Y-%m-%d %H:%M UTC")
        lines = [
            f"### {self.name} — {when} ({self.scale} scale)",
            "",
            f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram']} RAM; "
            f"Python {machine['python']}, PostgreSQL {machine['postgresql']}, "
            f"Linux {machine['kernel']}. Load average (1 min) at start: "
            f"{self.load_at_start:.2f}.",
            "",
            "Settings: "
            + ", ".join(f"{key} {value}" for key, value in self.settings.items())
            + ".",
            "",
        ]
        for title, header, rows in self.tables:
            lines += [f"*{title}*", "", "| " + " | ".join(header) + " |"]
            lines.append("|" + "|".join("---" for _ in header) + "|")
            lines += ["| " + " | ".join(row) + " |" for row in rows]
            lines.append("")
        if self.memory:
            lines.append(
                "Peak RSS: "
                + ", ".join(f"{role} {mb:.0f} MB" for role, mb in self.memory.items())
                + "."
            )
            lines.append("")
        for what, met, detail in self.goals:
            lines.append(f"- Goal {'met' if met else '**missed**'}: {what} — {detail}")
        for note in self.notes:
            lines.append(f"- {note}")
        return "\n".join(lines).rstrip() + "\n"

    def as_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "scale": self.scale,
                "started": self.started.isoformat(),
                "tables": self.tables,
                "goals": self.goals,
                "memory": self.memory,
            }
        )


def append_to_doc(reports: list[Report], machine: dict[str, str]) -> None:
    """Append the reports under the doc's results heading (made if missing)."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if RESULTS_HEADING not in text:
        text = text.rstrip() + f"\n\n{RESULTS_HEADING}\n"
    text = text.rstrip() + "\n\n" + "\n".join(r.markdown(machine) for r in reports)
    DOC.write_text(text)
