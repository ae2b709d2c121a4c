// sdenet_mnist: SDE-Net (Kong et al. 2020) on MNIST and Fashion-MNIST, studies 1 (OOD detection) and 2
// (misclassification detection) of issue 12, against the baselines of mnist_baselines trained on the same
// images through the same code (experiments/mnist_baselines_lib.hpp).
//
// For each in-distribution set (--dataset mnist, fashion_mnist or both):
//   * SDE-Net as the reference (sde/sdenet.hpp): raw pixels in [0, 1], batch 128 with the last partial batch
//     dropped, SGD 0.1 / 0.01 with momentum 0.9 and weight decay 5e-4, milestones; sigma 20 in training.
//   * OOD sets: the other data set's test images, Gaussian-noise images (each pixel clip(N(m, s^2), 0, 1)
//     with m, s the in-distribution training set's pixel mean and std) and uniform-noise images (U(0, 1) per
//     pixel), seeded.
//   * Scores (higher = more in-distribution): the max of the softmax averaged over --passes passes at sigma
//     500 and at sigma 20 (what the reference scores), and minus the diffusion g(h0(x)) (what the paper
//     describes); baselines: max softmax of the deterministic net, MC dropout (--mc-samples masks) and the
//     deep ensemble.
//   * Misclassification: correct test predictions in, wrong ones out, each method scored by its own
//     predictions (the diffusion rows use SDE-Net's sigma-500 predictions, as the reference evaluates).
//   * Metrics under two definitions: "exact" (nn/metrics: rank AUROC, average precision, FPR at the first
//     threshold with TPR >= 95%) and "grid" (nn/metrics_grid: the reference's calculate_log.py).
// Training is checkpointed after every epoch (out/checkpoints/); a killed run resumes where it stopped unless
// --no-resume. --stage sdenet / --stage baselines only train that part to its checkpoints and exit (writing
// nothing else), so that the two can run as separate processes (one core each, --checkpoints naming the
// shared directory) and a later run of the whole study finds them trained. Seconds per epoch and per
// evaluation go to run.json. --profile-steps N only prints where N
// training steps spend their time, per op (autodiff/profile.hpp), and exits.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "autodiff/profile.hpp"
#include "experiments/common.hpp"
#include "experiments/cpu_time.hpp"
#include "experiments/mnist_baselines_lib.hpp"
#include "experiments/mnist_study.hpp"
#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/metrics.hpp"
#include "nn/metrics_grid.hpp"
#include "sde/sdenet.hpp"

using namespace sdeuq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
    std::string dataset = "both";
    // Quick mode: 3 epochs on 6,144 images at width 32 with 8 GroupNorm groups (4 channels per group: with
    // one channel per group the GN -> ReLU -> pool head learns slowly, see mnist_baselines), so that a
    // run takes minutes; --full is the reference (40 epochs, all images, width 64, 32 groups).
    int epochs = 3;
    std::size_t batch = 128;
    std::size_t train_subset = 6144;  // 0 = all
    std::size_t eval_subset = 500;    // test images of each data set (0 = all)
    std::size_t noise_images = 200;
    int passes = 10;
    std::vector<double> sigma_eval = {500.0, 20.0};
    std::int64_t width = 32;
    int max_groups = 8;
    sde::SdeNetTrainConfig train;
    bool baselines = true;
    std::size_t grid_steps = 200000;
    std::size_t profile_steps = 0;  // > 0: profile this many SDE-Net training steps per op, then exit
    std::size_t time_steps = 0;     // > 0: CPU time of this many steps, split by phase, then exit
    std::size_t time_eval_images = 500;
    std::string stage = "all";  // all, sdenet (train SDE-Net only), baselines (train the baselines only)
    std::string checkpoints;    // "" = <out>/checkpoints
};

// The SDE-Net of these settings (every run of this program builds it the same way).
sde::SdeNetConfig net_config(const Settings& s) {
    sde::SdeNetConfig mc;
    mc.width = s.width;
    mc.max_groups = s.max_groups;
    return mc;
}

data::Dataset noise_set(const std::string& kind, std::size_t n, data::MeanStd st, std::uint64_t seed) {
    data::Dataset d;
    d.n = n;
    d.shape = {1, 28, 28};
    d.num_classes = 10;
    d.labels.assign(n, 0);
    d.images.resize(n * 784);
    data::Rng rng(seed, data::Stream::user, kind == "gaussian_noise" ? 11 : 12);
    for (auto& p : d.images) {
        const double v = kind == "gaussian_noise" ? st.mean + st.std * rng.normal() : rng.uniform01();
        p = static_cast<float>(std::clamp(v, 0.0, 1.0));
    }
    return d;
}

json metrics_json(const std::vector<double>& in, const std::vector<double>& out, std::size_t grid_steps) {
    const auto e = metrics::ood_metrics(in, out);
    const auto g = metrics::grid_ood_metrics(in, out, grid_steps);
    return {{"n_in", in.size()},
            {"n_out", out.size()},
            {"exact",
             {{"tnr_at_95_tpr", e.tnr_at_95_tpr},
              {"auroc", e.auroc},
              {"detection_accuracy", e.detection_accuracy},
              {"aupr_in", e.aupr_in},
              {"aupr_out", e.aupr_out}}},
            {"grid",
             {{"tnr_at_95_tpr", g.tnr_at_95_tpr},
              {"auroc", g.auroc},
              {"detection_accuracy", g.detection_accuracy},
              {"aupr_in", g.aupr_in},
              {"aupr_out", g.aupr_out},
              {"thresholds", g.thresholds}}}};
}

// One method's outputs on every evaluation set: probabilities (for the max-prob score and the
// predictions) and, optionally, a score to use instead of the max probability.
struct MethodOutputs {
    std::string method, score;
    std::vector<std::vector<double>> probs;   // per set [n x 10]
    std::vector<std::vector<double>> scores;  // per set [n], higher = in-distribution
};

std::vector<double> neg(std::vector<double> v) {
    for (auto& x : v) x = -x;
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"sdenet_mnist: SDE-Net on MNIST / Fashion-MNIST, OOD and misclassification detection"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/sdenet_mnist");
    Settings s;
    baselines::Settings bs;
    auto* o_ds = app.add_option("--dataset", s.dataset, "in-distribution data set")
                     ->check(CLI::IsMember({"mnist", "fashion_mnist", "both"}));
    (void)o_ds;
    auto* o_epochs =
        app.add_option("--epochs", s.epochs, "SDE-Net training epochs")->check(CLI::Range(1, 1000));
    auto* o_train = app.add_option("--train-subset", s.train_subset, "training images (0 = all)");
    auto* o_eval = app.add_option("--eval-subset", s.eval_subset, "test images per data set (0 = all)");
    auto* o_noise = app.add_option("--noise-images", s.noise_images, "images per noise OOD set")
                        ->check(CLI::Range(1, 1000000));
    app.add_option("--passes", s.passes, "stochastic passes averaged at evaluation")
        ->check(CLI::Range(1, 1000));
    app.add_option("--sigma-eval", s.sigma_eval, "evaluation sigmas (the first is the reference's)")
        ->check(CLI::NonNegativeNumber);
    auto* o_width = app.add_option("--width", s.width, "SDE-Net channels")->check(CLI::Range(1, 512));
    auto* o_groups = app.add_option("--max-groups", s.max_groups, "SDE-Net GroupNorm groups min(max, width)")
                         ->check(CLI::Range(1, 512));
    app.add_option("--batch", s.batch, "batch size")->check(CLI::Range(1, 100000));
    app.add_option("--lr", s.train.lr, "classifier SGD learning rate")->check(CLI::PositiveNumber);
    app.add_option("--lr-diffusion", s.train.lr_diffusion, "diffusion SGD learning rate")
        ->check(CLI::PositiveNumber);
    auto* o_ms = app.add_option("--milestones", s.train.milestones,
                                "0-based epochs after which the classifier lr is multiplied by --gamma "
                                "(default: the reference's 10 20 30)");
    app.add_option("--milestones-diffusion", s.train.milestones_diffusion,
                   "same for the diffusion (default: the reference's 15 30)");
    app.add_option("--gamma", s.train.gamma, "learning-rate decay factor")->check(CLI::PositiveNumber);
    app.add_option("--momentum", s.train.momentum, "SGD momentum")->check(CLI::Range(0.0, 1.0));
    app.add_option("--weight-decay", s.train.weight_decay, "SGD weight decay")->check(CLI::NonNegativeNumber);
    app.add_option("--sigma-train", s.train.sigma_train, "sigma of the training pass")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--ood-noise-std", s.train.ood_noise_std, "pseudo-OOD noise std")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--grid-steps", s.grid_steps, "threshold grid of the reference metrics")
        ->check(CLI::Range(1, 10000000));
    app.add_flag("!--no-baselines", s.baselines, "skip the mnist_baselines networks");
    app.add_option("--stage", s.stage,
                   "all: train (resuming from the checkpoints), evaluate and write the results; sdenet or "
                   "baselines: only train that part to its checkpoints and exit, writing no results (run the "
                   "two in parallel with the same flags and --checkpoints, then the same command with --stage "
                   "all evaluates)")
        ->check(CLI::IsMember({"all", "sdenet", "baselines"}));
    app.add_option("--checkpoints", s.checkpoints,
                   "directory of the training checkpoints (default: <out>/checkpoints)");
    app.add_option("--profile-steps", s.profile_steps,
                   "time this many SDE-Net training steps per op (autodiff/profile.hpp) on the first data "
                   "set's training images, print the table and exit; writes nothing")
        ->check(CLI::Range(1, 100000));
    app.add_option("--time-steps", s.time_steps,
                   "CPU time of this many SDE-Net training steps at this configuration, split into the "
                   "classifier step (cross-entropy pass, backward, SGD) and the diffusion step (in-batch and "
                   "pseudo-OOD passes, backward, SGD), then of the evaluation (--passes passes at the first "
                   "--sigma-eval, and the diffusion score) on --time-eval-images test images; prints the "
                   "full-mode estimate and exits; writes nothing")
        ->check(CLI::Range(1, 100000));
    app.add_option("--time-eval-images", s.time_eval_images, "test images of the --time-steps evaluation")
        ->check(CLI::Range(1, 100000));
    auto* o_bepochs =
        app.add_option("--baseline-epochs", bs.epochs, "baseline epochs")->check(CLI::Range(1, 1000));
    auto* o_bwidth =
        app.add_option("--baseline-width", bs.width, "baseline conv channels")->check(CLI::Range(1, 512));
    auto* o_bgroups = app.add_option("--baseline-groups", bs.groups, "baseline GroupNorm groups")
                          ->check(CLI::Range(1, 512));
    auto* o_bblocks =
        app.add_option("--baseline-blocks", bs.blocks, "baseline residual blocks")->check(CLI::Range(0, 32));
    app.add_option("--ensemble", bs.ensemble, "ensemble members")->check(CLI::Range(1, 50));
    app.add_option("--mc-samples", bs.mc_samples, "MC dropout samples")->check(CLI::Range(1, 1000));
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {  // the reference: 40 epochs on all 60,000 images, all test images
        if (!o_epochs->count()) s.epochs = 40;
        if (!o_train->count()) s.train_subset = 0;
        if (!o_eval->count()) s.eval_subset = 0;
        if (!o_noise->count()) s.noise_images = 10000;
        if (!o_width->count()) s.width = 64;
        if (!o_groups->count()) s.max_groups = 32;
        // mnist_baselines' full configuration
        if (!o_bepochs->count()) bs.epochs = 20;
        if (!o_bwidth->count()) bs.width = 64;
        if (!o_bgroups->count()) bs.groups = 32;
        if (!o_bblocks->count()) bs.blocks = 2;
        bs.lr = 1e-3;
    }
    // The reference's schedule in absolute epochs (a short run is the reference's first epochs, at the
    // reference's learning rates), not compressed.
    (void)o_ms;
    if (s.sigma_eval.empty()) {
        std::fprintf(stderr, "sdenet_mnist: --sigma-eval needs at least one value\n");
        return 2;
    }
    if (bs.width % bs.groups != 0) {
        std::fprintf(stderr, "sdenet_mnist: --baseline-groups %d must divide --baseline-width %lld\n",
                     bs.groups, static_cast<long long>(bs.width));
        return 2;
    }
    if (s.stage == "baselines" && !s.baselines) {
        std::fprintf(stderr, "sdenet_mnist: --stage baselines contradicts --no-baselines\n");
        return 2;
    }
    if (s.stage != "all" && (s.time_steps > 0 || s.profile_steps > 0)) {
        std::fprintf(stderr, "sdenet_mnist: --stage %s trains; it cannot be combined with --time-steps or "
                     "--profile-steps\n", s.stage.c_str());
        return 2;
    }
    if (const auto err = study::sdenet_groups_error(s.width, s.max_groups, "--width", "--max-groups");
        !err.empty()) {
        std::fprintf(stderr, "sdenet_mnist: %s\n", err.c_str());
        return 2;
    }
    bs.train_subset = s.train_subset;
    bs.eval_subset = s.eval_subset;
    bs.batch = s.batch;
    // The timing run has its own result directory (and report, reports/sdenet_mnist_timing.md).
    if (s.time_steps > 0 && app.get_option("--out")->count() == 0) args.out = "reports/results/sdenet_mnist_timing";
    experiment::apply_common(args);
    const fs::path data_dir = data::resolve_data_dir(args.data);

    std::vector<std::string> names = s.dataset == "both" ? std::vector<std::string>{"mnist", "fashion_mnist"}
                                                         : std::vector<std::string>{s.dataset};
    struct Sets {
        data::Dataset train, test;
    };
    std::map<std::string, Sets> raw;
    try {
        raw["mnist"] = {data::load_mnist(data_dir, data::Split::train),
                        data::load_mnist(data_dir, data::Split::test)};
        raw["fashion_mnist"] = {data::load_fashion_mnist(data_dir, data::Split::train),
                                data::load_fashion_mnist(data_dir, data::Split::test)};
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sdenet_mnist: %s\n", e.what());
        return 1;
    }

    if (s.time_steps > 0) {
        // CPU time (process, all threads) by phase, after one untimed warm-up step (allocations, thread
        // pool). The steps run on the data set's batches in training order, at epoch 0's learning rates.
        const data::Dataset tr = data::subset(raw[names[0]].train, s.train_subset);
        const data::Dataset te = data::subset(raw[names[0]].test, s.time_eval_images);
        Generator gen(args.seed, 1);
        sde::SdeNet net(net_config(s), gen);
        sde::SdeNetTrainer trainer(net, s.train, args.seed + 1);
        trainer.set_epoch(0);
        data::BatchIterator it(tr.n, s.batch, args.seed + 2, true, true);
        std::vector<std::int32_t> y;
        double cls_cpu = 0, diff_cpu = 0;
        const double w0 = experiment::wall_seconds();
        for (std::size_t k = 0, e = 0; k <= s.time_steps;) {
            auto idx = it.next();
            if (idx.empty()) {
                it.start_epoch(++e);
                continue;
            }
            Tensor x = data::batch_tensor(tr, idx, y);
            const double c0 = experiment::cpu_seconds();
            trainer.step_classifier(x, y);
            const double c1 = experiment::cpu_seconds();
            trainer.step_diffusion(x);
            const double c2 = experiment::cpu_seconds();
            if (k > 0) {  // step 0 is the warm-up
                cls_cpu += c1 - c0;
                diff_cpu += c2 - c1;
            }
            ++k;
        }
        const double train_wall = experiment::wall_seconds() - w0;
        const Tensor xe = study::all_images(te);
        net.set_sigma(s.sigma_eval[0]);
        const double e0 = experiment::cpu_seconds();
        const auto probs = sde::predict_probs(net, xe, s.passes);
        const double e1 = experiment::cpu_seconds();
        const auto g = sde::diffusion_score(net, xe);
        const double e2 = experiment::cpu_seconds();
        const double n = double(s.time_steps), per_cls = cls_cpu / n, per_diff = diff_cpu / n;
        const double per_eval = (e1 - e0) / double(te.n), per_score = (e2 - e1) / double(te.n);
        const std::size_t full_batches = 60000 / s.batch;
        // The full study per data set: 10,000 test images of each data set and 10,000 of each noise set,
        // each scored at every evaluation sigma, and the diffusion score of all of them.
        const double eval_images = 40000;
        const double epoch_cpu = (per_cls + per_diff) * double(full_batches);
        const double eval_cpu = eval_images * (per_eval * double(s.sigma_eval.size()) + per_score);
        double mean_max_prob = 0, mean_diffusion = 0;
        for (double v : metrics::max_prob(std::span<const double>(probs), 10)) mean_max_prob += v / double(te.n);
        for (double v : g) mean_diffusion += v / double(te.n);
        std::printf("SDE-Net width %lld, %d groups, batch %zu, %zu timed steps (threads %d), CPU seconds:\n",
                    static_cast<long long>(s.width), s.max_groups, s.batch, s.time_steps, args.threads);
        std::printf("  classifier step (CE pass at sigma %g, backward, SGD): %.3f s/step (%.1f%%)\n",
                    s.train.sigma_train, per_cls, 100 * per_cls / (per_cls + per_diff));
        std::printf("  diffusion step (in-batch + pseudo-OOD passes, backward, SGD): %.3f s/step (%.1f%%)\n",
                    per_diff, 100 * per_diff / (per_cls + per_diff));
        std::printf("  training wall %.1f s for %zu steps (warm-up included)\n", train_wall, s.time_steps + 1);
        std::printf("  evaluation, %d passes at sigma %g: %.4f s/image; diffusion score: %.5f s/image (%zu images)\n",
                    s.passes, s.sigma_eval[0], per_eval, per_score, te.n);
        std::printf("  full epoch (%zu batches): %.0f s; %d epochs: %.2f h; evaluation of %.0f images x %zu sigmas "
                    "+ diffusion: %.0f s; per data set %.2f h CPU\n",
                    full_batches, epoch_cpu, s.epochs, epoch_cpu * s.epochs / 3600, eval_images,
                    s.sigma_eval.size(), eval_cpu, (epoch_cpu * s.epochs + eval_cpu) / 3600);
        // results.json: what was timed (and value checksums, which depend on the seed only); run.json: the
        // CPU seconds (they vary with the machine and its load).
        const json tconfig = {{"dataset", names[0]},       {"width", s.width},
                              {"max_groups", s.max_groups}, {"batch", s.batch},
                              {"train_subset", s.train_subset}, {"time_steps", s.time_steps},
                              {"warmup_steps", 1},          {"eval_images", te.n},
                              {"passes", s.passes},         {"sigma_eval", s.sigma_eval},
                              {"sigma_train", s.train.sigma_train}, {"epochs", s.epochs},
                              {"full_batches_per_epoch", full_batches},
                              {"full_eval_images_per_sigma", eval_images}};
        experiment::ResultSet result_set(args.out);
        result_set.json("results.json",
                        json{{"provenance", experiment::provenance("sdenet_mnist", args, tconfig)},
                             {"results",
                              {{"mean_max_prob", mean_max_prob}, {"mean_diffusion", mean_diffusion}}}});
        json run = experiment::run_info(args);
        run["timings"] = {{"cpu_seconds_per_classifier_step", per_cls},
                          {"cpu_seconds_per_diffusion_step", per_diff},
                          {"cpu_seconds_per_eval_image", per_eval},
                          {"cpu_seconds_per_diffusion_score_image", per_score},
                          {"training_wall_seconds", train_wall},
                          {"estimated_cpu_seconds_per_full_epoch", epoch_cpu},
                          {"estimated_cpu_seconds_full_evaluation", eval_cpu}};
        result_set.json("run.json", run);
        result_set.commit();
        return 0;
    }

    if (s.profile_steps > 0) {
        // Where a training step's time goes at this configuration (both optimizer steps, pseudo-OOD pass
        // included), after one unprofiled warm-up step (allocations, thread pool).
        const data::Dataset tr = data::subset(raw[names[0]].train, s.train_subset);
        Generator gen(args.seed, 1);
        sde::SdeNet net(net_config(s), gen);
        sde::SdeNetTrainer trainer(net, s.train, args.seed + 1);
        trainer.train_epoch(tr, 0, s.batch, args.seed + 2, true, 1);
        const double t0 = experiment::wall_seconds();
        std::int64_t steps = 0;
        {
            ProfileScope prof;
            for (std::int64_t e = 1; steps < static_cast<std::int64_t>(s.profile_steps); ++e)
                steps += trainer.train_epoch(tr, e, s.batch, args.seed + 2, true, s.profile_steps - steps).batches;
        }
        const double secs = experiment::wall_seconds() - t0;
        double total = 0, conv = 0;
        for (const auto& r : profile_results()) {
            total += r.forward_us + r.backward_us;
            if (r.op.find("conv") != std::string::npos) conv += r.forward_us + r.backward_us;
        }
        std::printf("%s", profile_table(fmt::format("SDE-Net training, width {}, batch {}, {} steps, totals in us",
                                                    s.width, s.batch, steps))
                              .c_str());
        std::printf("%.3f s per step; ops named conv*: %.1f%% of the profiled time\n", secs / double(steps),
                    total > 0 ? 100.0 * conv / total : 0.0);
        return 0;
    }

    json config = {{"dataset", s.dataset},
                   {"epochs", s.epochs},
                   {"batch", s.batch},
                   {"drop_last", true},
                   {"train_subset", s.train_subset},
                   {"eval_subset", s.eval_subset},
                   {"noise_images", s.noise_images},
                   {"passes", s.passes},
                   {"sigma_eval", s.sigma_eval},
                   {"width", s.width},
                   {"max_groups", s.max_groups},
                   {"lr", s.train.lr},
                   {"lr_diffusion", s.train.lr_diffusion},
                   {"milestones", s.train.milestones},
                   {"milestones_diffusion", s.train.milestones_diffusion},
                   {"gamma", s.train.gamma},
                   {"momentum", s.train.momentum},
                   {"weight_decay", s.train.weight_decay},
                   {"sigma_train", s.train.sigma_train},
                   {"ood_noise_std", s.train.ood_noise_std},
                   {"grid_steps", s.grid_steps},
                   {"baselines", s.baselines}};
    if (s.baselines)
        config["baseline"] = {
            {"epochs", bs.epochs},     {"lr", bs.lr},
            {"optimizer", "adam"},     {"width", bs.width},
            {"groups", bs.groups},     {"residual_blocks", bs.blocks},
            {"dropout", bs.dropout},   {"mc_samples", bs.mc_samples},
            {"ensemble", bs.ensemble}, {"input", "standardised with the in-distribution set's constants"}};
    const fs::path ckpt_dir = s.checkpoints.empty() ? fs::path(args.out) / "checkpoints" : fs::path(s.checkpoints);
    fs::create_directories(ckpt_dir);
    const bool train_sdenet = s.stage != "baselines", train_baselines = s.baselines && s.stage != "sdenet";
    const bool evaluate = s.stage == "all";
    json results, timings;
    const std::int64_t total = static_cast<std::int64_t>(names.size()) *
                               ((train_sdenet ? s.epochs : 0) + (train_baselines ? bs.epochs * (bs.ensemble + 1) : 0));
    experiment::Progress bar("sdenet_mnist", total);
    std::int64_t done = 0;

    for (std::size_t d = 0; d < names.size(); ++d) {
        const std::string& in_name = names[d];
        const std::string other_name = in_name == "mnist" ? "fashion_mnist" : "mnist";
        const data::Dataset tr = data::subset(raw[in_name].train, s.train_subset);
        const data::MeanStd px = data::pixel_mean_std(tr);
        const std::uint64_t dseed = args.seed * 7919 + 1000 * (in_name == "mnist" ? 1 : 2);
        // Evaluation sets in pixel space: [0] in-distribution test, then the OOD sets.
        std::vector<std::pair<std::string, data::Dataset>> sets = {
            {in_name, data::subset(raw[in_name].test, s.eval_subset)},
            {other_name, data::subset(raw[other_name].test, s.eval_subset)},
            {"gaussian_noise", noise_set("gaussian_noise", s.noise_images, px, dseed)},
            {"uniform_noise", noise_set("uniform_noise", s.noise_images, px, dseed)}};
        const auto& test = sets[0].second;
        std::vector<MethodOutputs> methods;
        json tim;

        // ---- SDE-Net
        if (train_sdenet) {
            Generator gen(dseed, 1);
            sde::SdeNet net(net_config(s), gen);
            sde::SdeNetTrainer trainer(net, s.train, dseed + 1);
            const std::string ckpt =
                (ckpt_dir / (in_name + "_sdenet.ckpt")).string();
            const std::string key = config.dump() + fmt::format("|seed={}|in={}", args.seed, in_name);
            const std::int64_t done0 = done;  // e is the absolute epoch, resumed ones included
            const auto run = study::train_sdenet_epochs(
                net, trainer, tr, s.epochs, s.batch, dseed + 2, /*drop_last=*/true, ckpt, key, args.resume,
                [&](int e, const sde::SdeNetEpochStats& st) {
                    bar.update(done0 + e + 1,
                               fmt::format("{} SDE-Net epoch {} CE {:.3f}", in_name, e + 1, st.mean.task_loss));
                });
            done = done0 + s.epochs;
            if (!evaluate) continue;  // --stage sdenet: trained to its checkpoint
            const std::vector<double>& secs = run.epoch_seconds;
            const json& losses = run.losses;
            const double t0 = experiment::wall_seconds();
            std::vector<Tensor> xs;
            for (auto& [n, ds] : sets) xs.push_back(study::all_images(ds));
            for (double sigma : s.sigma_eval) {
                net.set_sigma(sigma);
                MethodOutputs m{fmt::format("sdenet_sigma{}", sigma), "max_prob", {}, {}};
                for (auto& x : xs) {
                    m.probs.push_back(sde::predict_probs(net, x, s.passes));
                    m.scores.push_back(metrics::max_prob(std::span<const double>(m.probs.back()), 10));
                }
                methods.push_back(std::move(m));
            }
            MethodOutputs md{"sdenet", "diffusion", methods[0].probs, {}};  // predictions at the first sigma
            for (auto& x : xs) md.scores.push_back(neg(sde::diffusion_score(net, x)));
            methods.push_back(std::move(md));
            tim["sdenet"] = {
                {"seconds_per_epoch", secs},
                {"batches_per_epoch", tr.n / s.batch},
                {"seconds_per_batch",
                 secs.empty() ? 0.0 : secs.back() / double(std::max<std::size_t>(1, tr.n / s.batch))},
                {"evaluation_seconds", experiment::wall_seconds() - t0}};
            if (!secs.empty())
                tim["sdenet"]["estimated_seconds_per_full_epoch"] =
                    secs.back() / double(std::max<std::size_t>(1, tr.n / s.batch)) * double(60000 / s.batch);
            results[in_name]["sdenet_training"] = losses;
        }

        // ---- baselines (mnist_baselines' networks and code; standardised inputs as there)
        if (train_baselines) {
            const data::MeanStd st = in_name == "mnist" ? data::mnist_stats : data::fashion_mnist_stats;
            data::Dataset btr = tr;
            data::normalize(btr, st);
            std::vector<data::Dataset> bsets;
            for (auto& [n, ds] : sets) {
                bsets.push_back(ds);
                data::normalize(bsets.back(), st);
            }
            auto ck = [&](const std::string& m) {
                return (ckpt_dir / (in_name + "_" + m + ".ckpt")).string();
            };
            // What each baseline checkpoint belongs to (nn::checkpoint_to_resume).
            const json train_files = nn::file_identity(in_name == "mnist"
                                                           ? data::mnist_files(data_dir, data::Split::train)
                                                           : data::fashion_mnist_files(data_dir, data::Split::train));
            auto key = [&](const std::string& slot) {
                return json{{"experiment", "sdenet_mnist"}, {"config", config}, {"seed", args.seed},
                            {"dataset", in_name}, {"data_files", train_files}, {"slot", slot}};
            };
            MethodOutputs det{"deterministic", "max_prob", {}, {}}, ens{"deep_ensemble", "max_prob", {}, {}},
                mcd{"mc_dropout", "max_prob", {}, {}};
            for (auto& b : bsets) ens.probs.push_back(std::vector<double>(b.n * 10, 0.0));
            std::vector<double> det_secs;
            for (int k = 0; k < bs.ensemble; ++k) {
                auto r = baselines::train(btr, 0.0, dseed * 31 + static_cast<std::uint64_t>(k), bs,
                                          ck("member" + std::to_string(k)), key("member" + std::to_string(k)),
                                          args.resume, bar, done);
                if (k == 0) det_secs = r.epoch_seconds;
                if (!evaluate) continue;  // --stage baselines: trained to its checkpoint
                for (std::size_t j = 0; j < bsets.size(); ++j) {
                    auto p = baselines::predict(*r.model, bsets[j], 0);
                    for (std::size_t i = 0; i < p.size(); ++i) ens.probs[j][i] += p[i] / bs.ensemble;
                    if (k == 0) det.probs.push_back(std::move(p));
                }
            }
            auto r = baselines::train(btr, bs.dropout, dseed * 31 + 99, bs, ck("dropout"), key("dropout"), args.resume,
                                      bar, done);
            if (!evaluate) continue;
            for (auto& b : bsets) mcd.probs.push_back(baselines::predict(*r.model, b, bs.mc_samples));
            for (auto* m : {&det, &mcd, &ens}) {
                for (auto& p : m->probs)
                    m->scores.push_back(metrics::max_prob(std::span<const double>(p), 10));
                methods.push_back(std::move(*m));
            }
            tim["baselines"] = {{"deterministic_seconds_per_epoch", det_secs},
                                {"mc_dropout_seconds_per_epoch", r.epoch_seconds}};
        }

        // ---- metrics
        json res;
        for (auto& m : methods) {
            const std::string key = m.method + "/" + m.score;
            const auto& p = m.probs[0];
            json cls = {{"accuracy", metrics::accuracy(std::span<const double>(p), test.labels, 10)},
                        {"nll", metrics::nll(std::span<const double>(p), test.labels, 10)},
                        {"brier", metrics::brier(std::span<const double>(p), test.labels, 10)},
                        {"ece_15", metrics::ece(std::span<const double>(p), test.labels, 10, 15)}};
            res["classification"][key] = cls;
            for (std::size_t j = 1; j < sets.size(); ++j)
                res["ood"][sets[j].first][key] = metrics_json(m.scores[0], m.scores[j], s.grid_steps);
            const auto pred = metrics::argmax(std::span<const double>(p), 10);
            std::vector<double> right, wrong;
            for (std::size_t i = 0; i < test.n; ++i)
                (pred[i] == test.labels[i] ? right : wrong).push_back(m.scores[0][i]);
            if (!right.empty() && !wrong.empty())
                res["misclassification"][key] = metrics_json(right, wrong, s.grid_steps);
            else
                res["misclassification"][key] = {{"n_in", right.size()},
                                                 {"n_out", wrong.size()},
                                                 {"note", "undefined: no correct or no wrong predictions"}};
        }
        results[in_name]["metrics"] = res;
        timings[in_name] = tim;
    }
    bar.finish();
    if (!evaluate) {
        std::printf("sdenet_mnist: --stage %s: trained to the checkpoints in %s; the same command with --stage all "
                    "evaluates and writes the results\n", s.stage.c_str(), ckpt_dir.string().c_str());
        return 0;
    }

    // CSV: one row per (in set, task, method/score, definition).
    std::vector<std::vector<std::string>> rows;
    const std::vector<std::string> cols = {"tnr_at_95_tpr", "auroc", "detection_accuracy", "aupr_in",
                                           "aupr_out"};
    for (auto& [in_name, r] : results.items()) {
        const json& res = r["metrics"];
        auto emit = [&](const std::string& task, const json& by_method) {
            for (auto& [key, mj] : by_method.items())
                for (const char* def : {"exact", "grid"}) {
                    if (!mj.contains(def)) continue;
                    std::vector<std::string> row = {in_name, task, key, def};
                    for (auto& c : cols) row.push_back(experiment::num(mj[def][c].get<double>()));
                    rows.push_back(row);
                }
        };
        for (auto& [set, by_method] : res["ood"].items()) emit("ood:" + set, by_method);
        emit("misclassification", res["misclassification"]);
    }
    std::vector<std::string> header = {"in_dataset", "task", "method/score", "definition"};
    header.insert(header.end(), cols.begin(), cols.end());
    experiment::ResultSet result_set(args.out);
    result_set.csv("results.csv", header, rows);
    json out = {{"provenance", experiment::provenance("sdenet_mnist", args, config)}, {"results", results}};
    result_set.json("results.json", out);
    json run = experiment::run_info(args);
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.csv, results.json, run.json as one set
    for (auto& [in_name, r] : results.items()) {
        for (auto& [key, c] : r["metrics"]["classification"].items()) {
            std::string line =
                fmt::format("{:14} {:28} acc {:.4f}", in_name, key, c["accuracy"].get<double>());
            for (auto& [set, bm] : r["metrics"]["ood"].items())
                line += fmt::format("  {} AUROC {:.4f}", set, bm[key]["exact"]["auroc"].get<double>());
            std::printf("%s\n", line.c_str());
        }
    }
    return 0;
}
