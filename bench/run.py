"""``make bench``: every benchmark, side by side in one run, into a results table and a plot.

    .venv/bin/python bench/run.py [--runs 3] [--seconds 10] [--only poll db_load ...] [--out bench/results]
    .venv/bin/python bench/run.py --smoke --out /tmp/x     one short iteration of each (CI runs this)

Writes ``results.md`` (the machine, versions, date, a summary of the targets, then each benchmark's
tables) and ``results.png`` (one bar chart per measured quantity). Numbers are reported, never asserted:
the exit status is non-zero only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
import time
import traceback
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: write files only
import matplotlib.pyplot as plt
from benchkit import ROOT, Chart, Options, Section, machine, table

# In the order they run: the load benchmarks first, on a machine that nothing else is loading yet.
BENCHMARKS = ["poll", "batch", "db_load", "worker_cost", "spreadsheet", "client_requests", "video", "ocr"]


def run_all(names: list[str], options: Options) -> tuple[list[Section], bool]:
    """Run each benchmark; one that fails becomes a section saying so, and the run goes on."""
    sections: list[Section] = []
    ok = True
    for name in names:
        started = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            section = importlib.import_module(name).run(options)
        except Exception:
            ok = False
            trace = traceback.format_exc()
            print(trace, file=sys.stderr)
            section = Section(f"{name} (did not run)", f"```\n{trace[-2000:]}\n```")
        section.markdown += f"\n\n_Ran in {time.monotonic() - started:.0f} s._"
        sections.append(section)
    return sections, ok


def write_markdown(sections: list[Section], options: Options, command: str) -> str:
    """The results page."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# jobpulse benchmarks",
        f"Measured {now} with `{command}`"
        + (" (smoke: one short iteration, not a measurement)." if options.smoke else "."),
        f"Machine: {machine()}.",
        f"Medians of {options.runs} run(s); load runs last {options.seconds} s each after a warm-up. "
        "The machine is a shared 2-core VM: ratios measured side by side in one run carry over better than "
        "absolute numbers.",
        "![results](results.png)",
        "## Targets",
    ]
    rows = [
        [target.name, "met" if target.met else "**missed**", target.detail]
        for section in sections
        for target in section.targets
    ]
    parts.append(table(["target", "", "measured"], rows) if rows else "(none)")
    for section in sections:
        parts += [f"## {section.title}", section.markdown]
    return "\n\n".join(parts) + "\n"


def write_plot(charts: list[Chart], path: Path) -> None:
    """One horizontal bar chart per measured quantity, stacked in one PNG."""
    charts = [chart for chart in charts if chart.bars]
    figure, _ = plt.subplots(len(charts) or 1, 1, figsize=(9, 2.2 + 0.9 * sum(len(c.bars) for c in charts)))
    for axis, chart in zip(figure.axes, charts, strict=False):
        labels = list(chart.bars)
        values = [chart.bars[label] for label in labels]
        bars = axis.barh(labels, values, color="#3b82f6")
        axis.bar_label(
            bars,
            labels=[f"{value:,.0f}" if value >= 100 else f"{value:.3g}" for value in values],
            padding=3,
            fontsize=8,
        )
        axis.invert_yaxis()
        axis.set_title(chart.title, fontsize=10, loc="left")
        axis.set_xlabel(chart.unit, fontsize=8)
        axis.tick_params(labelsize=8)
        axis.margins(x=0.15)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS)
    parser.add_argument("--smoke", action="store_true", help="one short iteration of each benchmark")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    options = Options.for_smoke() if args.smoke else Options(runs=args.runs, seconds=args.seconds)
    sections, ok = run_all(args.only, options)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    markdown = write_markdown(sections, options, command.strip())
    (args.out / "results.md").write_text(markdown)
    write_plot([chart for section in sections for chart in section.charts], args.out / "results.png")
    print(markdown)
    print(f"wrote {args.out / 'results.md'} and {args.out / 'results.png'}", file=sys.stderr)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
