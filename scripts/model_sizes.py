"""The model-size evidence of docs/model_sizes.md from the size-ladder sweeps.

Reads ``sizes_{mlp,unet,dit}`` (``jaxgap sweep docs/sweeps/digits_sizes_FAMILY.toml
--out runs/sizes_FAMILY``) and the later single-rung runs ``sizes_FAMILY_RUNG``
(``docs/sweeps/digits_sizes_FAMILY_RUNG.toml``), whichever have finished, from the first
``--runs`` folder that holds each (default: ``runs``, then ``docs/model_sizes_runs``), and
writes ``docs/model_sizes.png`` (gap-peak height, its location and the memorized fraction
at the last step against the parameter count, one line per family, 95% t-intervals over
seeds) and prints the table of the doc (Markdown).

``--keep DIR`` copies the three small files read from each run (``spec.json``,
``samples.csv``, ``sweep.json``; about 20 kB) to ``DIR/sizes_*/``: the documented runs are
kept that way in ``docs/model_sizes_runs``, so the figure and table can be redrawn from a
clone without the run folders (which hold every checkpoint).

    python scripts/model_sizes.py [--runs runs --runs docs/model_sizes_runs]
                                  [--keep docs/model_sizes_runs] [--out docs/model_sizes.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from jaxgap.nets import MODEL_SIZES, param_table
from jaxgap.report._figure import new_figure, save
from jaxgap.sweep import tables
from jaxgap.sweep.analysis import over_seeds

FAMILIES = ("mlp", "unet", "dit")
READ = ("spec.json", "samples.csv", "sweep.json")  # what family_rows reads of a run


def family_rows(folder: Path, kind: str) -> list[dict]:
    """Per rung: parameters, and at the last step the memorized fraction and the gap peak
    (height, location) as means over seeds with 95% t-intervals."""
    spec = json.loads((folder / "spec.json").read_text())
    step = spec["sweep"]["steps"]
    counts = {r.model_size: r.params for r in param_table(kinds=(kind,))
              if r.data.startswith("digits")}
    mem = {s["model_size"]: s for s in over_seeds(
        [r for r in tables.read_csv(folder / "samples.csv") if r["step"] == step],
        "memorized", by=["model_size"])}
    peaks = json.loads((folder / "sweep.json").read_text())["analyses"]["gap_peaks"]
    height = {h["model_size"]: h for h in peaks["height"] if h["step"] == step}
    where = {h["model_size"]: h for h in peaks["log10_sigma"] if h["step"] == step}
    out = []
    for size in spec["grid"]["model_size"]:
        out.append({"kind": kind, "model_size": size, "params": counts[size], "step": step,
                    "seeds": mem[size]["n"], "memorized": mem[size],
                    "peak": height[size], "peak_sigma": where[size]})
    return out


def _iv(s, digits=3, scale=lambda v: v) -> str:
    return (f"{scale(s['mean']):.{digits}g} [{scale(s['lo']):.{digits}g}, "
            f"{scale(s['hi']):.{digits}g}]")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", action="append", help="folders holding the sizes_* runs, "
                   "searched in order (default: runs, then docs/model_sizes_runs)")
    p.add_argument("--keep", help="copy the files read of each run to KEEP/sizes_*/")
    p.add_argument("--out", default="docs/model_sizes.png")
    args = p.parse_args()
    roots = [Path(r) for r in (args.runs or ["runs", "docs/model_sizes_runs"])]
    rows, used = [], []
    for kind in FAMILIES:
        fam = []
        for name in (f"sizes_{kind}", *(f"sizes_{kind}_{size}" for size in MODEL_SIZES)):
            found = [r / name for r in roots if (r / name / "sweep.json").exists()]
            if found:
                fam += family_rows(found[0], kind)
                used.append(found[0])
        rows += sorted(fam, key=lambda r: MODEL_SIZES.index(r["model_size"]))
    if not rows:
        raise SystemExit(f"--runs: no finished sizes_* sweep under {[str(r) for r in roots]}")
    if args.keep:
        for folder in used:
            target = Path(args.keep) / folder.name
            if target.resolve() != folder.resolve():
                target.mkdir(parents=True, exist_ok=True)
                for name in READ:
                    shutil.copyfile(folder / name, target / name)
    fig = new_figure((14.0, 4.4))
    axes = fig.subplots(1, 3)
    for kind in FAMILIES:
        fam = [r for r in rows if r["kind"] == kind]
        if not fam:
            continue
        x = np.array([r["params"] for r in fam], np.float64)
        for ax, key, scale in ((axes[0], "peak", lambda v: v),
                               (axes[1], "peak_sigma", lambda v: 10.0 ** v),
                               (axes[2], "memorized", lambda v: v)):
            y = np.array([scale(r[key]["mean"]) for r in fam])
            lo = np.array([scale(r[key]["lo"]) for r in fam])
            hi = np.array([scale(r[key]["hi"]) for r in fam])
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=kind)
            for r, xi, yi in zip(fam, x, y, strict=True):
                ax.annotate(r["model_size"], (xi, yi), textcoords="offset points",
                            xytext=(4, 4), fontsize=8)
    for ax, label in zip(axes, ("gap-peak height (EMA)", "sigma of the gap peak",
                                "memorized fraction (1/3 rule)"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    step = rows[0]["step"]
    save(fig, args.out, title=f"digits, N = 128, {step} steps: size ladders (mean over seeds, "
                              f"95% t-intervals)", dpi=150, fontsize=10)
    print("| family | size | parameters | seeds | memorized at the last step | gap-peak "
          "height | peak at sigma |")
    print("|---|---|---:|---:|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['model_size']} | {r['params']:,} | {r['seeds']} | "
              f"{_iv(r['memorized'])} | {_iv(r['peak'])} | "
              f"{_iv(r['peak_sigma'], 2, lambda v: 10.0 ** v)} |")
    print(f"read {', '.join(str(f) for f in used)}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
