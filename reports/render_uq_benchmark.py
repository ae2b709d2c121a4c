"""Report of experiments/uq_benchmark: every registered classifier with uncertainty on one protocol, mean ±
std over seeds. Reads the aggregate.json that scripts/sweep writes (or a single run's results.json, n = 1).
Loaded by reports/render.py as a plugin: render(res_dir, out_dir, rel)."""
import os

import matplotlib.pyplot as plt

from render import fmt, pct_pm, pm, read_json, save, table

SETS = [("mnist", "MNIST", "fashion_mnist", "Fashion-MNIST"),
        ("fashion_mnist", "Fashion-MNIST", "mnist", "MNIST")]

# Published numbers of the seed papers where the protocol can be compared (/work/shared/REFERENCES.md):
# SDE-Net's MNIST model, trained on all of MNIST, by a third-party reproduction of its repository (issue #7).
# Their OOD set is SVHN, which this benchmark does not have: only the in-distribution accuracy compares.
# Each with the registered method whose MNIST accuracy stands beside it.
PUBLISHED = [
    ("ResNet (SDE-Net repo, third-party reproduction)", "deterministic", "MNIST", "99.45",
     "SVHN OOD: AUROC 95.94, TNR@95 88.78"),
    ("SDE-Net (SDE-Net repo, third-party reproduction)", "sdenet", "MNIST", "99.27",
     "SVHN OOD: AUROC 99.80, TNR@95 99.37"),
]


# The scores of learned_confidence and odin (experiments/uq_methods/confidence.cpp): column titles.
CONFIDENCE_SCORES = {"confidence": "1 - c", "confidence_preprocessed": "1 - c(x')", "odin": "ODIN"}


def load(res_dir):
    """{(set, method): {metric path: (mean, std, n)}}, timings likewise, the provenance and the config."""
    agg_path = os.path.join(res_dir, "aggregate.json")
    if os.path.exists(agg_path):
        agg = read_json(agg_path)
        point = agg["points"][0]  # the benchmark is swept over seeds only
        metrics = {k: (v["mean"], v["std"], v["n"]) for k, v in point["metrics"].items()}
        run_path = os.path.join(res_dir, "aggregate_run.json")
        timings = {}
        if os.path.exists(run_path):
            tp = read_json(run_path)["points"][0]["timings"]
            timings = {k: (v["mean"], v["std"], v["n"]) for k, v in tp.items()}
        prov = agg["provenance"]
        return metrics, timings, prov, prov.get("config") or {}, "aggregate.json"
    r = read_json(os.path.join(res_dir, "results.json"))
    metrics, timings = {}, {}

    def walk(v, prefix, out):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{prefix}.{k}" if prefix else k, out)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix] = (float(v), None, 1)
    walk({"results": r["results"]}, "", metrics)
    run_path = os.path.join(res_dir, "run.json")
    if os.path.exists(run_path):
        walk(read_json(run_path).get("timings", {}), "", timings)
    prov = r["provenance"]
    return metrics, timings, prov, prov.get("config", {}), "results.json"


def full_cost(res_dir, cfg):
    """The "Why quick mode" paragraph: a lower bound on the training CPU time of one full-mode seed, from the
    committed full-size timing results of SDE-BNN (with its deterministic peer, the baselines' net) and SDE-Net
    beside this one. None when they are missing or were not measured at full size."""
    results = os.path.dirname(res_dir)
    def timing(name):
        d = os.path.join(results, name)
        if not os.path.exists(os.path.join(d, "results.json")) or not os.path.exists(os.path.join(d, "run.json")):
            return None
        r = read_json(os.path.join(d, "results.json"))
        return (r["provenance"], r["provenance"]["config"], read_json(os.path.join(d, "run.json"))["timings"]) \
            if r["provenance"].get("mode") == "full" else None
    sb, sn = timing("sdebnn_classification_timing"), timing("sdenet_mnist_timing")
    if not sb or not sn:
        return None
    (sbp, sbc, sbt), (snp, snc, snt) = sb, sn
    epochs, sets, ens = 20, 2, 5  # uq_benchmark's full mode: 20 epochs, MNIST and Fashion-MNIST, 5 members
    if sbc["width"] != 64 or sbc["blocks"] != 2 or sbc["steps"] != 19 or snc["width"] != 64 or sbc["batch"] != 128:
        return None  # not the benchmark's full size
    sdebnn = sets * sbc["batches_per_epoch"] * epochs * sbt["cpu_seconds_per_step"]
    sdenet = sets * snc["full_batches_per_epoch"] * epochs * (snt["cpu_seconds_per_classifier_step"] +
                                                             snt["cpu_seconds_per_diffusion_step"])
    convs = (2 + ens) * sets * sbc["batches_per_epoch"] * epochs * sbt["cpu_seconds_per_peer_step"]
    seed_h = (sdebnn + sdenet + convs) / 3600
    return f"""### Why quick mode

Full mode (`build/experiments/uq_benchmark --full`: width 64, 2 residual blocks, all 60,000 training images
of each set, {epochs} epochs of batch 128, SDE-BNN with 19 solver steps per block, {ens} ensemble members) does not
fit the issue's budget of about 8 hours on 2 cores. A lower bound on its training time per seed, from the
committed full-size timings (CPU seconds per training step at width 64, batch 128):
SDE-BNN {sbt['cpu_seconds_per_step']:.3f} s (`{sbp['command']}`, [report](sdebnn_classification_timing.md)) x
{sbc['batches_per_epoch']} steps x {epochs} epochs x {sets} sets = {sdebnn / 3600:.1f} h; SDE-Net
{snt['cpu_seconds_per_classifier_step'] + snt['cpu_seconds_per_diffusion_step']:.3f} s (`{snp['command']}`,
[report](sdenet_mnist_timing.md)) x {snc['full_batches_per_epoch']} x {epochs} x {sets} = {sdenet / 3600:.1f} h; the
baselines' conv net {sbt['cpu_seconds_per_peer_step']:.3f} s (the SDE-BNN timing's deterministic peer, the same
MnistConvNet) for the deterministic net, MC dropout and {ens} ensemble members = {convs / 3600:.1f} h; together
{seed_h:.1f} h of CPU per seed before SNGP, learned confidence and every prediction, {5 * seed_h:.0f} h for 5
seeds ({5 * seed_h / 2:.0f} h of wall time on 2 cores at best). Hence the quick mode above, over
{cfg.get('seeds_n', 2)} seeds, as the issue allows where full mode does not fit.
"""


def render(res_dir, out_dir, rel):
    metrics, timings, prov, cfg, src_name = load(res_dir)
    src = f"{rel}/{src_name}"
    methods = cfg.get("methods", [])
    titles = {m["name"]: m["title"] for m in methods}

    def get(path, digits=4, pct=False):
        """mean ± std of a metric; pct: a fraction as a percentage with 1 decimal (every percent cell)."""
        v = metrics.get(path)
        if v is None or v[0] is None:
            return "–"
        return pct_pm(v[0], v[1], 1, 100) if pct else pm(v[0], v[1], digits)

    def get_pct(path):
        return get(path, pct=True)

    def get_t(path, digits=3):
        v = timings.get(path)
        if v is None or v[0] is None:
            return "–"
        return pm(v[0], v[1], digits)

    n_seeds = prov.get("n_seeds", 1)
    # Their columns only when a run has them (a run without these methods renders as before).
    conf_scores = [s for s in CONFIDENCE_SCORES if any(k.endswith(f".auroc_by_score.{s}") for k in metrics)]
    tables, details, fig_points = [], [], {}
    for key, title, other, other_title in SETS:
        rows, drows = [], []
        for m in methods:
            name = m["name"]
            base = f"results.{key}.{name}"
            if f"{base}.accuracy" not in metrics:
                continue
            params = metrics.get(f"{base}.parameters", (None,))[0]
            rows.append([titles[name], m["ood_score"], get_pct(f"{base}.accuracy"), get(f"{base}.nll"),
                         get(f"{base}.brier"), get(f"{base}.ece"), get_pct(f"{base}.ood.{other}.auroc"),
                         get_pct(f"{base}.ood.noise.auroc"),
                         get_pct(f"{base}.misclassification_auroc"),
                         fmt(int(params)) if params is not None else "–",
                         get_t(f"{key}.{name}.train_seconds", 1),
                         get_t(f"{key}.{name}.predict_seconds_per_1000", 3)])
            for oset, otitle in [(other, other_title), ("noise", "noise")]:
                drows.append([titles[name], otitle, get_pct(f"{base}.ood.{oset}.auroc"),
                              get_pct(f"{base}.ood.{oset}.aupr_in"),
                              get_pct(f"{base}.ood.{oset}.aupr_out"),
                              get_pct(f"{base}.ood.{oset}.tnr_at_95_tpr")] +
                             [get_pct(f"{base}.ood.{oset}.auroc_by_score.{s}")
                              for s in ("max_prob", "entropy", "mutual_information", "gp_variance")] +
                             [get_pct(f"{base}.ood.{oset}.auroc_by_score.{s}") for s in conf_scores])
            acc = metrics[f"{base}.accuracy"]
            au = metrics.get(f"{base}.ood.{other}.auroc", (None, None, 0))
            fig_points.setdefault(key, []).append((titles[name], acc, au))
        hdr = ["method", "OOD score", "accuracy %", "NLL", "Brier", "ECE", f"AUROC {other_title} %",
               "AUROC noise %", "misclass. AUROC %", "parameters", "train s", "predict s / 1000"]
        tables.append(f"### In-distribution {title}\n\n" + table(hdr, rows))
        details.append(f"#### In-distribution {title}\n\n" + table(
            ["method", "OOD set", "AUROC %", "AUPR in %", "AUPR out %", "TNR@95TPR %", "AUROC by 1 - max p",
             "by entropy", "by mutual information", "by GP variance"] +
            [f"by {CONFIDENCE_SCORES[s]}" for s in conf_scores], drows))

    # Corrupted test images (when the corruption suite was part of the build): per severity, the mean over
    # the 9 corruptions.
    corr_parts = []
    for key, title, _, _ in SETS:
        rows = []
        for m in methods:
            base = f"results.{key}.{m['name']}.corrupted"
            if f"{base}.severity_1.accuracy" not in metrics:
                continue
            rows.append([titles[m["name"]], get_pct(f"{base}.clean_accuracy")] +
                        [get_pct(f"{base}.severity_{s}.accuracy") for s in range(1, 6)] +
                        [get_pct(f"{base}.severity_{s}.auroc_vs_clean") for s in range(1, 6)])
        if rows:
            corr_parts.append(f"#### In-distribution {title}\n\n" + table(
                ["method", "clean acc %"] + [f"acc s{s} %" for s in range(1, 6)] +
                [f"AUROC s{s} %" for s in range(1, 6)], rows))
    if corr_parts:
        corr_text = (f"### Corrupted test images\n\nThe first {cfg.get('corrupted_images')} test images under "
                     "each of the 9 corruptions of `nn/corruptions.hpp` at severities 1-5 (the suite's seed): "
                     "accuracy (acc), and the AUROC of the method's OOD score separating the clean images "
                     "(positive) from their corrupted copies, each the mean over the 9 corruptions.\n\n" +
                     "\n\n".join(corr_parts))
        corr_note = ""
    else:
        corr_text = ""
        corr_note = ("Corrupted images (severity 1-5) are not in this table: the corruption suite "
                     "(`nn/corruptions.hpp`) was not part of the build that made it.")

    fig, axes = plt.subplots(1, len(SETS), figsize=(5.2 * len(SETS), 4.0), squeeze=False)
    for ax, (key, title, other, other_title) in zip(axes[0], SETS):
        for i, (name, acc, au) in enumerate(fig_points.get(key, [])):
            if au[0] is None:
                continue
            ax.errorbar([100 * acc[0]], [100 * au[0]], xerr=[100 * (acc[1] or 0)], yerr=[100 * (au[1] or 0)],
                        fmt="os^Dvp"[i % 6], color=f"C{i}", capsize=3, label=name)
        ax.set_xlabel(f"{title} test accuracy %")
        ax.set_ylabel(f"OOD AUROC % ({other_title} as OOD)")
        ax.set_title(f"in-distribution {title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"accuracy vs OOD AUROC, mean ± std over {n_seeds} seed(s)", y=1.02)
    figure = save(fig, out_dir, "uq_benchmark_accuracy_vs_auroc")

    method_lines = "\n".join(f"- **{m['title']}** (`{m['name']}`): {m['description']}; OOD score "
                             f"`{m['ood_score']}`" + (f"; options {m['options']}" if m.get("options") else "")
                             for m in methods)
    train = "all" if not cfg.get("train_subset") else cfg["train_subset"]
    evaln = "all" if not cfg.get("eval_subset") else cfg["eval_subset"]
    seeds = prov.get("seeds", prov.get("seed", "?"))
    dirty = " (with uncommitted changes)" if prov.get("dirty") else ""
    published = table(["model (source)", "in-distribution", "accuracy %", "ours: method",
                       f"ours: accuracy % ({prov.get('mode', '?')} mode)", "their OOD result (not comparable)"],
                      [[model, ind, acc, titles.get(ours, ours), get_pct(f"results.mnist.{ours}.accuracy"), ood]
                       for model, ours, ind, acc, ood in PUBLISHED])
    why_quick = ""
    if prov.get("mode") == "quick":
        fc = full_cost(res_dir, {"seeds_n": n_seeds})
        why_quick = fc + "\n" if fc else ""
    md = f"""# One table for every method: uncertainty on MNIST and Fashion-MNIST

Every classifier with uncertainty registered with `nn/uq_method.hpp` is trained on the same images and
scored by the same code (`experiments/uq_benchmark.cpp`). Each in-distribution set (MNIST, Fashion-MNIST)
is normalised by its own constants; OOD sets, normalised the same way: the other set's test images and
uniform-noise images. Networks: SDE-Net's MNIST conv net (downsampling block, {cfg.get('residual_blocks')}
residual block(s), width {cfg.get('width')}, GroupNorm with {cfg.get('groups')} groups), Adam {cfg.get('lr')},
{cfg.get('epochs')} epochs, batch {cfg.get('batch')}, on {train} training images per set; {evaln} test
images per set and as many of each OOD set. MC dropout: p = {cfg.get('dropout')}, {cfg.get('mc_samples')}
masks; ensemble: {cfg.get('ensemble')} members.

{method_lines}

Metrics: accuracy, NLL, Brier score, ECE (15 equal-width bins on the max probability); OOD detection with
each method's OOD score (in-distribution positive): AUROC, AUPR in/out, TNR at 95% TPR; misclassification
AUROC: the same score separating right from wrong test predictions. Every entry is mean ± sample std over
{n_seeds} seed(s) ({seeds}); training seconds and prediction seconds per 1000 images are wall-clock times
on a shared 2-core machine (noisy; not part of the reproducible results).

Mode **{prov.get('mode', '?')}**, seeds **{seeds}**, commit `{prov.get('commit', '?')}`{dirty}. Numbers
from `{src}`.

{(chr(10) * 2).join(tables)}

![accuracy vs OOD AUROC]({figure})

{corr_text}

### OOD detection in detail

{(chr(10) * 2).join(details)}

{why_quick}### Published numbers

The seed papers' MNIST protocol (SDE-Net: all 60,000 MNIST training images, 40 epochs of SGD, OOD SVHN) is
not this one: SVHN is not available here and quick mode trains on a subset for a few epochs, so only the
in-distribution accuracy of a full-mode run compares, and the OOD numbers below are theirs on SVHN, shown
for orientation only. No seed paper reports Fashion-MNIST as in-distribution.

{published}

{corr_note}
"""
    first = tables[0] if tables else ""
    summary = f"### UQ benchmark ([report](uq_benchmark.md))\n\n{first}\n"
    return md, summary
