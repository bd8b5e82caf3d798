"""Summary plots (matplotlib, Agg backend, imported only here): resources as % of the part; latency vs LUTs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..util import save_figure

_RES = ("LUT", "FF", "DSP", "BRAM_18K")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on build machines
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=120, bbox_inches="tight")


def make_plots(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write resources_pct.png and latency_vs_lut.png (when there are numbers to plot); return their paths."""
    rows = summary["models"]
    vendor = [(r["model"], r["vendor"]["hls"]) for r in rows if r["vendor"] and r["vendor"]["hls"]]
    rtl = [(r["model"], r["open_rtl"]) for r in rows if r["open_rtl"]]
    written: list[Path] = []
    if not vendor and not rtl:
        return written
    plt = _pyplot()

    if vendor:
        import numpy as np

        fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(vendor) + 2), 4))
        x = np.arange(len(vendor))
        w = 0.8 / len(_RES)
        for i, k in enumerate(_RES):
            vals = [h["utilization_pct"].get(k) for _, h in vendor]
            ax.bar(x + (i - (len(_RES) - 1) / 2) * w, [v if v is not None else 0 for v in vals], w, label=k)
        ax.axhline(100, color="red", lw=1, ls="--", label="100% of part")
        ax.set_xticks(x, [f"{m}\n{h['part'] or ''}" for m, h in vendor], fontsize=8)
        ax.set_ylabel("% of the part (HLS estimate)")
        ax.set_title("Resources as % of the part (vendor C-synthesis reports)")
        ax.legend(fontsize=8)
        written.append(_save(fig, out_dir / "resources_pct.png"))

    pts_v = [(m, h["resources"].get("LUT"), h["latency_worst_cycles"]) for m, h in vendor]
    pts_v = [p for p in pts_v if p[1] is not None and p[2] is not None]
    pts_r = [(m, (o.get("resources") or {}).get("LUT"), o.get("latency_cycles")) for m, o in rtl]
    pts_r = [p for p in pts_r if p[1] is not None and p[2] is not None]
    if pts_v or pts_r:
        fig, ax = plt.subplots(figsize=(6, 4))
        if pts_v:
            ax.scatter([p[1] for p in pts_v], [p[2] for p in pts_v], marker="o", label="Vitis/Vivado HLS estimate")
        if pts_r:
            # a different marker and an explicit label: open-flow numbers are not Vivado numbers
            tools = sorted({str(o.get("synthesizer") or "open flow") for _, o in rtl})
            ax.scatter(
                [p[1] for p in pts_r],
                [p[2] for p in pts_r],
                marker="^",
                facecolors="none",
                edgecolors="C1",
                label=f"open RTL ({', '.join(tools)}), not Vivado",
            )
        for m, lut, lat in pts_v + pts_r:
            ax.annotate(m, (lut, lat), fontsize=7, xytext=(3, 3), textcoords="offset points")
        luts = [p[1] for p in pts_v + pts_r if p[1] > 0]
        if luts and max(luts) / min(luts) > 50:
            ax.set_xscale("log")  # designs often differ by orders of magnitude
        ax.set_xlabel("LUTs")
        ax.set_ylabel("latency (cycles, worst case)")
        ax.set_title("Latency vs LUTs")
        ax.legend(fontsize=8)
        written.append(_save(fig, out_dir / "latency_vs_lut.png"))
    return written
