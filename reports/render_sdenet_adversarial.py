"""Report of experiments/sdenet_adversarial: FGSM and PGD against the deterministic conv net, MC dropout, a
deep ensemble and SDE-Net on MNIST; accuracy under attack and the AUROC of each uncertainty score for
adversarial against clean images, per epsilon."""
import json
import os

import matplotlib.pyplot as plt

from render import fixed, provenance_block, read_json, read_run, save, table, timing_block

METHODS = [("deterministic", "Deterministic"), ("mc_dropout", "MC dropout"), ("deep_ensemble", "Deep ensemble")]
SCORES = [("max_prob", "1 - max prob"), ("entropy", "entropy"), ("mutual_information", "mutual information"),
          ("diffusion", "diffusion")]
ATTACKS = [("fgsm", "FGSM"), ("pgd", "PGD")]
COLORS = {"deterministic": "#444444", "mc_dropout": "#1f77b4", "deep_ensemble": "#2ca02c"}
SDENET_COLORS = ["#d62728", "#ff7f0e", "#9467bd", "#8c564b"]
# The score each method's own notion of epistemic uncertainty gives (dashed in the figure).
EPISTEMIC = {"mc_dropout": "mutual_information", "deep_ensemble": "mutual_information"}



def sdenet_groups(sd):
    """SDE-Net's GroupNorm groups; results before the max_groups key used min(32, width), which at width
    <= 32 is one channel per group (an instance norm: sde::SdeNet now refuses it)."""
    w = sd["width"]
    g = min(sd.get("max_groups", 32), w)
    note = "" if "max_groups" in sd else " (one channel per group: these results predate sde::SdeNet refusing it)"
    return f", GroupNorm({g}, {w}){note}"

def sdenet_methods(res):
    """SDE-Net rows, one per evaluation sigma ("sdenet_sigma500"), in the order of the configuration."""
    return [k for k in res if k.startswith("sdenet_sigma")]


def models_text(cfg):
    """Where the models come from: trained by the experiment, or (--models-from) sdenet_mnist's, with the
    checkpoint files that hold them."""
    mf = cfg.get("models_from")
    if not mf:
        return f"against four methods trained by the experiment on the first {cfg['train_subset']} training images"
    files = ", ".join(f"`{n}` (weights' CRC-32 {v['weights_crc32']})" for n, v in sorted(mf["files"].items()))
    ident = mf.get("baseline_identity", {})
    n = ident.get("config", {}).get("train_subset")
    images = "all 60,000 training images" if n == 0 else f"the first {n} training images"
    return (f"against the models that `sdenet_mnist` trained in its MNIST-in study (seed {ident.get('seed', '?')}, "
            f"{images}; this experiment read them with `--models-from {mf['dir']}` and attacked them as they "
            f"were: {files}; their training times are in sdenet_mnist's report)")


def milestones(cfg):
    """SDE-Net's learning-rate milestones: this experiment's setting, or those of the sdenet_mnist run whose
    model it read (--models-from: in that run's configuration key, '<JSON>|seed=..|in=..')."""
    sd = cfg["sdenet"]
    if "milestones" in sd:
        return sd["milestones"]
    c = json.loads(cfg["models_from"]["sdenet_config"].rsplit("|seed=", 1)[0])
    return (f"x{c['gamma']:g} after epochs {', '.join(map(str, c['milestones']))} (diffusion: "
            f"{', '.join(map(str, c['milestones_diffusion']))})")


def render(res_dir, out_dir, rel, report="sdenet_adversarial"):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_run(res_dir)
    cfg = r["provenance"]["config"]
    res = r["results"]
    methods = [(m, n) for m, n in METHODS if m in res]
    sd_keys = [f"sdenet_sigma{x:g}" for x in cfg.get("sdenet_sigma_eval", [])]
    for i, k in enumerate(k for k in sd_keys if k in res):
        methods.append((k, f"SDE-Net, sigma {k[len('sdenet_sigma'):]}"))
        COLORS[k] = SDENET_COLORS[i % len(SDENET_COLORS)]
        EPISTEMIC[k] = "diffusion"
    eps = cfg["epsilons"]

    acc_parts = []
    for a, an in ATTACKS:
        # Accuracies and AUROCs are fractions: 4 decimals in every cell (0 -> "0.0000", not "0").
        rows = [[n, fixed(res[m]["clean"]["accuracy"])] + [fixed(e["accuracy"]) for e in res[m][a]]
                for m, n in methods]
        acc_parts.append(f"#### Accuracy under {an}\n\n" +
                         table(["method", "clean"] + [f"eps {x:g}" for x in eps], rows))
    auc_parts = []
    for a, an in ATTACKS:
        rows = []
        for m, n in methods:
            for sk, sn in SCORES:
                if sk in res[m][a][0]["auroc"]:
                    rows.append([n, sn] + [fixed(e["auroc"][sk]) for e in res[m][a]])
        auc_parts.append(f"#### AUROC, {an} images against the same images clean\n\n" +
                         table(["method", "score"] + [f"eps {x:g}" for x in eps], rows))

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), squeeze=False)
    for j, (a, an) in enumerate(ATTACKS):
        ax = axes[0][j]
        for m, n in methods:
            ax.plot([0] + eps, [res[m]["clean"]["accuracy"]] + [e["accuracy"] for e in res[m][a]], "o-",
                    color=COLORS[m], label=n)
        ax.set_title(f"{an}: accuracy under attack")
        ax.set_xlabel("epsilon (L-inf, pixels in [0, 1])")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax = axes[1][j]
        for m, n in methods:
            ax.plot(eps, [e["auroc"]["entropy"] for e in res[m][a]], "o-", color=COLORS[m], label=f"{n}: entropy")
            ek = EPISTEMIC.get(m)
            if ek and ek in res[m][a][0]["auroc"]:
                ax.plot(eps, [e["auroc"][ek] for e in res[m][a]], "s--", color=COLORS[m],
                        label=f"{n}: {dict(SCORES)[ek]}")
        ax.axhline(0.5, color="k", lw=0.8, ls=":")
        ax.set_title(f"{an}: AUROC adversarial vs clean")
        ax.set_xlabel("epsilon")
        ax.set_ylabel("AUROC")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig_path = save(fig, out_dir, report)

    timing = run.get("timings", {})
    trows = []
    for m, n in methods:
        tr = timing.get("train_seconds_per_epoch", {})
        keys = {"deterministic": ["member0"], "deep_ensemble": [k for k in tr if k.startswith("member")],
                "mc_dropout": ["mc_dropout"]}.get(m, ["sdenet"])
        ep = [s for k in keys for s in tr.get(k, [])]
        trows.append([n, sum(ep) / len(ep) if ep else None, timing.get("attack_seconds", {}).get(m)])
    b, sd = cfg["baseline"], cfg["sdenet"]
    tables = "\n\n".join(acc_parts + auc_parts)
    md = f"""# SDE-Net study 3: adversarial robustness on MNIST

FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018; L-infinity, random start, {cfg['pgd_steps']} steps of
{cfg['pgd_step_size']}) with epsilon in {', '.join(f'{x:g}' for x in eps)} on the first {cfg['attack_subset']}
MNIST test images (pixels in [0, 1]; every iterate projected onto the epsilon ball and clipped to [0, 1]),
{models_text(cfg)}:

* **Deterministic**: mnist_baselines' conv net (width {b['width']}, {b['residual_blocks']} residual block(s),
  GroupNorm {b['groups']} groups; Adam {b['lr']}, {b['epochs']} epochs, batch {b['batch']}); it standardises
  its input with the MNIST constants inside the network, so the attack works on pixels.
* **MC dropout**: the same net with dropout {cfg['dropout']}, {cfg['eval_passes']} masks at test time.
* **Deep ensemble**: {cfg['ensemble']} independently seeded deterministic nets (member 0 is the deterministic
  model), attacked through the averaged probabilities.
* **SDE-Net**: the reference MNIST model at width {sd['width']}{sdenet_groups(sd)} (two SGD optimizers, {sd['epochs']} epochs,
  milestones: {milestones(cfg)}; sigma {sd['sigma_train']} in training), attacked and evaluated at each sigma
  of {', '.join(f'{x:g}' for x in cfg['sdenet_sigma_eval'])} (500 is the reference's evaluation sigma, 20 its
  training sigma) with {cfg['eval_passes']} passes; one trained model, a row per sigma.

Attack loss: {cfg['attack_loss']}. The stochastic models (MC dropout, SDE-Net) are attacked with the
expected gradient over {cfg['attack_passes']} passes (each pass a fresh dropout mask or Brownian path;
Athalye et al. 2018). AUROC: {cfg['auroc']}; scores are 1 - max probability and the entropy of the averaged
probabilities, the mutual information between label and mask / member / path (the epistemic part of the
entropy) and SDE-Net's diffusion g(h0(x)). An AUROC below 0.5 means the attacked images look *more*
certain than the clean ones. The reference repository has no adversarial study (its README lists it as a
TODO), so the protocol is ours; accuracy under attack of a model is a property of that model at this
training budget, not of the method in general. Chance is 0.1 (10 classes): an accuracy near it under a
strong attack, where the deterministic models are at 0, is a stochastic model whose noise decides its
prediction (SDE-Net's diffusion rates those images above the clean ones: its AUROC), not a model that resists the attack.

{provenance_block(r['provenance'], rel + '/results.json')}

![adversarial]({fig_path})

{tables}
{timing_block(run, rel + '/run.json')}
{table(['method', 'train seconds per epoch', 'attack seconds (all epsilons, both attacks, with evaluation)'], trows)}
"""
    summ_rows = [[n] + [fixed(e["accuracy"]) for e in res[m]["pgd"]] for m, n in methods]
    mode = r["provenance"].get("mode", "?")
    summary = (f"### SDE-Net: adversarial robustness, {mode} mode ([report]({report}.md))\n\nAccuracy under PGD:\n\n" +
               table(["method"] + [f"eps {x:g}" for x in eps], summ_rows) + "\n")
    return md, summary
