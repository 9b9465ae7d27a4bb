"""Per-fold gain of distilled rows over the supervised row, per corpus (RAVDESS test actors and
each eval manifest), from an experiment's run folders: docs/figures/pool_distillation.png.

    python docs/probes/gain_figure.py runs/ravdess_pool_distill base kind-fit-audio \
        -o docs/figures/pool_distillation.png [--names "+ pool" ...]

Arguments: the experiment folder, the supervised row's slug, the distilled rows' slugs (the
folder names under RUNS/runs/). Dots: folds; bars: the mean; whiskers: one standard deviation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def scores(run: Path) -> dict[str, float]:
    metrics = json.loads((run / "metrics.json").read_text())
    out = {"RAVDESS": 100 * metrics["test"]["uar"]}
    for corpus, m in (metrics.get("corpora") or {}).get("corpora", {}).items():
        out[corpus] = 100 * m["uar"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("supervised")
    parser.add_argument("rows", nargs="+")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--names", nargs="*", default=None, help="display names of the rows")
    args = parser.parse_args()
    runs = args.experiment / "runs"
    base = {p.name: scores(p) for p in sorted((runs / args.supervised).glob("fold-*"))
            if (p / "metrics.json").is_file()}  # fmt: skip
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    corpora = list(next(iter(base.values())))
    width = 0.8 / len(args.rows)
    for i, row in enumerate(args.rows):
        gains = {c: [] for c in corpora}
        for run in sorted((runs / row).glob("fold-*")):
            if run.name in base and (run / "metrics.json").is_file():
                for c, v in scores(run).items():
                    gains[c].append(v - base[run.name][c])
        x = np.arange(len(corpora)) - 0.4 + width * (i + 0.5)
        means = [np.mean(gains[c]) for c in corpora]
        sds = [np.std(gains[c], ddof=1) if len(gains[c]) > 1 else 0 for c in corpora]
        n = len(gains[corpora[0]])
        name = args.names[i] if args.names else row
        ax.bar(x, means, width, yerr=sds, capsize=3, alpha=0.6, label=f"{name} ({n} folds)")
        for xi, c in zip(x, corpora, strict=True):
            ax.plot([xi] * len(gains[c]), gains[c], "k.", markersize=4)
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(np.arange(len(corpora)), corpora)
    ax.set_ylabel(f"UAR gain over {args.supervised} (points)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output)
    print(args.output)


if __name__ == "__main__":
    main()
