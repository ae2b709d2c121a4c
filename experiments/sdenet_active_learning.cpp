// sdenet_active_learning: SDE-Net's fourth study (Kong et al. 2020, Section 5.4), active learning on MNIST.
//
// Pool-based active learning (nn/active_learning.hpp): a balanced start set (--initial-per-class images
// of every class, 20 by default), a pool of unlabelled MNIST training images, and --rounds rounds that label
// --acquire images each. After every acquisition the model is retrained from scratch on the labelled set
// (--train-steps gradient steps, batch min(--batch, labelled)) and its test accuracy recorded. Methods:
//   random            the baseline conv net of mnist_baselines, random acquisition
//   entropy           the baseline conv net, maximum predictive entropy of its softmax
//   sdenet_diffusion  SDE-Net, maximum diffusion g(h0(x)) (the paper's epistemic score)
//   sdenet_random     SDE-Net, random acquisition (the control that separates the model from the score)
// Curves of test accuracy against labelled-set size, mean +- std (ddof 1) over --seeds seeds. SDE-Net's
// accuracy is the averaged softmax over --eval-passes passes at sigma_train (1) and at 500 (the
// reference's evaluation sigma), and of the drift alone (sigma 0); all three are reported.
// SDE-Net is trained with the reference's two SGD optimizers but at sigma 1 (not 20), with a diffusion
// learning rate of 0.1 (not 0.01) and constant rates: with the reference's sigma and rates the noise of the
// training pass keeps the classifier at chance within a round's steps (measured; see main()).
//
// Within one seed every method starts from the same labelled set and every round's model from the same
// initial weights (seeded by seed and round, not by method), so the methods differ only in what they
// acquire. Each (seed, method) run checkpoints its labelled list and accuracies after every round
// (out/checkpoints/); a killed run resumes after the last finished round. --part I/N runs only every N-th
// (seed, method) run from the I-th on (the order: seeds, then --methods) to its checkpoints and exits,
// writing no results, so that N processes with the same flags share the work; the same command without
// --part then resumes every finished run from the checkpoints and writes the results.
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>

#include "experiments/common.hpp"
#include "experiments/mnist_study.hpp"
#include "nn/active_learning.hpp"
#include "nn/metrics.hpp"

using namespace sdeuq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
    int seeds = 2;
    int rounds = 4;
    std::size_t acquire = 10;
    std::size_t initial_per_class = 2;
    std::size_t pool = 1000;        // pool universe: the first this many training images (0 = all 60,000)
    std::size_t candidates = 0;     // scored per round: a random subsample of the pool (0 = whole pool)
    std::size_t test_subset = 500;  // test images (0 = all 10,000)
    int train_steps = 200;
    std::size_t batch = 32;
    study::ConvSettings conv;
    study::SdeNetSettings sdenet;
    int eval_passes = 5;
    std::vector<std::string> methods = {"random", "entropy", "sdenet_diffusion", "sdenet_random"};
    std::vector<int> part;  // {I, N}: this process runs (seed, method) runs I, I + N, ...; empty: all
};

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t tag) {
    Generator g = Generator(seed, 0xac71'7e00).fork(tag);
    const std::uint64_t hi = g(), lo = g();
    return (hi << 32) | lo;
}

bool is_sdenet(const std::string& m) { return m.rfind("sdenet", 0) == 0; }

// Epochs over n labelled images that give at least `steps` batches of min(batch, n).
int epochs_for(std::size_t n, std::size_t batch, int steps) {
    const std::size_t per_epoch = (n + std::min(batch, n) - 1) / std::min(batch, n);
    return static_cast<int>((static_cast<std::size_t>(steps) + per_epoch - 1) / per_epoch);
}

struct RoundModel {
    study::PixelConvNet conv;
    std::unique_ptr<sde::SdeNet> sdenet;
};

}  // namespace

static int run_experiment(int argc, char** argv) {
    CLI::App app{"sdenet_active_learning: random, entropy and SDE-Net diffusion acquisition on MNIST"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/sdenet_active_learning");
    Settings s;
    s.conv.width = 16;
    s.conv.groups = 4;
    s.sdenet.width = 16;
    // The reference's diffusion learning rate 0.01 and its milestones leave g(h0(x)) at its initial 0.5 after
    // 1,000 steps on 20 images (measured: 0.485 on the labelled images, 0.517 on test images), so that
    // the sigma-20 noise of the training pass swamps the classifier (training accuracy 15% after 1,000
    // steps). A 10x larger diffusion rate at constant rates separates them within 300 steps (g 0.0025 on the
    // labelled images, 0.77 on test images; training accuracy 100% at sigma 20).
    s.sdenet.lr_diffusion = 0.1;
    s.sdenet.scale_milestones = false;
    // Even so, sigma 20 keeps the classifier itself at chance for a round's 500 steps at full size: the
    // training pass adds sigma g sqrt(dt) = 10 per step (g starts at 0.5) to a state that GroupNorm keeps at
    // unit scale. Measured at full size (width 32, 500 steps, 320 labelled images: --full --seeds 1
    // --rounds 0 --initial-per-class 32 --methods sdenet_random --test-subset 1000, seed 0), drift-only
    // accuracy on the first 1,000 test images: 88.5% at sigma 0, 86.5% at 1, 54.2% at 5, 19.3% at 20. The full
    // study run at sigma 20 (2026-12-07, 2 of 5 seeds finished before it was stopped) ended at 10-47% drift-only
    // accuracy with 320 labelled images (its mean over the 31 rounds 14-23%), the conv net at 88-93%.
    // Sigma 1 keeps noise in training (at evaluation sigma 500 the same probe gives 85.7%).
    s.sdenet.sigma_train = 1.0;
    auto* o_seeds = app.add_option("--seeds", s.seeds, "seeds (runs per method)")->check(CLI::Range(1, 100));
    auto* o_rounds = app.add_option("--rounds", s.rounds, "acquisition rounds")->check(CLI::Range(0, 10000));
    app.add_option("--acquire", s.acquire, "images labelled per round")->check(CLI::Range(1, 10000));
    app.add_option("--initial-per-class", s.initial_per_class, "start set: images per class")->check(CLI::Range(1, 1000));
    auto* o_pool = app.add_option("--pool", s.pool, "pool: the first N training images (0 = all 60,000)");
    auto* o_cand = app.add_option("--candidates", s.candidates, "pool images scored per round (0 = the whole pool)");
    auto* o_test = app.add_option("--test-subset", s.test_subset, "test images (0 = all 10,000)");
    auto* o_steps = app.add_option("--train-steps", s.train_steps, "gradient steps per round (retrained from scratch)")
                        ->check(CLI::Range(1, 1000000));
    app.add_option("--batch", s.batch, "batch size (capped at the labelled-set size)")->check(CLI::Range(1, 4096));
    auto* o_width = app.add_option("--width", s.conv.width, "baseline conv channels")->check(CLI::Range(1, 512));
    auto* o_groups = app.add_option("--groups", s.conv.groups, "baseline GroupNorm groups (must divide --width)")
                         ->check(CLI::Range(1, 512));
    app.add_option("--blocks", s.conv.blocks, "baseline residual conv blocks")->check(CLI::Range(0, 32));
    auto* o_swidth = app.add_option("--sdenet-width", s.sdenet.width, "SDE-Net state channels")->check(CLI::Range(2, 512));
    auto* o_sgroups = app.add_option("--sdenet-groups", s.sdenet.max_groups,
                                     "SDE-Net GroupNorm groups min(this, width), >= 2 channels per group")
                          ->check(CLI::Range(1, 512));
    app.add_option("--sigma-train", s.sdenet.sigma_train, "SDE-Net's sigma in training")->check(CLI::NonNegativeNumber);
    app.add_option("--sdenet-lr", s.sdenet.lr, "SDE-Net classifier SGD learning rate")->check(CLI::PositiveNumber);
    app.add_option("--sdenet-lr-diffusion", s.sdenet.lr_diffusion, "SDE-Net diffusion SGD learning rate")
        ->check(CLI::PositiveNumber);
    app.add_flag("!--no-milestones", s.sdenet.scale_milestones,
                 "SDE-Net: constant learning rates instead of the reference's milestones scaled to the steps");
    app.add_option("--eval-passes", s.eval_passes, "SDE-Net predictive passes")->check(CLI::Range(1, 1000));
    app.add_option("--methods", s.methods, "methods")
        ->check(CLI::IsMember({"random", "entropy", "sdenet_diffusion", "sdenet_random"}));
    app.add_option("--part", s.part,
                   "I/N: train only the (seed, method) runs I, I + N, I + 2N, ... (0-based, seeds then methods) "
                   "to their checkpoints and exit without results; the same command without --part then "
                   "writes the results from the N parts' checkpoints")
        ->delimiter('/')
        ->expected(2);
    SDEUQ_PARSE(app, argc, argv);
    if (!s.part.empty() && (s.part[1] < 1 || s.part[0] < 0 || s.part[0] >= s.part[1])) {
        std::fprintf(stderr, "sdenet_active_learning: --part %d/%d: I/N needs N >= 1 and 0 <= I < N\n", s.part[0],
                     s.part[1]);
        return 2;
    }
    if (!args.quick) {  // Gal et al. 2017's scale: the full pool, 2,000 random candidates per round
        if (!o_seeds->count()) s.seeds = 5;
        if (!o_rounds->count()) s.rounds = 30;
        if (!o_pool->count()) s.pool = 0;
        if (!o_cand->count()) s.candidates = 2000;
        if (!o_test->count()) s.test_subset = 0;
        if (!o_steps->count()) s.train_steps = 500;
        if (!o_width->count()) s.conv.width = 32;
        if (!o_groups->count()) s.conv.groups = 8;
        if (!o_swidth->count()) s.sdenet.width = 32;
        if (!o_sgroups->count()) s.sdenet.max_groups = 8;
    }
    if (const auto err = study::sdenet_groups_error(s.sdenet.width, s.sdenet.max_groups, "--sdenet-width",
                                                    "--sdenet-groups");
        !err.empty()) {
        std::fprintf(stderr, "sdenet_active_learning: %s\n", err.c_str());
        return 2;
    }
    if (s.conv.width % s.conv.groups != 0) {
        std::fprintf(stderr, "sdenet_active_learning: --groups %d must divide --width %lld\n", s.conv.groups,
                     static_cast<long long>(s.conv.width));
        return 2;
    }
    s.sdenet.batch = s.batch;
    s.sdenet.sigma_eval = s.sdenet.sigma_train;
    experiment::apply_common(args);
    data::Dataset train, test;
    try {
        const fs::path dir = data::resolve_data_dir(args.data);
        train = data::load_mnist(dir, data::Split::train);
        test = data::load_mnist(dir, data::Split::test);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sdenet_active_learning: %s\n", e.what());
        return 1;
    }
    const std::size_t n_pool = s.pool == 0 ? train.n : std::min(s.pool, train.n);
    const auto universe = study::first_n(n_pool);
    const Tensor x_all = study::images(train, universe);
    const auto y_all = study::labels(train, universe);
    const auto test_idx = study::first_n(s.test_subset == 0 ? test.n : std::min(s.test_subset, test.n));
    const Tensor x_test = study::images(test, test_idx);
    const auto y_test = study::labels(test, test_idx);
    // SDE-Net's accuracy is read at its training sigma ("accuracy"), at the reference's evaluation sigma 500
    // and at sigma 0 (the drift alone: what its classifier has learnt, without the diffusion's noise).
    const std::vector<std::pair<std::string, double>> sigmas = {
        {"accuracy", s.sdenet.sigma_train}, {"accuracy_sigma500", 500.0}, {"accuracy_sigma0", 0.0}};
    std::vector<double> sigma_values;
    for (auto& [k, v] : sigmas) sigma_values.push_back(v);

    json config = {{"seeds", s.seeds},
                   {"rounds", s.rounds},
                   {"acquire", s.acquire},
                   {"initial_per_class", s.initial_per_class},
                   {"pool", n_pool},
                   {"candidates", s.candidates},
                   {"test_subset", test_idx.size()},
                   {"train_steps", s.train_steps},
                   {"batch", s.batch},
                   {"baseline", s.conv.json()},
                   {"sdenet", s.sdenet.json()},
                   {"sdenet_eval_sigmas", sigma_values},
                   {"eval_passes", s.eval_passes},
                   {"methods", s.methods}};
    config["baseline"].erase("epochs");
    config["sdenet"].erase("epochs");
    config["sdenet"].erase("sigma_eval");
    const std::string key = config.dump();
    const fs::path ck_dir = fs::path(args.out) / "checkpoints";
    fs::create_directories(ck_dir);

    json runs;   // runs[method][seed] = {labelled_size, accuracy[, accuracy_sigma500, accuracy_sigma0], ...}
    json timings;
    // Whether this process does run (seed k, method index mi): all of them unless --part.
    auto mine = [&](int k, std::size_t mi) {
        const std::size_t run = static_cast<std::size_t>(k) * s.methods.size() + mi;
        return s.part.empty() || run % static_cast<std::size_t>(s.part[1]) == static_cast<std::size_t>(s.part[0]);
    };
    std::int64_t n_runs = 0;
    for (int k = 0; k < s.seeds; ++k)
        for (std::size_t mi = 0; mi < s.methods.size(); ++mi) n_runs += mine(k, mi) ? 1 : 0;
    experiment::Progress bar("sdenet_active_learning", n_runs * (s.rounds + 1));
    std::int64_t done = 0;
    for (int k = 0; k < s.seeds; ++k) {
        const std::uint64_t seed_k = derive_seed(args.seed, static_cast<std::uint64_t>(k));
        for (std::size_t mi = 0; mi < s.methods.size(); ++mi) {
            if (!mine(k, mi)) continue;
            const std::string& method = s.methods[mi];
            const bool sdenet = is_sdenet(method);
            nn::ActiveLearner learner(y_all, 10,
                                      {.initial_per_class = s.initial_per_class, .acquire = s.acquire,
                                       .candidates = s.candidates},
                                      seed_k, universe);
            json run = {{"accuracy", json::array()}, {"labelled_size", json::array()}};
            if (sdenet)
                for (std::size_t si = 1; si < sigmas.size(); ++si) run[sigmas[si].first] = json::array();
            const std::string part = (ck_dir / fmt::format("{}_seed{}.json", method, k)).string();
            json run_seconds = json::array();  // this run's seconds per round (kept in the checkpoint)
            if (args.resume && fs::exists(part)) {
                std::ifstream in(part);
                json saved = json::parse(in);
                if (saved.value("config", "") == key) {
                    run = saved["run"];
                    run_seconds = saved.value("seconds", json::array());
                    learner.restore(saved["labelled"].get<std::vector<std::size_t>>(), saved["rounds"].get<int>());
                    done += static_cast<std::int64_t>(run["accuracy"].size());
                }
            }
            for (int r = static_cast<int>(run["accuracy"].size()); r <= s.rounds; ++r) {
                const double t0 = experiment::wall_seconds();
                const auto& lab = learner.labelled();
                const Tensor x_lab = study::images(train, lab);
                const auto y_lab = study::labels(train, lab);
                const std::uint64_t model_seed = derive_seed(seed_k, 1000 + static_cast<std::uint64_t>(r));
                RoundModel m;
                if (sdenet) {
                    study::SdeNetSettings ss = s.sdenet;
                    ss.epochs = epochs_for(lab.size(), s.batch, s.train_steps);
                    m.sdenet = study::train_sdenet(x_lab, y_lab, model_seed, ss, "", "", false, nullptr);
                    for (auto& [acc_key, sigma] : sigmas) {
                        m.sdenet->set_sigma(sigma);
                        const auto p = sde::predict_probs(*m.sdenet, x_test, sigma == 0.0 ? 1 : s.eval_passes);
                        run[acc_key].push_back(metrics::accuracy(std::span<const double>(p), y_test, 10));
                    }
                    m.sdenet->set_sigma(s.sdenet.sigma_train);
                } else {
                    study::ConvSettings cs = s.conv;
                    cs.epochs = epochs_for(lab.size(), s.batch, s.train_steps);
                    cs.batch = s.batch;
                    m.conv = study::train_convnet(x_lab, y_lab, 0.0, model_seed, cs, "", "", false, nullptr);
                    const auto p = study::pass_probs([&](const Var& v) { return m.conv.forward(v); }, x_test, 1)[0];
                    run["accuracy"].push_back(metrics::accuracy(std::span<const double>(p), y_test, 10));
                }
                run["labelled_size"].push_back(lab.size());
                if (r < s.rounds) {
                    // Candidates are dataset indices into `train`; the pool universe is its first n_pool.
                    auto score_images = [&](std::span<const std::size_t> c) { return study::images(train, c); };
                    std::unique_ptr<nn::Acquisition> acq;
                    if (method == "random" || method == "sdenet_random") {
                        acq = std::make_unique<nn::RandomAcquisition>();
                    } else if (method == "entropy") {
                        acq = nn::entropy_acquisition(
                            [&](std::span<const std::size_t> c) {
                                return study::pass_probs([&](const Var& v) { return m.conv.forward(v); },
                                                         score_images(c), 1)[0];
                            },
                            10);
                    } else {
                        acq = nn::epistemic_acquisition(
                            [&](std::span<const std::size_t> c) { return sde::diffusion_score(*m.sdenet, score_images(c)); },
                            "sdenet_diffusion");
                    }
                    learner.acquire(*acq);
                }
                run_seconds.push_back(experiment::wall_seconds() - t0);
                experiment::write_json(part, json{{"config", key},
                                                  {"run", run},
                                                  {"labelled", learner.labelled()},
                                                  {"rounds", learner.rounds_done()},
                                                  {"seconds", run_seconds}});
                bar.update(++done, fmt::format("{} seed {} round {}", method, k, r));
            }
            for (auto& sec : run_seconds) timings[method].push_back(sec);
            // The classes of the acquired images (after the start set): what each score goes after.
            std::vector<int> counts(10, 0);
            const auto& lab = learner.labelled();
            for (std::size_t i = s.initial_per_class * 10; i < lab.size(); ++i) ++counts[static_cast<std::size_t>(train.labels[lab[i]])];
            run["acquired_class_counts"] = counts;
            runs[method].push_back(run);
        }
    }
    bar.finish();
    if (!s.part.empty()) {
        std::printf("sdenet_active_learning: --part %d/%d: %lld runs trained to the checkpoints in %s; the same "
                    "command without --part writes the results\n",
                    s.part[0], s.part[1], static_cast<long long>(n_runs), ck_dir.string().c_str());
        return 0;
    }

    // Mean +- std over seeds per labelled-set size.
    json curves;
    std::vector<std::vector<std::string>> rows;
    for (const std::string& method : s.methods) {
        for (auto& [acc_key, sigma] : sigmas) {
            if (!runs[method][0].contains(acc_key)) continue;
            json c = {{"labelled_size", runs[method][0]["labelled_size"]}, {"mean", json::array()},
                      {"std", json::array()}};
            for (int r = 0; r <= s.rounds; ++r) {
                std::vector<double> v;
                for (auto& run : runs[method]) v.push_back(run[acc_key][static_cast<std::size_t>(r)].get<double>());
                c["mean"].push_back(metrics::mean(v));
                c["std"].push_back(v.size() > 1 ? metrics::stddev(v, 1) : 0.0);
            }
            curves[acc_key == "accuracy" ? method : method + acc_key.substr(8)] = c;
        }
        for (std::size_t k = 0; k < runs[method].size(); ++k) {
            const json& run = runs[method][k];
            for (int r = 0; r <= s.rounds; ++r) {
                const auto ri = static_cast<std::size_t>(r);
                rows.push_back({method, std::to_string(k), std::to_string(r),
                                std::to_string(run["labelled_size"][ri].get<std::size_t>()),
                                experiment::num(run["accuracy"][ri].get<double>()),
                                run.contains("accuracy_sigma500") ? experiment::num(run["accuracy_sigma500"][ri].get<double>()) : "",
                                run.contains("accuracy_sigma0") ? experiment::num(run["accuracy_sigma0"][ri].get<double>()) : ""});
            }
        }
    }
    json out = {{"provenance", experiment::provenance("sdenet_active_learning", args, config)},
                {"curves", curves},
                {"runs", runs}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv",
                   {"method", "seed", "round", "labelled", "accuracy", "accuracy_sigma500", "accuracy_sigma0"},
                   rows);
    json run_rec = experiment::run_info(args);
    run_rec["timings"] = {{"seconds_per_round", timings}};
    result_set.json("run.json", run_rec);
    result_set.commit();  // results.json, results.csv, run.json as one set
    for (auto& [name, c] : curves.items()) {
        std::printf("%-26s", name.c_str());
        for (std::size_t r = 0; r < c["mean"].size(); ++r)
            std::printf(" %zu:%.3f", c["labelled_size"][r].get<std::size_t>(), c["mean"][r].get<double>());
        std::printf("\n");
    }
    return 0;
}

int main(int argc, char** argv) { return experiment::run_main("sdenet_active_learning", argc, argv, run_experiment); }
