"""Report of `sdebnn_classification --time-steps`: the CPU time of full-mode SDE-BNN training and prediction
(and of its deterministic peer), and the estimate of the whole full-mode run derived from it."""
import os

from render import provenance_block, read_json, read_run, table, timing_block


def estimate(res_dir):
    """(config, timings, per-set CPU seconds, all-sets CPU seconds) of a timing result, or None."""
    path = os.path.join(res_dir, "results.json")
    if not os.path.exists(path):
        return None
    r = read_json(path)
    cfg, t = r["provenance"]["config"], read_run(res_dir).get("timings", {})
    keys = ("cpu_seconds_per_step", "cpu_seconds_per_peer_step", "cpu_seconds_per_image",
            "cpu_seconds_per_peer_image")
    if any(t.get(k) is None for k in keys):
        return None
    train = cfg["batches_per_epoch"] * cfg["epochs"] * (t["cpu_seconds_per_step"] + t["cpu_seconds_per_peer_step"])
    pred = cfg["predicted_images_per_set"] * (t["cpu_seconds_per_image"] + t["cpu_seconds_per_peer_image"])
    return r, cfg, t, train, pred


def render(res_dir, out_dir, rel):
    r = read_json(os.path.join(res_dir, "results.json"))
    run = read_run(res_dir)
    cfg = r["provenance"]["config"]
    body = ""
    est = estimate(res_dir)
    if est:
        _, _, t, train, pred = est
        step, peer = t["cpu_seconds_per_step"], t["cpu_seconds_per_peer_step"]
        img, pimg = t["cpu_seconds_per_image"], t["cpu_seconds_per_peer_image"]
        per_set = train + pred
        nsets = len(cfg["datasets"])
        body = f"""CPU seconds (process CPU time, all threads; {cfg['time_steps']} steps of each model after
{cfg['warmup_steps']} untimed warm-up step, prediction on {cfg['time_eval_images']} test images):

{table(["phase", "CPU s", "per"], [
    [f"SDE-BNN training step: forward along one weight path ({cfg['blocks']} block(s) x {cfg['steps']} "
     f"{cfg['estimator']} steps, KL {cfg['kl']}), backward, Adam", step, "step"],
    ["deterministic peer training step (mnist_baselines' net, same width and blocks)", peer, "step"],
    [f"SDE-BNN prediction, {cfg['samples']} weight paths", img, "image"],
    ["deterministic peer prediction", pimg, "image"]])}

An SDE-BNN step costs {step / peer:.1f} peer steps and an SDE-BNN prediction {img / pimg:.0f} peer predictions.

Estimate of the whole run per in-distribution set, one core: training {cfg['batches_per_epoch']} batches x
{cfg['epochs']} epochs x ({step:.3f} + {peer:.3f}) s = {train / 3600:.2f} h; prediction of
{cfg['predicted_images_per_set']:,.0f} images (the set's {cfg['eval_images_per_set']:,} test images, as many of
the other set, and {cfg['corruptions']} corruptions x {cfg['severities']} severities x
{cfg['corruption_images']:,} images) x ({img:.4f} + {pimg:.5f}) s = {pred / 3600:.2f} h; together
{per_set / 3600:.2f} h of CPU, and {nsets * per_set / 3600:.2f} h for the {nsets} data set(s) (about
{nsets * per_set / 3600 / 2:.1f} h of wall time on 2 cores, were the kernels' two threads perfectly efficient).
Wall-clock seconds depend on what else the machine runs: here {t.get('training_wall_seconds', 0):.0f} s of wall
time for the {2 * (cfg['time_steps'] + cfg['warmup_steps'])} training steps of both models.
"""
    md = f"""# SDE-BNN full-mode cost on MNIST: CPU time by phase

`sdebnn_classification --time-steps {cfg['time_steps']}` in {r['provenance'].get('mode', '?')} mode: width
{cfg['width']}, hidden {cfg['hidden']}, GroupNorm {cfg['groups']} groups, {cfg['blocks']} SDE-BNN block(s) of
{cfg['steps']} solver steps, batch {cfg['batch']}, sigma {cfg['sigma']:g}, on {cfg['dataset']} training images
in training order. It writes no study results: `results.json` holds the configuration and value checksums (the
last timed step's loss {r['results']['last_step_loss']:.6f}, the peer's {r['results']['last_peer_step_loss']:.6f};
mean max probability {r['results']['mean_max_prob']:.6f}, the peer's {r['results']['mean_max_prob_peer']:.6f}),
`run.json` the CPU seconds.

{provenance_block(r['provenance'], rel + '/results.json')}
{timing_block(run, rel + '/run.json')}
{body}"""
    summary = "### SDE-BNN full-mode cost ([report](sdebnn_classification_timing.md))\n\n"
    if est:
        summary += (f"{step:.3f} CPU s per SDE-BNN training step of {cfg['batch']} at width {cfg['width']} "
                    f"({step / peer:.1f}x the deterministic peer's); {nsets * per_set / 3600:.1f} h of CPU for "
                    f"the full study of {nsets} data set(s).\n")
    return md, summary
