"""Summaries (median and min-max of the runs, ratios to the raw yardstick), the table, the JSON."""

from __future__ import annotations

from typing import Any

from bench.stats import spread

# (entry, figure) -> (yardstick entry, its figure): each throughput is divided by the hand-encoded
# RESP loop's (``<figure>_ratio``, the strict yardstick) and by the redis-py pipeline loop's
# (``<figure>_ratio_redispy``, the yardstick the issue's own numbers describe); each timing by the bare
# loops' of the ``floor`` entry (``<figure>_ratio``: 1.5 = half as slow again as the floor)
RATIOS = {
    ("submit-single", "tasks_per_s"): ("raw", "xadd_per_s"),
    ("submit-batch", "tasks_per_s"): ("raw", "xadd_per_s"),
    ("drain-default", "tasks_per_s"): ("raw", "drain_per_s"),
    ("drain-tuned", "tasks_per_s"): ("raw", "drain_per_s"),
    ("latency", "started_p50_ms"): ("floor", "latency_p50_ms"),
    ("latency", "started_p99_ms"): ("floor", "latency_p99_ms"),
    ("schedule", "lateness_p50_ms"): ("floor", "schedule_p50_ms"),
    ("schedule", "lateness_p99_ms"): ("floor", "schedule_p99_ms"),
}
# (entry, figure) -> (entry, figure) of the same run it is compared with: ``<figure>_of_<name>``
COMPARED = {
    ("groups-drain-default", "tasks_per_s"): ("drain-default", "tasks_per_s", "ungrouped"),
    ("groups-drain-tuned", "tasks_per_s"): ("drain-tuned", "tasks_per_s", "ungrouped"),
}
YARDSTICKS = (("_ratio", ""), ("_ratio_redispy", "redispy_"))  # (suffix of the ratio, prefix of the raw figure)
Rounds = list[dict[str, dict[str, Any]]]  # per run: entry -> {"figures": {...}, "load": x, "seconds": y}


def add_ratios(rounds: Rounds) -> None:
    """Each throughput and timing divided by its yardstick of the same run (and by the figure it is
    compared with, when that ran too)."""
    for entries in rounds:
        for (entry, figure), (other, its, name) in COMPARED.items():
            value = entries.get(entry, {}).get("figures", {}).get(figure)
            base = entries.get(other, {}).get("figures", {}).get(its)
            if isinstance(base, float) and isinstance(value, float):
                entries[entry]["figures"][f"{figure}_of_{name}"] = value / base
        for (entry, figure), (base_entry, yardstick) in RATIOS.items():
            bare = entries.get(base_entry, {}).get("figures", {})
            for suffix, prefix in YARDSTICKS:
                base = bare.get(prefix + yardstick)
                value = entries.get(entry, {}).get("figures", {}).get(figure)
                if isinstance(base, float) and isinstance(value, float):
                    entries[entry]["figures"][figure + suffix] = value / base


def summarise(rounds: Rounds) -> dict[str, dict[str, Any]]:
    """entry -> figure -> {median, min, max} (numbers) or the text itself; plus each entry's loads."""
    out: dict[str, dict[str, Any]] = {}
    for entries in rounds:
        for entry, result in entries.items():
            target = out.setdefault(entry, {"figures": {}, "load": []})
            target["load"].append(result["load"])
            for figure, value in result["figures"].items():
                target["figures"].setdefault(figure, []).append(value)
    for target in out.values():
        for figure, values in target["figures"].items():
            numbers = [v for v in values if isinstance(v, int | float)]
            target["figures"][figure] = spread(numbers) if len(numbers) == len(values) else values[0]
    return out


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio_text(ratio: dict[str, float] | None, times: bool = False) -> str:
    """A throughput's ratio as a percentage; a timing's (``times``) as a multiple of its floor."""
    if not ratio:
        return ""
    if times:
        return f"{ratio['median']:.2f}x ({ratio['min']:.2f}-{ratio['max']:.2f})"
    return f"{ratio['median'] * 100:.1f}% ({ratio['min'] * 100:.1f}-{ratio['max'] * 100:.1f})"


def table(summary: dict[str, dict[str, Any]], runs: int) -> str:
    head = ("workload", "figure", f"median of {runs}", "min-max", "ratio to raw RESP / floor", "ratio to redis-py loop",
            "load (1 min)")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for entry, result in summary.items():
        figures: dict[str, Any] = result["figures"]
        loads = result["load"]
        load = f"{min(loads):.2f}-{max(loads):.2f}" if len(loads) > 1 else f"{loads[0]:.2f}"
        for figure, value in figures.items():
            if figure.endswith(("_ratio", "_ratio_redispy")):
                continue
            ratios = [_ratio_text(figures.get(figure + suffix), figure.endswith("_ms")) for suffix, _ in YARDSTICKS]
            if isinstance(value, dict):
                rows.append((entry, figure, _fmt(value["median"]), f"{_fmt(value['min'])}-{_fmt(value['max'])}",
                             *ratios, load))  # fmt: skip
            else:
                rows.append((entry, figure, str(value), "", "", "", load))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
