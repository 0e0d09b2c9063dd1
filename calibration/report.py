"""One-page calibration report (PNG or PDF) and the plots the wizard shows, with matplotlib.

Every plot is a function ``plot_<part>(ax..., part)`` drawing into given axes, so the wizard
embeds the same figure that the report prints. :func:`write_report` lays them out on one page
with a summary table; :func:`summary_lines` is the text version (also printed by the command).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from calibration.model import (
    Calibration,
    DarkResult,
    DmdMapping,
    FlatResult,
    GeometryResult,
    PtcResult,
    ShutterTiming,
)

#: The code shown against its effective version in the report (the seed project's code).
REPORT_CODE = (1, 1, 1, 0, 0, 1, 0, 1)


def _figure(**kw: Any):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(**kw)


def summary_lines(cal: Calibration, truth: dict[str, float] | None = None) -> list[str]:
    """What was measured, a line per quantity (with the truth beside it, for a simulated rig)."""
    t = truth or {}

    def row(name: str, value: float, fmt: str, unit: str, key: str = "", scale: float = 1.0):
        text = f"{name:<28s} {format(value * scale, fmt):>10s} {unit}"
        if key in t:
            text += f"   (true {format(t[key] * scale, fmt)})"
        return text

    a = cal.applies_to
    out = [
        f"calibration {cal.uuid}",
        f"created {cal.created}; rig: {', '.join(f'{k}={v}' for k, v in cal.rig.items()) or '-'}",
        f"applies to: exposure {a.exposure_us:g} us, gain {a.gain_db:g} dB, {a.pixel_format}, "
        f"ROI {a.roi[2]}x{a.roi[3]}+{a.roi[0]}+{a.roi[1]}",
    ]
    if cal.dark is not None:
        d = cal.dark
        out += [
            row("dark temporal noise", d.temporal_noise_dn, ".3f", "DN"),
            row("DSNU", d.dsnu_dn, ".3f", "DN", "dsnu_dn"),
            row("hot pixels", float(d.hot_pixels.sum()), ".0f", "", "hot_pixels"),
        ]
    if cal.flat is not None:
        f = cal.flat
        out += [
            row("PRNU", f.prnu, ".2f", "%", "prnu", 100.0),
            row("corner / centre response", float(f.vignetting[-1] / f.vignetting[0]), ".3f", ""),
        ]
    if cal.photon_transfer is not None:
        p = cal.photon_transfer
        out += [
            row("system gain", p.gain_e_per_dn, ".3f", "e-/DN", "gain_e_per_dn"),
            row("read noise", p.read_noise_e, ".2f", "e-", "read_noise_e"),
            row("saturation capacity", p.full_well_e, ".0f", "e-"),
            row("linearity error", p.linearity_error_pct, ".2f", "%"),
        ]
    if cal.shutter_timing is not None:
        s = cal.shutter_timing
        out += [
            row("shutter latency (open)", s.latency_us, ".1f", "us", "latency_us"),
            row("shutter rise 10-90 %", s.rise_us, ".1f", "us", "rise_us"),
            row("shutter latency (close)", s.close_latency_us, ".1f", "us", "close_latency_us"),
            row("shutter fall 90-10 %", s.fall_us, ".1f", "us", "fall_us"),
            row("shutter leakage", s.leakage, ".2f", "%", "leakage", 100.0),
        ]
        if np.isfinite(s.fit_residual_rms):
            out.append(row("shutter fit residual (rms)", s.fit_residual_rms, ".3f",
                           f"(noise explains {s.fit_noise_rms:.3f})"))
        for c, m, pr in zip(s.check_codes, s.check_measured, s.check_predicted, strict=False):
            out.append(f"{'check ' + c:<28s} {m:10.3f} chips open (model {pr:.3f})")
    if cal.geometry is not None:
        g = cal.geometry
        k = g.camera_matrix
        out += [
            row("focal length fx", float(k[0, 0]), ".1f", "px", "fx"),
            row("focal length fy", float(k[1, 1]), ".1f", "px", "fy"),
            f"{'principal point':<28s} {k[0, 2]:10.1f} {k[1, 2]:.1f} px",
            row("distortion k1", float(g.dist[0]), ".4f", "", "k1"),
            row("reprojection error (rms)", g.rms_px, ".3f", "px"),
            f"{'views used':<28s} {len(g.per_view_rms_px):10d}",
        ]
    if cal.dmd_mapping is not None:
        m = cal.dmd_mapping
        out += [
            f"{'DMD -> camera':<28s} {m.model}, {m.n_dots} of {m.n_projected} dots",
            row("DMD mapping residual (rms)", m.rms_px, ".3f", "px"),
        ]
    return out


# -- plots ------------------------------------------------------------------------------------


def plot_dark(ax, d: DarkResult) -> None:
    frame = d.frames[-1]
    lo, hi = np.percentile(frame, [0.01, 99.99])
    ax.hist(frame.ravel(), bins=200, range=(lo, max(hi, lo + 1)), color="0.3", log=True)
    ax.set_title(f"dark {d.exposures_us[-1]:g} us: {int(d.hot_pixels.sum())} hot pixels")
    ax.set_xlabel("DN")
    ax.set_ylabel("pixels")


def plot_flat(ax, f: FlatResult) -> None:
    im = ax.imshow(f.flat, cmap="viridis", vmin=np.percentile(f.flat, 0.5),
                   vmax=np.percentile(f.flat, 99.5))
    ax.set_title(f"flat field (PRNU {100 * f.prnu:.2f} %)", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def plot_vignetting(ax, f: FlatResult) -> None:
    ax.plot(f.radius, f.vignetting / f.vignetting[0], "o-", ms=3)
    ax.set_title("vignetting", fontsize=9)
    ax.set_xlabel("radius (1 = corner)")
    ax.set_ylabel("relative response")
    ax.grid(alpha=0.3)


def plot_ptc(ax, p: PtcResult) -> None:
    fit = (p.mean_dn > 0) & (p.mean_dn < p.fit_max_dn)
    ax.loglog(p.mean_dn[p.mean_dn > 0], p.variance_dn2[p.mean_dn > 0], "o", ms=4, color="0.5",
              label="measured")
    ax.loglog(p.mean_dn[fit], p.variance_dn2[fit], "o", ms=4, color="C0", label="used for fit")
    m = np.geomspace(max(p.mean_dn[p.mean_dn > 0].min(), 1.0), p.mean_dn.max(), 100)
    ax.loglog(m, m / p.gain_e_per_dn + p.read_noise_dn**2, "-", color="C3",
              label=f"{p.gain_e_per_dn:.3f} e-/DN, read {p.read_noise_e:.2f} e-")
    ax.set_title("photon transfer")
    ax.set_xlabel("mean (DN above dark)")
    ax.set_ylabel("temporal variance (DN^2)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")


def plot_timing(ax, s: ShutterTiming) -> None:
    o = s.optics()
    ax.plot(s.rise_t_us, s.rise_transmittance, ".", ms=4, color="C0", label="opening (measured)")
    ax.plot(s.fall_t_us, s.fall_transmittance, ".", ms=4, color="C3", label="closing (measured)")
    t = np.linspace(min(s.rise_t_us.min(), 0), s.rise_t_us.max(), 400)
    c = s.chip_us
    model_r = o.transmittance(t + 2 * c, (0, 0, 1, 1, 1, 1, 0, 0), c)
    model_f = o.transmittance(t + 6 * c, (0, 0, 1, 1, 1, 1, 0, 0), c)
    ax.plot(t, model_r, "-", color="C0", lw=1, label="model")
    ax.plot(t, model_f, "-", color="C3", lw=1)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_title(f"shutter: latency {s.latency_us:.1f} us, rise {s.rise_us:.1f} us, "
                 f"leak {100 * s.leakage:.2f} %", fontsize=9)
    ax.set_xlabel("time after the command edge (us)")
    ax.set_ylabel("transmittance")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def plot_effective_code(ax, s: ShutterTiming, bits=REPORT_CODE, chip_us: float | None = None,
                        sub_steps: int = 8) -> None:
    chip = chip_us or (s.check_codes and float(s.check_codes[0].split("@")[1][:-2])) or 100.0
    eff = s.effective_code(bits, chip, sub_steps)
    t = (np.arange(len(eff)) + 0.5) / sub_steps
    ax.step(np.arange(len(bits) + 1), list(bits) + [bits[-1]], where="post", color="0.4",
            label="nominal")
    ax.plot(t, eff, "-", color="C2", label="effective (measured)")
    ax.set_title(f"code {''.join(map(str, bits))} at {chip:g} us chips", fontsize=9)
    ax.set_xlabel("chip")
    ax.set_ylabel("transmittance")
    ax.set_ylim(-0.05, 1.1)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def plot_geometry(ax, g: GeometryResult) -> None:
    w, h = g.image_size
    for i, c in enumerate(g.corners):
        ax.plot(c[:, 0], c[:, 1], ".", ms=2, color=f"C{i % 10}")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_title(f"checkerboard corners, {len(g.corners)} views, rms {g.rms_px:.3f} px",
                 fontsize=9)


def plot_dmd_mapping(ax, m: DmdMapping) -> None:
    ax.plot(m.camera_points[:, 0], m.camera_points[:, 1], "o", ms=3, label="dots found")
    proj = m.to_camera(m.dmd_points)
    ax.plot(proj[:, 0], proj[:, 1], "+", ms=6, color="C3", label="mapping")
    corners = m.to_camera(np.array([[0, 0], [m.dmd_shape[1], 0],
                                    [m.dmd_shape[1], m.dmd_shape[0]], [0, m.dmd_shape[0]],
                                    [0, 0]], float))
    ax.plot(corners[:, 0], corners[:, 1], "-", color="0.5", lw=1, label="DMD outline")
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_title(f"DMD -> camera ({m.model}), rms {m.rms_px:.3f} px", fontsize=9)
    ax.legend(fontsize=7)


def write_report(cal: Calibration, path: str | Path, truth: dict[str, float] | None = None
                 ) -> Path:
    """Write the one-page report (PNG or PDF, by the extension)."""
    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf"):
        raise ValueError(f"The report is a .png or .pdf file; got {path.name}.")
    fig = _figure(figsize=(11.7, 8.3), dpi=110)
    gs = fig.add_gridspec(3, 4, hspace=0.55, wspace=0.45)
    panels: list[tuple[Any, Any]] = []
    if cal.dark is not None:
        panels.append((plot_dark, cal.dark))
    if cal.flat is not None:
        panels.append((plot_flat, cal.flat))
        panels.append((plot_vignetting, cal.flat))
    if cal.photon_transfer is not None:
        panels.append((plot_ptc, cal.photon_transfer))
    if cal.shutter_timing is not None:
        panels.append((plot_timing, cal.shutter_timing))
        panels.append((plot_effective_code, cal.shutter_timing))
    if cal.geometry is not None:
        panels.append((plot_geometry, cal.geometry))
    if cal.dmd_mapping is not None:
        panels.append((plot_dmd_mapping, cal.dmd_mapping))
    slots = [gs[r, c] for r in range(3) for c in range(2, 4)] + [gs[2, 0], gs[2, 1]]
    for (fn, part), slot in zip(panels, slots, strict=False):
        fn(fig.add_subplot(slot), part)
    ax = fig.add_subplot(gs[0:2, 0:2])
    ax.axis("off")
    ax.text(0, 1, "\n".join(summary_lines(cal, truth)), va="top", family="monospace",
            fontsize=6.8)
    fig.suptitle("blurvid-rig calibration report", fontsize=13)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path

