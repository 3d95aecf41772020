"""Report figures (matplotlib, Agg backend): one function per figure, each returns a Figure or None.

None means no evaluated method provides the quantity, so the figure would be empty.
Every axis is labelled with its unit; bins with too few events are drawn hollow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from nurec.evaluate import metrics as m  # noqa: E402
from nurec.evaluate.quality import CLASSES, MethodResult  # noqa: E402

DPI = 100
ENERGY_LABEL = {"energy": "true neutrino energy [GeV]", "visible_energy": "true visible energy [GeV]"}


def method_colors(names: Sequence[str]) -> dict[str, tuple]:
    """Return a fixed colour per method name, in the given order (tab10 cycle)."""
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def figure_png(fig: Figure) -> bytes:
    """Return the figure as PNG bytes (no timestamps, so equal figures give equal bytes) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _energy_label(results: Sequence[MethodResult]) -> str:
    reference = results[0].metrics["energy"].get("reference", "energy") if results else "energy"
    return ENERGY_LABEL.get(reference, "true energy [GeV]")


def _binned_curve(ax, table: list[dict], y: str, color, label: str, band: tuple[str, str] | None = None,
                  err: tuple[str, str] | None = None) -> None:
    frame = pd.DataFrame(table)
    if frame.empty:
        return
    frame = frame[frame["n"] > 0]
    if frame.empty:
        return
    centre = np.sqrt(frame["e_low_gev"] * frame["e_high_gev"]).to_numpy()
    values = frame[y].to_numpy(float)
    if band:
        ax.fill_between(centre, frame[band[0]], frame[band[1]], color=color, alpha=0.1, linewidth=0)
    ax.plot(centre, values, "-", color=color, label=label)
    yerr = None
    if err:
        yerr = np.abs(np.vstack([values - frame[err[0]].to_numpy(float), frame[err[1]].to_numpy(float) - values]))
    low = frame["low_stats"].to_numpy(bool)
    for selection, face in ((~low, color), (low, "none")):
        if selection.any():
            ax.errorbar(centre[selection], values[selection],
                        yerr=None if yerr is None else yerr[:, selection],
                        fmt="o", color=color, markerfacecolor=face, markersize=5, capsize=2)


def _log_energy_axis(ax, table: list[dict] | None = None) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    if table:
        ax.set_xlim(min(row["e_low_gev"] for row in table), max(row["e_high_gev"] for row in table))


def _finish_legend(fig: Figure, axes, note: str) -> int:
    """Put one legend for all axes above them and a note below; return its number of rows."""
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ncol = min(len(labels), 5) or 1
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=ncol, frameon=False, fontsize=9)
    fig.text(0.01, 0.01, note, fontsize=7, color="0.35")
    return -(-len(labels) // ncol)


def _top(fig: Figure, rows: int) -> float:
    """Return the top of the axes leaving room for panel titles and ``rows`` legend rows (0.3 inch each)."""
    return 1.0 - (0.4 + 0.3 * max(rows, 1)) / fig.get_figheight()


def plot_angular_error_vs_energy(results: Sequence[MethodResult]) -> Figure | None:
    """Return median angular error (line, bootstrap CI bars) and 68% band vs energy, tracks and cascades."""
    shown = [r for r in results if r.metrics["direction"]["estimated"]]
    if not shown:
        return None
    colors = method_colors([r.name for r in results])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    for ax, cls in zip(axes, CLASSES, strict=True):
        for r in shown:
            _binned_curve(ax, r.metrics["direction"][f"{cls}_vs_energy"], "median", colors[r.name], r.name,
                          band=("q16", "q84"), err=("median_ci_low", "median_ci_high"))
        _log_energy_axis(ax, shown[0].metrics["direction"][f"{cls}_vs_energy"])
        medians = [row["median"] for r in shown for row in r.metrics["direction"][f"{cls}_vs_energy"]]
        if any(np.isfinite(v) and v > 0 for v in medians):
            ax.set_yscale("log")
        ax.set_xlabel(_energy_label(results))
        ax.set_title(f"{cls}s")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("angular error [deg]")
    rows = _finish_legend(fig, axes, "line: median (bars: 68% bootstrap CI); band: 16-84% quantiles; "
                          "hollow: bin with few events")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=_top(fig, rows), wspace=0.06)
    return fig


def plot_direction_residuals(results: Sequence[MethodResult]) -> Figure | None:
    """Return histograms of zenith and azimuth residuals (reco - true) [deg] per method."""
    shown = [r for r in results if r.metrics["direction"]["estimated"]]
    if not shown:
        return None
    colors = method_colors([r.name for r in results])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, column, title in zip(axes, ("zenith_residual_deg", "azimuth_residual_deg"), ("zenith", "azimuth"),
                                 strict=True):
        widths = [r.metrics["direction"][column]["half_width_68"] for r in shown]
        span = float(np.clip(4.0 * np.nanmax(widths) if np.isfinite(widths).any() else 180.0, 1.0, 180.0))
        bins = np.linspace(-span, span, 61)
        for r in shown:
            values = r.per_event[column].to_numpy(float)
            values = values[np.isfinite(values)]
            if len(values):
                ax.hist(np.clip(values, -span, span), bins=bins, histtype="step", color=colors[r.name],
                        weights=np.full(len(values), 1.0 / len(values)), label=r.name, linewidth=1.4)
        ax.set_xlabel(f"{title} residual, reco - true [deg]")
        ax.set_ylabel(f"fraction of events per {bins[1] - bins[0]:.2g} deg")
        ax.grid(True, alpha=0.3)
    rows = _finish_legend(fig, axes, "each method normalised to its own events (methods may run on subsamples); "
                   "values beyond the axis range are piled into the outermost bins")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=_top(fig, rows), wspace=0.2)
    return fig


def plot_energy_resolution(results: Sequence[MethodResult]) -> Figure | None:
    """Return log10(E_reco/E_true) resolution (half 16-84% width) and bias (median) vs energy, tracks and cascades."""
    shown = [r for r in results if r.metrics["energy"]["estimated"]]
    if not shown:
        return None
    colors = method_colors([r.name for r in results])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for col, cls in enumerate(CLASSES):
        for r in shown:
            table = r.metrics["energy"][f"{cls}_vs_energy"]
            _binned_curve(axes[0, col], table, "resolution_log10", colors[r.name], r.name)
            _binned_curve(axes[1, col], table, "bias_log10", colors[r.name], r.name,
                          err=("bias_ci_low", "bias_ci_high"))
        axes[0, col].set_title(f"{cls}s")
        axes[1, col].axhline(0.0, color="0.5", linewidth=0.8)
        axes[1, col].set_xlabel(_energy_label(results))
        for row in range(2):
            _log_energy_axis(axes[row, col], shown[0].metrics["energy"][f"{cls}_vs_energy"])
            axes[row, col].grid(True, which="both", alpha=0.3)
    axes[0, 0].set_ylabel("resolution of log10(E_reco/E_true) [dex]")
    axes[1, 0].set_ylabel("bias of log10(E_reco/E_true) [dex]")
    rows = _finish_legend(fig, axes.ravel(), "resolution: half the 16-84% width; bias: median (bars: 68% bootstrap CI); "
                   "hollow: bin with few events")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.1, top=_top(fig, rows), wspace=0.18, hspace=0.12)
    return fig


def plot_uncertainty_calibration(results: Sequence[MethodResult]) -> Figure | None:
    """Return observed vs nominal coverage of angular_uncertainty_deg and the pull histogram with Rayleigh(1)."""
    shown = [r for r in results if r.metrics["uncertainty"]["estimated"]]
    if not shown:
        return None
    colors = method_colors([r.name for r in results])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    axes[0].plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="calibrated")
    bins = np.linspace(0, 5, 41)
    for r in shown:
        curve = pd.DataFrame(r.metrics["uncertainty"]["coverage_curve"])
        axes[0].plot(curve["nominal"], curve["observed"], "o-", color=colors[r.name], markersize=3, label=r.name)
        pulls = r.per_event["pull"].to_numpy(float)
        pulls = pulls[np.isfinite(pulls)]
        axes[1].hist(np.clip(pulls, 0, bins[-1]), bins=bins, density=True, histtype="step",
                     color=colors[r.name], linewidth=1.4, label=r.name)
    x = np.linspace(0, bins[-1], 200)
    axes[1].plot(x, m.rayleigh_pdf(x), color="0.3", linestyle="--", linewidth=1, label="Rayleigh(1)")
    axes[0].axvline(m.CONTAINMENT, color="0.8", linewidth=0.8)
    axes[0].set_xlabel("nominal containment probability")
    axes[0].set_ylabel("observed fraction of events within radius")
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, 1)
    axes[1].set_xlabel("pull: angular error / sigma, sigma = r68 / 1.51 [1]")
    axes[1].set_ylabel("probability density [1/unit pull]")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    rows = _finish_legend(fig, axes, "radius for nominal p: r68 * sqrt(ln(1-p) / ln(0.32)) (2D Gaussian); "
                          "pulls > 5 piled into the last bin")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=_top(fig, rows), wspace=0.22)
    return fig


def plot_roc(results: Sequence[MethodResult]) -> Figure | None:
    """Return ROC curves of p_track for tracks (positive) vs cascades, AUC in the legend."""
    shown = [r for r in results if r.metrics["classification"]["estimated"]]
    if not shown:
        return None
    colors = method_colors([r.name for r in results])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="random (AUC 0.5)")
    for r in shown:
        fpr, tpr, auc = m.roc_auc(r.per_event["p_track"], r.per_event["is_track"])
        if len(fpr):
            ax.plot(fpr, tpr, color=colors[r.name], label=f"{r.name} (AUC {auc:.3f})")
    ax.set_xlabel("false-positive rate: cascades called tracks [fraction]")
    ax.set_ylabel("true-positive rate: tracks called tracks [fraction]")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.96)
    return fig


def plot_throughput(results: Sequence[MethodResult]) -> Figure | None:
    """Return a bar chart of events/s per core (events per CPU-second) per method, log scale."""
    values = [(r.name, r.throughput.get("events_per_s_per_core", np.nan)) for r in results]
    values = [(n, v) for n, v in values if v is not None and np.isfinite(v) and v > 0]
    if not values:
        return None
    colors = method_colors([r.name for r in results])
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(values) + 1.6))
    names = [n for n, _ in values]
    rates = [v for _, v in values]
    ax.barh(names, rates, color=[colors[n] for n in names])
    for y, rate in enumerate(rates):
        ax.text(rate, y, f" {rate:,.0f}" if rate >= 100 else f" {rate:.3g}", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(min(rates) / 3, max(rates) * 8)
    ax.invert_yaxis()
    ax.set_xlabel("throughput [events/s per core] (events per CPU-second)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    longest = max(len(n) for n in names)
    fig.subplots_adjust(left=min(0.45, 0.05 + 0.013 * longest), right=0.97,
                        bottom=0.3 if len(values) < 3 else 0.16, top=0.95)
    return fig


BREAKDOWN_TITLES = {"vs_zenith": "cos(true zenith)", "vs_hit_sensors": "hit sensors", "vs_containment": "vertex"}


def _group_label(label: str) -> str:
    """Return a short axis label of an event group ("cos θ -1.0 to -0.5 (up-going)" -> "-1.0..-0.5 / (up-going)")."""
    return label.removeprefix("cos θ ").replace(" to ", "..").replace(" (", "\n(").replace(" / ", "/\n")


def _plain_log_axis(ax) -> None:
    """Label a log y axis with plain numbers (minor ticks too when it spans little)."""
    from matplotlib.ticker import LogFormatter

    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.6)))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def plot_direction_vs_event_properties(results: Sequence[MethodResult]) -> Figure | None:
    """Return median angular error (bars: bootstrap CI) per zenith band, number of hit sensors and containment."""
    shown = [r for r in results if r.metrics["direction"]["estimated"]]
    keys = [k for k in BREAKDOWN_TITLES if shown and k in shown[0].metrics["direction"]]
    if not shown or not keys:
        return None
    colors = method_colors([r.name for r in results])
    fig, axes = plt.subplots(2, len(keys), figsize=(4.2 * len(keys) + 1, 7.6), squeeze=False)
    offsets = np.linspace(-0.25, 0.25, len(shown)) if len(shown) > 1 else np.zeros(1)
    for col, key in enumerate(keys):
        for row, cls in enumerate(CLASSES):
            ax = axes[row, col]
            for offset, r in zip(offsets, shown, strict=True):
                frame = pd.DataFrame(r.metrics["direction"][key][cls])
                x = np.arange(len(frame)) + offset
                values = frame["median"].to_numpy(float)
                yerr = np.abs(np.vstack([values - frame["median_ci_low"].to_numpy(float),
                                         frame["median_ci_high"].to_numpy(float) - values]))
                low = frame["low_stats"].to_numpy(bool)
                for selection, face in ((~low, colors[r.name]), (low, "none")):
                    if selection.any():
                        ax.errorbar(x[selection], values[selection], yerr=yerr[:, selection], fmt="o",
                                    color=colors[r.name], markerfacecolor=face, markersize=5, capsize=2)
            labels = [_group_label(g) for g in pd.DataFrame(shown[0].metrics["direction"][key][cls])["group"]]
            ax.set_xticks(np.arange(len(labels)), labels, fontsize=7)
            ax.set_xlim(-0.6, len(labels) - 0.4)
            medians = [row_["median"] for r in shown for row_ in r.metrics["direction"][key][cls]]
            if any(np.isfinite(v) and v > 0 for v in medians):
                ax.set_yscale("log")
                _plain_log_axis(ax)
            ax.set_title(f"{cls}s vs {BREAKDOWN_TITLES[key]}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
        axes[0, col].tick_params(labelbottom=True)
    for row in range(2):
        axes[row, 0].set_ylabel("median angular error [deg]")
    handles = [Line2D([], [], marker="o", linestyle="none", color=colors[r.name], label=r.name) for r in shown]
    ncol = min(len(handles), 5)
    fig.legend(handles=handles, loc="upper center", ncol=ncol, frameon=False, fontsize=9)
    fig.text(0.01, 0.01, "bars: 68% bootstrap CI of the median; hollow: group with few events; "
             "cos θ < 0: up-going (through the Earth)", fontsize=7, color="0.35")
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=_top(fig, -(-len(handles) // ncol)),
                        wspace=0.25, hspace=0.55)
    return fig


def plot_energy_migration(results: Sequence[MethodResult]) -> Figure | None:
    """Return the energy migration matrix per method: P(reconstructed bin | true bin), log colour scale."""
    from matplotlib.colors import LogNorm

    shown = [r for r in results if r.metrics["energy"]["estimated"]]
    if not shown:
        return None
    n_cols = min(len(shown), 3)
    n_rows = -(-len(shown) // n_cols)
    width_in, height_in = 4.2 * n_cols + 1.4, 3.9 * n_rows + 0.6
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width_in, height_in), squeeze=False)
    right = 1.0 - 1.3 / width_in  # room for the colour bar
    fig.subplots_adjust(left=0.8 / width_in, right=right, bottom=0.6 / height_in, top=1.0 - 0.6 / height_in,
                        wspace=0.35, hspace=0.4)
    norm = LogNorm(vmin=1e-2, vmax=1.0)
    image = None
    for ax, r in zip(axes.ravel(), shown, strict=False):
        migration = r.metrics["energy"]["migration"]
        counts = np.asarray(migration["counts"], float)
        per_true = counts.sum(axis=0) + np.asarray(migration["reco_below"]) + np.asarray(migration["reco_above"])
        with np.errstate(divide="ignore", invalid="ignore"):
            probability = np.where(per_true > 0, counts / per_true, np.nan)
        image = ax.pcolormesh(migration["true_edges_gev"], migration["reco_edges_gev"],
                              np.ma.masked_where(~(probability > 0), probability), norm=norm, cmap="viridis")
        ax.plot(migration["true_edges_gev"], migration["true_edges_gev"], color="w", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{r.name} (n={migration['n']})", fontsize=10)
        ax.set_xlabel(_energy_label(results))
        ax.set_ylabel("reconstructed energy [GeV]")
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    bar = fig.add_axes((right + 0.25 / width_in, 0.6 / height_in, 0.15 / width_in, 1.0 - 1.2 / height_in))
    fig.colorbar(image, cax=bar, label="fraction of the true bin's events [1]")
    fig.suptitle("each column: where a true-energy bin's events are reconstructed (with those outside the axis, "
                 "it sums to 1); dashed: E_reco = E_true", fontsize=8, color="0.35")
    return fig


EFFECTIVE_AREA_FIGURE = "effective_area"
FLAVOUR_SYMBOLS = {"nu_e": "νe", "nu_mu": "νμ", "nu_tau": "ντ"}


def plot_effective_area(areas: dict) -> Figure | None:
    """Return the effective area [m²] vs true energy per flavour, at trigger level and after each method's cuts."""
    if not areas.get("available"):
        return None
    rows = pd.DataFrame(areas["rows"])
    low, high = areas["energy_edges_gev"][0], areas["energy_edges_gev"][-1]
    rows = rows[(rows["cos_zenith_low"] == rows["cos_zenith_low"].min())
                & (rows["cos_zenith_high"] == rows["cos_zenith_high"].max())]  # the all-directions band
    flavours = list(dict.fromkeys(rows["flavour"]))
    selections = list(dict.fromkeys(rows["selection"]))
    colors = method_colors(selections[1:])
    fig, axes = plt.subplots(1, len(flavours), figsize=(4.2 * len(flavours) + 0.8, 3.8), squeeze=False)
    axes = axes[0]
    for ax, flavour in zip(axes, flavours, strict=True):
        for name in selections:
            table = rows[(rows["flavour"] == flavour) & (rows["selection"] == name)]
            if table.empty or not (table["area_m2"] > 0).any():
                continue
            edges = np.append(table["e_low_gev"].to_numpy(), table["e_high_gev"].to_numpy()[-1])
            is_trigger = name == "trigger"
            fraction = float(table["subsample_fraction"].iloc[0])
            label = name if fraction == 1.0 else f"{name} (scaled from {100 * fraction:.0f}% of events)"
            ax.stairs(table["area_m2"].to_numpy(), edges, color="black" if is_trigger else colors[name],
                      linewidth=2.0 if is_trigger else 1.2, linestyle="-" if is_trigger else "--", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_title(f"{FLAVOUR_SYMBOLS.get(flavour, flavour)} (ν and ν̄ averaged)", fontsize=10)
        ax.set_xlabel("true neutrino energy [GeV]")
    axes[0].set_ylabel("effective area [m²]")
    legend_rows = _finish_legend(fig, list(axes), f"{areas['generation']}; all generated directions; "
                                 "methods: events with fit_status ok")
    fig.tight_layout(rect=(0, 0.04, 1, _top(fig, legend_rows)))
    return fig


FIGURES = {
    "angular_error_vs_energy": ("Angular error vs energy", plot_angular_error_vs_energy),
    "direction_vs_event_properties": ("Angular error vs zenith, hit sensors and containment",
                                      plot_direction_vs_event_properties),
    "direction_residuals": ("Zenith and azimuth residuals", plot_direction_residuals),
    "energy_resolution": ("Energy resolution and bias", plot_energy_resolution),
    "energy_migration": ("Energy migration matrix", plot_energy_migration),
    "uncertainty_calibration": ("Calibration of the angular uncertainty", plot_uncertainty_calibration),
    "roc": ("Track/cascade classification", plot_roc),
    "throughput": ("Throughput", plot_throughput),
}
"""Report figures in display order: key -> (title, function)."""
