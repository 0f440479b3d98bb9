"""The rate-accuracy benchmark's outputs: summary, JSON rows, table, plot and the README section.

Every figure of the summary is on the **test** split, for settings chosen on validation
(:mod:`benchmarks.rate_select`); each comes with its paired 95% bootstrap interval over frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks import rate_select as sel
from benchmarks.rate_select import ISO_POINTS

__all__ = ["GOALS", "summarize", "rows", "markdown", "plot", "update_readme", "MARK_BEGIN", "MARK_END"]

README = Path(__file__).resolve().parents[1] / "README.md"
MARK_BEGIN, MARK_END = "<!-- results:rate -->", "<!-- /results:rate -->"
DEFAULT_CODER = "arith"
DEFAULT_PROVIDERS = ("fused", "abn")  # candidates for the shipped default: no gradient graph

GOALS = {
    "best_bytes_vs_fair_jpeg_at_iso_accuracy": 0.10,
    "best_bytes_vs_fair_webp_at_iso_accuracy": 0.15,
    "best_bytes_vs_fair_avif_at_iso_accuracy": 0.15,
    "masked_bytes_vs_unmasked": 0.5,
    "map_vs_random_map_bytes": 0.8,
}


def _families(res: dict) -> dict[str, str]:
    return {m.setting.mode: m.setting.family for m in res["validation"]}


def _coder(mode: str) -> str:
    return mode.rsplit("/", 1)[1] if mode.count("/") == 3 else DEFAULT_CODER


def _cheapest(res: dict, modes) -> str | None:
    """Of ``modes``, the one whose selected setting is cheapest **on validation** (None: none)."""
    cands = [m for m in modes if res["selected"].get(m) is not None]
    return min(cands, key=lambda m: res["selected"][m].mean_bytes) if cands else None


def _ratio(res: dict, a: str | None, b: str, why_none: str) -> dict:
    """Test bytes of mode ``a``'s selected setting over mode ``b``'s, with a paired interval."""
    if a is None or res["selected"].get(b) is None or res["selected"].get(a) is None:
        missing = b if a is not None and res["selected"].get(a) is not None else (a or "the edge")
        return {"ratio": None, "ci": None, "why": f"{missing}: {why_none}"}
    ta, tb = res["test"][a], res["test"][b]
    ref = res["reference_test"]
    lo, hi = sel.ratio_interval(ta.bytes, tb.bytes)
    return {
        "ratio": ta.mean_bytes / tb.mean_bytes,
        "ci": [lo, hi],
        "numerator": {"mode": a, "setting": ta.setting.params, "bytes": ta.mean_bytes},
        "denominator": {"mode": b, "setting": tb.setting.params, "bytes": tb.mean_bytes},
        "both_pass_on_test": sel.compare(ta, ref)["passes"] and sel.compare(tb, ref)["passes"],
    }


def summarize(res: dict, guided: tuple[str, ...] = ("masked", "rate")) -> dict:
    """The goal figures, all on test (see ``definitions`` in the result)."""
    fam = _families(res)
    ref_t = res["reference_test"]
    f_lo, f_hi = sel.mean_interval(ref_t.correct)
    per_mode = {}
    for mode, m in res["selected"].items():
        entry = {"family": fam[mode], "selected_on_validation": None, "test": None}
        if m is not None:
            entry["selected_on_validation"] = {
                "setting": m.setting.params,
                **sel.score(m, res["reference_validation"]),
            }
            entry["test"] = sel.score(res["test"][mode], ref_t)
        per_mode[mode] = entry
    head = _cheapest(res, [k for k in res["selected"] if fam[k] in guided])
    feature_zero = [k for k in res["selected"] if fam[k] == "masked" and "/feature/zero" in k]
    default_coder = _cheapest(res, [k for k in feature_zero if _coder(k) == DEFAULT_CODER])
    never = "no setting passes on validation"
    summary = {
        "selected_on": "validation",
        "scored_on": "test",
        "n_validation": int(len(res["reference_validation"].correct)),
        "n_test": int(len(ref_t.correct)),
        "float_accuracy": ref_t.top1,
        "float_accuracy_ci": [f_lo, f_hi],
        "iso_points": ISO_POINTS,
    }
    ratios = {
        f"best_bytes_vs_fair_{c}_at_iso_accuracy": _ratio(
            res, head, sel.fair_treatment(res["selected"], c) or f"{c}_fair", f"{never} (nor {c} untuned)"
        )
        for c in ("jpeg", "webp", "avif")
    }
    ratios |= {
        f"best_bytes_vs_{c}_at_iso_accuracy": _ratio(res, head, c, never) for c in ("jpeg", "webp", "avif")
    }
    ratios["masked_bytes_vs_unmasked"] = _ratio(res, default_coder, f"quant/{DEFAULT_CODER}", never)
    ratios["map_vs_random_map_bytes"] = _ratio(res, default_coder, "random/feature/zero", never)
    for key, r in ratios.items():
        summary[key] = r["ratio"]
        summary[key + "_ci"] = r["ci"]
    hm = res["test"].get(head) if head else None
    summary["headline"] = None
    if hm is not None:
        summary["headline"] = {"mode": head, "setting": hm.setting.params, **sel.score(hm, ref_t)}
    # the defaults: the cheapest passing feature-zeroing setting among the providers that need no
    # gradient graph (the gradient providers cost about 3 x the edge time per frame, rate_accuracy
    # edge_ms; the default must keep the box's frame rate)
    pick = _cheapest(res, [k for k in feature_zero if k.split("/")[0] in DEFAULT_PROVIDERS])
    summary["edge_defaults_selected_on_validation"] = None
    if pick is not None:
        s = res["selected"][pick].setting
        summary["edge_defaults_selected_on_validation"] = {
            "provider": s.config["importance"]["provider"],
            "keep": s.params["keep"],
            "bits": s.params["bits"],
            "coder": s.config["codec"]["coder"],
            "bytes_validation": res["selected"][pick].mean_bytes,
            "rule": f"cheapest passing feature-zeroing setting on validation among providers {DEFAULT_PROVIDERS}",
        }
    # a random map that never passes: the map's ratio is below this bound (the random map would
    # need more than its largest measured passing-candidate's bytes)
    summary["map_vs_random_map_bytes_upper_bound"] = None
    if summary["map_vs_random_map_bytes"] is None and default_coder is not None:
        rnd = [m for m in res["validation"] if m.setting.mode == "random/feature/zero"]
        if rnd and res["selected"].get("random/feature/zero") is None:
            best_rnd = max(rnd, key=lambda m: m.top1)
            summary["map_vs_random_map_bytes_upper_bound"] = {
                "bound": res["selected"][default_coder].mean_bytes / best_rnd.mean_bytes,
                "split": "validation",
                "why": f"no random-map setting passes on validation; its most accurate one ({best_rnd.setting.params}, "
                f"{100 * best_rnd.top1:.1f}%) already costs {best_rnd.mean_bytes:.0f} B",
            }
    summary["goals"] = {
        k: {
            "goal": g,
            "met": summary[k] is not None and summary[k] <= g,
            "met_by_whole_interval": bool(summary[k + "_ci"] is not None and summary[k + "_ci"][1] <= g),
        }
        for k, g in GOALS.items()
    }
    summary["comparisons"] = ratios
    summary["per_mode"] = per_mode
    summary["definitions"] = {
        "passes": f"the lower end of the paired 95% bootstrap interval of (accuracy - float accuracy) is at "
        f"least -{ISO_POINTS} points",
        "selected": "per mode, the cheapest setting (mean bytes per frame, whole messages) that passes on the "
        "validation split; the headline: the cheapest selected importance-guided setting (masked, rate)",
        "ratios": "test-split mean bytes of one selected setting over another's (both chosen on validation), "
        "with a paired bootstrap interval over the test frames",
        "fair": "the codec's stronger treatment, chosen on validation (rate_select.fair_treatment): the "
        "whole model fine-tuned on frames compressed by that codec at random qualities "
        "(models/codec_finetune.py, mode <codec>_fair) or the untuned model (mode <codec>), whichever "
        "has the cheaper passing setting on validation",
        "masked_bytes_vs_unmasked": f"the cheapest selected feature-zeroing setting ({DEFAULT_CODER}) over the "
        f"selected unmasked quantized tensor (quant/{DEFAULT_CODER})",
        "map_vs_random_map_bytes": "the same feature-zeroing setting over the selected random-map setting "
        "(a random map at the swept keep ratios)",
        "float_accuracy": "the whole untuned model on the lossless PNG frame (= the unreduced split tensor)",
    }
    return summary


def rows(res: dict) -> list[dict]:
    """JSON rows: every validation measurement (with ``passes``) and the test measurements."""
    out = []
    for m in res["validation"]:
        r = m.row()
        c = sel.compare(m, res["reference_validation"])
        r.update(diff_pt=c["diff_pt"], diff_ci_pt=c["diff_ci_pt"], passes=c["passes"])
        out.append(r)
    for m in [*res["test"].values(), res["reference_test"]]:
        out.append(m.row() | sel.score(m, res["reference_test"]))
    return out


# ---------------------------------------------------------------- table


def _f(v, spec=".0f") -> str:
    return "-" if v is None else format(v, spec)


def _ci(ci, spec=".0f", scale=1.0) -> str:
    return "-" if ci is None else f"[{scale * ci[0]:{spec}}, {scale * ci[1]:{spec}}]"


def _goal_line(s: dict, key: str, label: str) -> str:
    g = s["goals"].get(key)
    r, ci = s[key], s[key + "_ci"]
    c = s["comparisons"][key]
    if r is None:
        return f"- {label}: not measured ({c['why']})" + (f"; goal <= {g['goal']}" if g else "")
    met = (
        "" if g is None else (" (goal <= {:.2f}: {})".format(g["goal"], "met" if g["met"] else "**missed**"))
    )
    num, den = c["numerator"], c["denominator"]
    caveat = "" if c["both_pass_on_test"] else " (one side misses the 0.5 pt bar on test)"
    return (
        f"- {label}: **{r:.3f} x** {_ci(ci, '.3f')}{met}: `{num['mode']}` {num['setting']} {num['bytes']:.0f} B "
        f"against `{den['mode']}` {den['setting']} {den['bytes']:.0f} B{caveat}"
    )


def markdown(res: dict, s: dict, params: dict) -> str:
    f = 100 * s["float_accuracy"]
    lines = [
        f"Settings chosen on the validation split ({s['n_validation']} frames), scored once on the test split "
        f"({s['n_test']} frames) of task `{params['task']}`; bundle `{params['model_id'][:12]}`. Intervals: paired "
        "bootstrap 95% over frames. A setting passes when its accuracy's interval stays within "
        f"{ISO_POINTS} points of the float model's.",
        "",
        f"- Float model (whole model, lossless frame): **{f:.1f}%** {_ci(s['float_accuracy_ci'], '.1f', 100)} top-1.",
    ]
    h = s["headline"]
    if h:
        lines.append(
            f"- Headline: `{h['mode']}` {h['setting']}: **{h['bytes']:.0f} B** {_ci(h['bytes_ci'])} per frame at "
            f"{100 * h['top1']:.1f}% {_ci(h['top1_ci'], '.1f', 100)}; {h['diff_pt']:+.2f} pt "
            f"{_ci(h['diff_ci_pt'], '.2f')} from the float model ("
            + ("distinguishable from zero" if h["distinguishable"] else "not distinguishable from zero")
            + ("" if h["passes"] else "; **misses the bar on test**")
            + ")."
        )
    fb = params["fair_budget"]
    sb = params.get("split_path_budget")
    budget = f"{fb['epochs']} x {fb['images']} images"
    if sb and (sb["epochs"], sb["images"]) != (fb["epochs"], fb["images"]):
        budget += f" (**less** than the split path's {sb['epochs']} x {sb['images']})"
    lines.append(
        f"- Fair baselines: each codec with the whole model fine-tuned on its output at random qualities, "
        f"{budget}, or untuned, whichever passes on validation at fewer bytes (fine-tuning is the "
        "baseline's hyper-parameter, chosen on validation like the edge's)."
    )
    for key, label in (
        ("best_bytes_vs_fair_jpeg_at_iso_accuracy", "Against fair JPEG"),
        ("best_bytes_vs_fair_webp_at_iso_accuracy", "Against fair WebP"),
        ("best_bytes_vs_fair_avif_at_iso_accuracy", "Against fair AVIF"),
        ("best_bytes_vs_jpeg_at_iso_accuracy", "Against untuned JPEG"),
        ("best_bytes_vs_webp_at_iso_accuracy", "Against untuned WebP"),
        ("best_bytes_vs_avif_at_iso_accuracy", "Against untuned AVIF"),
        ("masked_bytes_vs_unmasked", "Masking against quantization alone"),
        ("map_vs_random_map_bytes", "Importance map against a random map"),
    ):
        lines.append(_goal_line(s, key, label))
    ub = s.get("map_vs_random_map_bytes_upper_bound")
    if ub:
        lines.append(f"- Importance map against a random map: below **{ub['bound']:.3f} x** ({ub['why']}).")
    d = s["edge_defaults_selected_on_validation"]
    if d:
        lines.append(
            f"- Edge defaults chosen on validation (the shipped `edge_runtime/config.py`): provider `{d['provider']}`, "
            f"keep {d['keep']}, {d['bits']} bits, coder `{d['coder']}` ({d['rule']})."
        )
    lines += [
        "",
        "| mode | chosen on validation | test bytes/frame [95%] | test top-1 % [95%] | vs float, pt [95%] | passes | "
        "differs from 0 |",
        "|---|---|---:|---:|---:|:-:|:-:|",
    ]
    r = sel.score(res["reference_test"], res["reference_test"])
    lines.append(
        f"| png (the float model: reference) | lossless | {r['bytes']:.0f} {_ci(r['bytes_ci'])} | "
        f"{100 * r['top1']:.1f} {_ci(r['top1_ci'], '.1f', 100)} | 0 | - | - |"
    )
    order = sorted(
        s["per_mode"].items(),
        key=lambda kv: (kv[1]["test"] is None, kv[1]["test"]["bytes"] if kv[1]["test"] else 0),
    )
    for mode, e in order:
        t = e["test"]
        if t is None:
            lines.append(f"| {mode} | none passes | - | - | - | - | - |")
            continue
        setting = " ".join(f"{a}={b}" for a, b in e["selected_on_validation"]["setting"].items()) or "-"
        lines.append(
            f"| {mode} | {setting} | {t['bytes']:.0f} {_ci(t['bytes_ci'])} | {100 * t['top1']:.1f} "
            f"{_ci(t['top1_ci'], '.1f', 100)} | {t['diff_pt']:+.2f} {_ci(t['diff_ci_pt'], '.2f')} | "
            f"{'yes' if t['passes'] else 'no'} | {'yes' if t['distinguishable'] else 'no'} |"
        )
    lines.append("")
    return "\n".join(lines) + "\n"


def update_readme(md: str, command: str, readme: Path = README) -> None:
    text = readme.read_text()
    if MARK_BEGIN not in text or MARK_END not in text:
        raise ValueError(f"{readme} lacks the markers {MARK_BEGIN} ... {MARK_END}")
    head, rest = text.split(MARK_BEGIN, 1)
    _, tail = rest.split(MARK_END, 1)
    body = f"\n![bytes per frame against accuracy](benchmarks/results/rate_accuracy.png)\n\n{md}\nReproduce: `{command}`\n"
    readme.write_text(head + MARK_BEGIN + body + MARK_END + tail)


# ---------------------------------------------------------------- plot

_NICE = (20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 20000, 50000)
_STYLE = {
    "jpeg": ("C3", "o"),
    "webp": ("C1", "s"),
    "avif": ("C4", "D"),
    "quant": ("C0", "v"),
    "masked": ("C2", "."),
    "random": ("0.5", "x"),
    "rate": ("C6", "P"),
    "float16": ("k", "^"),
    "png": ("C5", "D"),
}


def _style(family: str) -> tuple[str, str]:
    return _STYLE.get(family.removesuffix("_fair"), ("0.3", "."))


def _ticks(ax, values) -> None:
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    lo, hi = min(values) / 1.3, max(values) * 1.3
    ticks: list[int] = []
    for t in _NICE:  # at least 1.45 x apart on the log axis, so the labels do not collide
        if lo <= t <= hi and (not ticks or t / ticks[-1] >= 1.45):
            ticks.append(t)
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])


def _curves(ax, res: dict) -> None:
    """Validation curves of the baselines (upper envelope in bytes) and the masked sweep."""
    by_mode: dict[str, list] = {}
    for m in res["validation"]:
        by_mode.setdefault(m.setting.mode, []).append(m)
    for mode, ms in by_mode.items():
        fam = ms[0].setting.family
        col, mk = _style(fam)
        pts = sorted((m.mean_bytes, 100 * m.top1) for m in ms)
        if fam in ("masked", "random"):
            ax.scatter(
                [p[0] for p in pts], [p[1] for p in pts], s=6, c="0.8" if fam == "masked" else "0.6", zorder=1
            )
            continue
        if fam in ("png", "float16", "rate"):
            continue
        if mode == "quant/zstd":
            col = "C9"
        ls = "-" if fam.endswith("_fair") or fam == "quant" else ":"
        label = f"{mode} (validation)" if fam != "quant" else f"{mode}, 8/6/4/2 bits (validation)"
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], ls, color=col, lw=1, alpha=0.7, label=label, zorder=2
        )


def _test_points(ax, s: dict, zoom: bool) -> None:
    for mode, e in s["per_mode"].items():
        t = e["test"]
        if t is None:
            continue
        col, mk = _style(e["family"])
        xerr = [[t["bytes"] - t["bytes_ci"][0]], [t["bytes_ci"][1] - t["bytes"]]]
        yerr = [[100 * (t["top1"] - t["top1_ci"][0])], [100 * (t["top1_ci"][1] - t["top1"])]]
        fair = e["family"].endswith("_fair")
        ax.errorbar(
            t["bytes"], 100 * t["top1"], xerr=xerr, yerr=yerr, fmt=mk, color=col, ms=5,
            mfc=col if fair or e["family"] not in _STYLE else "white", capsize=2, lw=0.8, zorder=4,
        )  # fmt: skip
        if zoom and (e["family"] not in ("masked", "rate") or mode == (s["headline"] or {}).get("mode")):
            ax.annotate(
                mode, (t["bytes"], 100 * t["top1"]), fontsize=6, xytext=(3, 3), textcoords="offset points"
            )
    h = s["headline"]
    if h:
        ax.plot(
            h["bytes"], 100 * h["top1"], "*", color="gold", mec="k", ms=16, zorder=5, label="headline (test)"
        )
        ax.annotate(
            f"{h['mode']} {h['bytes']:.0f} B",
            (h["bytes"], 100 * h["top1"]),
            xytext=(8, -14),
            textcoords="offset points",
            fontsize=7,
            weight="bold",
        )


def plot(res: dict, s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = 100 * s["float_accuracy"]
    flo, fhi = (100 * v for v in s["float_accuracy_ci"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 5.5))
    _curves(a1, res)
    for ax, zoom in ((a1, False), (a2, True)):
        _test_points(ax, s, zoom)
        ax.axhspan(flo, fhi, color="0.85", alpha=0.5, zorder=0, label="float model, 95% (test)")
        ax.axhline(
            f - ISO_POINTS, color="0.3", lw=0.8, ls="--", label=f"float model - {ISO_POINTS} pt (test)"
        )
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("bytes per frame (whole messages, log scale)")
    vals = [m.mean_bytes for m in res["validation"]]
    _ticks(a1, vals)
    lo = np.percentile([100 * m.top1 for m in res["validation"]], 10)
    a1.set_ylim(max(0.0, min(lo, f - 20)), min(100.5, f + 2))
    a1.set_ylabel("top-1 accuracy (%)")
    a1.set_title("validation sweep (lines, grey points); chosen settings on test (markers, 95%)", fontsize=9)
    a1.legend(fontsize=6, loc="lower right", ncol=2)
    tested = [e["test"] for e in s["per_mode"].values() if e["test"]]
    near = [t for t in tested if 100 * t["top1"] >= f - 3]
    _ticks(a2, [t["bytes"] for t in (near or tested)])
    a2.set_ylim(f - 3, min(100.2, f + 1.5))
    a2.set_title(
        f"test split, zoomed near the float model ({f:.1f}%); filled: fine-tuned (fair), open: untuned",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
