"""The benchmark's outputs: a Markdown report laid out like CMAA's Tables 3–7, a JSON
file with every number, and DET curves as PNG."""

from __future__ import annotations

import json
import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bench import POOLED, BenchResult, MethodResult

# The families of CMAA's Tables 1 and 2: their mean is the paper's "Avg." row.
PAPER_GROUPS = ("table1", "table2")
# Groups with an average row of their own (the mean over the group's families).
GROUP_AVERAGES = {"unseen": "Unseen avg."}
DET_TICKS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)


def write_report(result: BenchResult, out: Path, command: str = "") -> list[Path]:
    """Write report.md, results.json and det*.png into ``out``; returns the files."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    plots = {}
    for group in [POOLED, *result.groups]:
        name = "det.png" if group == POOLED else f"det-{group}.png"
        plot_det(result.methods, group, out / name)
        plots[group] = name
        written.append(out / name)
    data = result.to_dict() | {"command": command, "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (out / "results.json").write_text(json.dumps(data, indent=1, allow_nan=True))
    (out / "report.md").write_text(markdown_report(result, command, plots))
    return [out / "report.md", out / "results.json", *written]


# --- Markdown -------------------------------------------------------------------


def markdown_report(result: BenchResult, command: str = "", plots: dict[str, str] | None = None) -> str:
    methods = result.methods
    paper_families = [f for g in PAPER_GROUPS for f in result.groups.get(g, [])]
    other_groups = [g for g in result.groups if g not in PAPER_GROUPS]
    n_cases = len(result.config["cases"])
    lines = [
        "# Robust hashing benchmark",
        "",
        f"{len(result.images)} images, {n_cases} attacked copies of each ({_group_summary(result)}), "
        f"{len(methods)} methods. Threshold τ at {result.config['fpr']:.0%} false positives between distinct "
        f"originals; seed {result.config['seed']}. Definitions: docs/protocol.md.",
        "",
        f"Run: {result.seconds:.0f} s wall on {result.config['workers']} worker process(es), "
        f"{platform.machine()}; {result.computed} hashes computed, {result.cached} from the cache.",
    ]
    if command:
        lines += ["", "Regenerate with:", "", "```sh", command, "```"]
    header = ["", *[f"{m.method}" for m in methods]]

    lines += ["", "## Discrimination: NHD between distinct images (CMAA Table 3)", ""]
    lines += _table(header, [
        ("τ ↑ (NHD at the FPR)", [m.tau for m in methods], max, "{:.4f}"),
        ("τ in bits", [m.tau_bits for m in methods], None, "{:g}"),
        ("μ ↑", [m.mu for m in methods], max, "{:.4f}"),
        ("σ ↓", [m.sigma for m in methods], min, "{:.4f}"),
        ("hash bits", [m.bits for m in methods], None, "{:d}"),
    ])

    sections = [
        ("Robustness: NHD_r, original vs attacked copy, ↓ (CMAA Tables 4–5)", "nhd_r", min),
        ("Content identification: F1 at τ ↑ (CMAA Tables 6–7)", "f1", max),
        ("Rank-1 identification among all originals ↑", "rank1", max),
    ]
    for title, key, best in sections:
        lines += ["", f"## {title}", ""]
        if paper_families:
            lines += _table(["Attack", *header[1:]], _family_rows(methods, key, paper_families, best, "Avg."))
        for group in other_groups:
            lines += ["", f"*{_GROUP_TITLES.get(group, group)}*", ""]
            lines += _table(["Attack", *header[1:]],
                            _family_rows(methods, key, result.groups[group], best, GROUP_AVERAGES.get(group)))

    lines += ["", "## Detection error trade-off", ""]
    lines += ["False negative rate against false positive rate over all thresholds, all attacked copies "
              "against all other originals (normal-deviate axes)."]
    for group, name in (plots or {}).items():
        lines += ["", f"![DET curves, {_GROUP_TITLES.get(group, group)}]({name})"]

    lines += ["", "## Time", ""]
    lines += _table(header, [("hash, ms per image ↓", [m.ms_per_image for m in methods], min, "{:.2f}")])
    lines += ["", "Hashing an in-memory RGB image (decoding not included) on one core, measured when the "
              "hash was computed. Making the attacked copies, ms per copy, for the copies made in this run:"]
    if result.attack_ms:
        lines += [""] + _table(["Attack", "ms"], [(f, [v], None, "{:.1f}") for f, v in result.attack_ms.items()])
    if result.skipped:
        lines += ["", "## Skipped inputs", ""] + [f"- `{path}`: {why}" for path, why in result.skipped.items()]
    return "\n".join(lines) + "\n"


_GROUP_TITLES = {
    POOLED: "all attacks",
    "table1": "CMAA Table 1 (single attacks)",
    "table2": "CMAA Table 2 (hybrid attacks)",
    "strong": "strong attack: five rounds of a random Table 1 attack with probability ½",
    "crop": "crops",
    "pad": "padding and borders",
    "unseen": "unseen suite (never used in training or model selection; docs/attacks.md)",
    "custom": "attacks given as specs",
}


def _group_summary(result: BenchResult) -> str:
    counts: dict[str, int] = {}
    for case in result.config["cases"]:
        counts[case["group"]] = counts.get(case["group"], 0) + 1
    return ", ".join(f"{n} {_GROUP_TITLES.get(g, g).split(' (')[0]}" for g, n in counts.items())


Row = tuple[str, Sequence[float], Callable | None, str]


def _family_rows(methods: list[MethodResult], key: str, families: Sequence[str], best, average: str | None) -> list[Row]:
    means = [m.family_means(key) for m in methods]
    rows: list[Row] = [(f, [mm.get(f, math.nan) for mm in means], best, "{:.4f}") for f in families]
    if average:
        rows.append((f"**{average}**", [m.average(key, families) for m in methods], best, "{:.4f}"))
    return rows


def _table(header: Sequence[str], rows: list[Row]) -> list[str]:
    """A Markdown table; the best value of each row (if ``best`` is given) in bold."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    for label, values, best, fmt in rows:
        finite = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
        target = best(finite) if best and finite else None
        cells = []
        for v in values:
            text = "–" if isinstance(v, float) and math.isnan(v) else fmt.format(v)
            cells.append(f"**{text}**" if target is not None and v == target and len(values) > 1 else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


# --- DET plot ---------------------------------------------------------------------


def plot_det(methods: list[MethodResult], group: str, path: Path) -> None:
    """DET curves of every method for one group of attacks, normal-deviate axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    low, high = DET_TICKS[0] / 2, DET_TICKS[-1]
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=110)
    for m in methods:
        if group not in m.det:
            continue
        fpr, fnr = np.asarray(m.det[group]["fpr"]), np.asarray(m.det[group]["fnr"])
        # Points beyond the plotted range are left out, not pinned to its edge (that
        # would draw a false vertical line); rates below it sit on the axis.
        inside = (fpr <= high) & (fnr <= high)
        fpr, fnr = np.maximum(fpr[inside], low), np.maximum(fnr[inside], low)
        ax.plot(norm.ppf(fpr), norm.ppf(fnr), label=m.method, linewidth=1.6)
    ax.axvline(norm.ppf(0.01), color="grey", linewidth=0.8, linestyle=":")  # where the protocol sets τ
    ticks = norm.ppf(DET_TICKS)
    labels = [f"{t * 100:g}" for t in DET_TICKS]
    ax.set_xticks(ticks, labels)
    ax.set_yticks(ticks, labels)
    ax.set_xlim(norm.ppf(low), norm.ppf(high))
    ax.set_ylim(norm.ppf(low), norm.ppf(high))
    ax.set_xlabel("false positive rate (%)")
    ax.set_ylabel("false negative rate (%)")
    ax.set_title(f"DET, {_GROUP_TITLES.get(group, group)}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
