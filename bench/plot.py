"""The fan-out's p99 against subscribers, one line per target, as a PNG.

matplotlib comes with the ``bench`` extra; without it the plot is skipped with a
message and the rest of the run stands. The Agg backend draws without a display.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Drawn in this order, with these labels, so every plot reads the same way.
LINES = (
    ("feed", "feed (SQLite)"),
    ("feed-pg", "feed (PostgreSQL)"),
    ("feed-pg-2w", "feed (PostgreSQL, 2 workers)"),
    ("nchan", "Nchan (nginx, C)"),
    ("baseline", "naive baseline"),
)


def p99(sizes: list[dict[str, Any]], path: Path, title: str = "") -> bool:
    """Draw p99 latency against subscribers from the fan-out's sizes; False if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        print("plot: matplotlib is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return False
    points: dict[str, list[tuple[int, float]]] = {}
    for size in sizes:
        for row in size["results"]:
            points.setdefault(row["target"], []).append((row["subscribers"], row["p99_ms"]))
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for target, label in LINES:
        if target in points:
            xs, ys = zip(*sorted(points[target]), strict=True)
            ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("subscribers")
    # Logarithmic: the baseline is ten times slower, and feed and Nchan would sit flat
    # on the axis on a linear scale.
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel("p99 latency, ms (log scale)")
    ax.set_title(title or "Fan-out: p99 from POST to every subscriber")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def main() -> None:
    """``python -m bench.plot RESULTS.json OUT.png``: redraw from a fan-out's JSON."""
    import json

    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    document = json.loads(source.read_text())
    title = f"Fan-out p99, commit {document.get('commit', '?')}"
    sys.exit(0 if p99(document["sizes"], out, title) else 1)


if __name__ == "__main__":
    main()
