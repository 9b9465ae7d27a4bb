"""PNG plots of experiment results (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import io

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg canvas on savefig

    return Figure(figsize=(width, height), dpi=120)


def _png(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def row_uar_png(rows: list[dict], title: str = "") -> bytes:
    """Horizontal bars of each row's mean test UAR (%) with ± std error bars, the paper's UAR as a
    red diamond where it has one. ``rows``: ``experiment.summarize``'s rows."""
    rows = [r for r in rows if r["uar"] is not None]
    fig = _figure(7.5, 1.2 + 0.45 * max(1, len(rows)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    means = [100 * r["uar"]["mean"] for r in rows]
    stds = [100 * r["uar"]["std"] for r in rows]
    ax.barh(y, means, xerr=stds, color="#4c72b0", capsize=3, height=0.6)
    for yi, m, r in zip(y, means, rows, strict=True):
        ax.text(1, yi, f"{m:.1f} (n={r['n_runs']})", va="center", color="white", fontsize=8)
    papers = [(yi, 100 * r["paper_uar"]) for yi, r in zip(y, rows, strict=True) if r["paper_uar"]]
    if papers:
        ax.scatter([p for _, p in papers], [yi for yi, _ in papers], marker="D", color="#c44e52",
                   zorder=3, label="paper")  # fmt: skip
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=8)
    ax.set_xlabel("test UAR % (mean ± std over folds x seeds)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title)
    return _png(fig)


def fold_uar_png(rows: list[dict], runs: list[dict], folds: list[int], title: str = "") -> bytes:
    """Test UAR (%) per fold (mean over seeds), one line per row."""
    fig = _figure(7.5, 4.0)
    ax = fig.add_subplot()
    x = np.arange(len(folds))
    for r in rows:
        values = []
        for fold in folds:
            uar = [run["uar"] for run in runs if run["slug"] == r["slug"] and run["fold"] == fold]
            values.append(100 * np.mean(uar) if uar else np.nan)
        if not np.all(np.isnan(values)):
            ax.plot(x, values, marker="o", label=r["name"])
    ax.set_xticks(x, [f"fold {f}" for f in folds])
    ax.set_ylabel("test UAR %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title)
    return _png(fig)


def corpus_bars_png(
    uar: dict[str, dict[str, float]], chance: dict[str, float], title: str = ""
) -> bytes:
    """Grouped bars of UAR (%) per corpus, one bar per model, with each corpus's chance level as
    a dashed line. ``uar``: {model: {corpus: UAR in [0, 1]}}; ``chance``: {corpus: 1 / classes}."""
    corpora = list(chance)
    models = list(uar)
    fig = _figure(max(4.5, 1.2 + 1.1 * len(corpora) * max(1, len(models)) ** 0.5), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    x = np.arange(len(corpora))
    for i, model in enumerate(models):
        values = [100 * uar[model].get(c, np.nan) for c in corpora]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=model)
        for bar, value in zip(bars, values, strict=True):
            if np.isfinite(value):
                ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.0f}",
                        ha="center", fontsize=7)  # fmt: skip
    for xi, corpus in zip(x, corpora, strict=True):
        level = 100 * chance[corpus]
        ax.plot([xi - 0.45, xi + 0.45], [level, level], "k--", linewidth=1)
    ax.plot([], [], "k--", linewidth=1, label="chance")
    ax.set_xticks(x, corpora)
    ax.set_ylabel("UAR %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    return _png(fig)
