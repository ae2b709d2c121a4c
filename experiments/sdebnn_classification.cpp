// sdebnn_classification: SDE-BNN on MNIST and Fashion-MNIST (Xu et al. 2022, §5.2), next to the baselines of
// mnist_baselines (same downsampler and head).
//
// Model (sde/sdebnn.hpp SDEBNNClassifier): mnist_baselines' conv downsampler (28x28 -> width x 6 x 6),
// SDE-BNN blocks of concat-time 3x3 convolutions width -> hidden -> width (softplus) whose weights follow
// dw = (-w + r_phi(t, w)) dt + sigma dB against the OU prior (r_phi: concat-time linear P -> 2 -> 64 -> 2 ->
// P, softplus, last layer zero, as the reference's hypernet), then GN, ReLU, global average pool,
// Linear(width -> 10). One weight path per minibatch for training; loss = mean cross-entropy + kl_coef * KL /
// N_train with kl_coef = 1e-3 (the reference's tempered ELBO). Quick: Adam 3e-3, batch 32, sigma 0.05; full:
// Adam 1e-3, batch 128, sigma 0.2 (the reference; see Settings for why quick differs). Prediction: class
// probabilities averaged over S weight paths. Reported per data set: accuracy, NLL, Brier, ECE (15 and 10
// bins), OOD detection against the other data set (max-probability score: AUROC, AUPR in/out, TNR at 95%
// TPR), seconds per epoch (run.json). Checkpointed after every epoch.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "experiments/common.hpp"
#include "experiments/cpu_time.hpp"
#include "experiments/mnist_baselines_lib.hpp"
#include "nn/checkpoint.hpp"
#include "nn/corruptions.hpp"
#include "nn/data.hpp"
#include "nn/metrics.hpp"
#include "nn/optim.hpp"
#include "sde/adjoint.hpp"
#include "sde/sdebnn.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Quick defaults. The first quick setting (width 16, 2000 images, 3 epochs, batch 128, Adam 1e-3, sigma
// 0.2) did not learn: its 48 Adam steps reached 0.19 (MNIST) / 0.25 (Fashion) test accuracy, and the same
// front end without the SDE-BNN block only 0.24 / 0.37 at that budget. What a quick run needs is Adam
// steps: at width 32 and 4000 images x 3 epochs, batch 128 (94 steps) reached 0.55 on MNIST and batch 32
// (375 steps, the same images and nearly the same CPU time) 0.90. Quick mode therefore takes
// mnist_baselines' quick width (32, 8 groups), batch 32, Adam 3e-3, 5000 images x 4 epochs. sigma 0.05
// instead of the reference's 0.2 is a deliberate deviation: PyTorch's initial conv weights are
// U(+-1/sqrt(33 * 9)) = +-0.058, and an OU path with sigma 0.2 adds noise of sd 0.2 sqrt((1 - e^-2) / 2) =
// 0.13 by t = 1, twice the weights' own scale, burying the signal for a run of a few hundred steps. Full
// mode keeps the reference's batch 128, Adam 1e-3 and sigma 0.2.
struct Settings {
    int epochs = 4;
    std::size_t batch = 32;
    double lr = 3e-3, kl_coef = 1e-3, sigma = 0.05;
    std::int64_t width = 32, hidden = 32;
    int groups = 8, blocks = 1, steps = 4, samples = 4;
    std::size_t train_subset = 5000, eval_subset = 1000;
    std::size_t corruption_images = 100;  // per corruption and severity (0 = no corruption study)
    std::string kl = "stl", estimator = "backprop";
    std::vector<std::string> datasets{"mnist", "fashion_mnist"};
    std::size_t time_steps = 0;         // > 0: CPU time of this many training steps, then exit
    std::size_t time_eval_images = 200;  // test images of the --time-steps evaluation
};

KLEstimator parse_kl(const std::string& s) {
    return s == "plain" ? KLEstimator::plain : (s == "full" ? KLEstimator::full : KLEstimator::stl);
}

SDEBNNClassifierConfig model_config(const Settings& s) {
    SDEBNNClassifierConfig c;
    c.width = s.width;
    c.hidden = s.hidden;
    c.groups = s.groups;
    c.blocks = s.blocks;
    c.block.sigma = s.sigma;
    c.block.steps = s.steps;
    c.block.kl = parse_kl(s.kl);
    c.block.estimator = s.estimator;
    c.block.solver =
        s.estimator == "backprop" ? "euler" : (s.estimator == "adjoint" ? "midpoint" : "reversible_heun");
    c.block.hyper_hidden = {2, 64, 2};
    c.block.hyper_act = nn::Act::softplus;
    return c;
}

std::uint64_t seed_of(Generator g) {
    return (static_cast<std::uint64_t>(g()) << 32) | g();
}

// Class probabilities [n x 10], averaged over S weight paths.
std::vector<double> predict(SDEBNNClassifier& m, const data::Dataset& ds, int samples,
                            const Generator& noise) {
    std::vector<double> probs(ds.n * 10, 0.0);
    NoGradScope ng;
    std::vector<std::size_t> idx;
    std::vector<std::int32_t> yb;
    for (std::size_t lo = 0; lo < ds.n; lo += 250) {
        const std::size_t hi = std::min(ds.n, lo + 250), nb = hi - lo;
        idx.resize(nb);
        for (std::size_t i = lo; i < hi; ++i) idx[i - lo] = i;
        Var x(data::batch_tensor(ds, idx, yb));
        Var p = softmax(m.forward(x, samples, seed_of(noise.fork(lo))).logits, -1);  // [S * nb, 10]
        const float* pp = p.value().data<float>();
        for (int sidx = 0; sidx < samples; ++sidx)
            for (std::size_t i = 0; i < nb * 10; ++i)
                probs[lo * 10 + i] +=
                    static_cast<double>(pp[static_cast<std::size_t>(sidx) * nb * 10 + i]) / samples;
        reset_tape();
    }
    return probs;
}

// One SDE-BNN training step on the batch `x` with labels `yb`: one weight path per minibatch (Brownian draws
// from `seed`), loss = cross-entropy + KL(posterior || prior) * kl_weight, backward, Adam. Returns the loss. The
// training loop and the --time-steps measurement both run this, so that what is timed is what is trained.
double sdebnn_step(SDEBNNClassifier& model, nn::Adam& opt, const Tensor& x, const std::vector<std::int32_t>& yb,
                   std::uint64_t seed, double kl_weight) {
    opt.zero_grad();
    ClassifierOutput o = model.forward(Var(x), 1, seed);
    Var loss = cross_entropy(o.logits, yb) + sum(o.kl) * kl_weight;
    backward(loss);
    opt.step();
    return loss.item();
}

// Accuracy and ECE (15 bins) of class probabilities on `ds`.
json acc_ece(const std::vector<double>& p, const data::Dataset& ds) {
    return {{"accuracy", metrics::accuracy(std::span<const double>(p), ds.labels, 10)},
            {"ece_15", metrics::ece(std::span<const double>(p), ds.labels, 10, 15)}};
}

// --time-steps: CPU seconds (process, all threads) of SDE-BNN's and its deterministic peer's training steps and
// predictions at this configuration, on `name`'s images, and the estimate of the whole run they give. Steps
// run on full batches in training order, after one untimed warm-up step each (allocations, thread pool).
int time_run(const Settings& s, const experiment::CommonArgs& args, const data::Dataset& train_raw,
             const data::Dataset& test_raw, const std::string& name) {
    const data::MeanStd st = name == "mnist" ? data::mnist_stats : data::fashion_mnist_stats;
    data::Dataset tr = data::subset(train_raw, s.train_subset), te = data::subset(test_raw, s.time_eval_images);
    data::normalize(tr, st);
    data::normalize(te, st);
    if (tr.n < s.batch)
        throw experiment::UsageError(fmt::format("--time-steps needs at least one batch of {} training images, "
                                                 "--train-subset gives {}", s.batch, tr.n));
    const Generator root(args.seed, 100);
    Generator gen = root.fork(1);
    SDEBNNClassifier model(model_config(s), gen);
    nn::Adam opt(model.trainable_parameters(), {.lr = s.lr});
    nn::ConvNetConfig pc;
    pc.width = s.width;
    pc.num_blocks = s.blocks;
    pc.dropout = 0.0;
    pc.groups = s.groups;
    Generator pgen(seed_of(root.fork(5)), 1);
    nn::MnistConvNet peer(pc, pgen);
    nn::Adam popt(peer.trainable_parameters(), {.lr = s.lr});
    peer.train();
    const Generator noise = root.fork(3);
    const double n_train = static_cast<double>(tr.n);
    std::vector<std::int32_t> yb;
    // Runs time_steps + 1 steps of `step` on full batches; returns the CPU seconds of all but the first.
    auto timed = [&](auto&& step) {
        data::BatchIterator it(tr.n, s.batch, seed_of(root.fork(2)), true, true);
        double cpu = 0;
        for (std::size_t k = 0, e = 0; k <= s.time_steps;) {
            auto idx = it.next();
            if (idx.empty()) {
                it.start_epoch(++e);
                continue;
            }
            Tensor x = data::batch_tensor(tr, idx, yb);
            const double c0 = experiment::cpu_seconds();
            step(x, k);
            if (k > 0) cpu += experiment::cpu_seconds() - c0;
            reset_tape();
            ++k;
        }
        return cpu / static_cast<double>(s.time_steps);
    };
    double last_loss = 0, last_peer_loss = 0;
    const double w0 = experiment::wall_seconds();
    const double per_step = timed([&](const Tensor& x, std::size_t k) {
        last_loss = sdebnn_step(model, opt, x, yb, seed_of(noise.fork(k)), s.kl_coef / n_train);
    });
    const double per_peer_step = timed([&](const Tensor& x, std::size_t) {
        popt.zero_grad();
        Var loss = cross_entropy(peer.forward(Var(x)), yb);
        backward(loss);
        popt.step();
        last_peer_loss = loss.item();
    });
    const double train_wall = experiment::wall_seconds() - w0;
    const double e0 = experiment::cpu_seconds();
    const auto p = predict(model, te, s.samples, root.fork(4));
    const double e1 = experiment::cpu_seconds();
    const auto pp = baselines::predict(peer, te, 0);
    const double e2 = experiment::cpu_seconds();
    const double per_image = (e1 - e0) / double(te.n), per_peer_image = (e2 - e1) / double(te.n);
    double mean_max_prob = 0, mean_max_prob_peer = 0;
    for (double v : metrics::max_prob(std::span<const double>(p), 10)) mean_max_prob += v / double(te.n);
    for (double v : metrics::max_prob(std::span<const double>(pp), 10)) mean_max_prob_peer += v / double(te.n);

    // The whole run per in-distribution set: ceil(N / batch) steps per epoch of each model (the last batch
    // may be partial and is counted as full), predictions on the test set, the other set's test images and
    // the corruption suite, with both models.
    const std::size_t n_full = s.train_subset ? std::min<std::size_t>(s.train_subset, train_raw.n) : train_raw.n;
    const std::size_t batches = (n_full + s.batch - 1) / s.batch;
    const std::size_t n_eval = s.eval_subset ? std::min<std::size_t>(s.eval_subset, test_raw.n) : test_raw.n;
    const std::size_t n_corr = data::corruption_names().size() * data::num_severities * s.corruption_images;
    const double pred_images = double(2 * n_eval + n_corr);
    const double train_cpu = double(batches) * s.epochs * (per_step + per_peer_step);
    const double pred_cpu = pred_images * (per_image + per_peer_image);
    const double per_set = train_cpu + pred_cpu;
    std::printf("SDE-BNN width %lld, hidden %lld, %d blocks x %d steps, batch %zu, %zu timed steps (threads %d), "
                "CPU seconds:\n",
                static_cast<long long>(s.width), static_cast<long long>(s.hidden), s.blocks, s.steps, s.batch,
                s.time_steps, num_threads());
    std::printf("  SDE-BNN training step: %.3f s; deterministic peer step: %.3f s (ratio %.1f)\n", per_step,
                per_peer_step, per_step / per_peer_step);
    std::printf("  prediction per image: SDE-BNN (%d paths) %.4f s, peer %.5f s (%zu images)\n", s.samples,
                per_image, per_peer_image, te.n);
    std::printf("  per data set: %zu batches x %d epochs: %.2f h; %.0f predicted images: %.2f h; total %.2f h CPU; "
                "%zu data set(s): %.2f h\n",
                batches, s.epochs, train_cpu / 3600, pred_images, pred_cpu / 3600, per_set / 3600,
                s.datasets.size(), per_set * double(s.datasets.size()) / 3600);
    const json tconfig = {{"dataset", name},
                          {"width", s.width},
                          {"hidden", s.hidden},
                          {"groups", s.groups},
                          {"blocks", s.blocks},
                          {"steps", s.steps},
                          {"samples", s.samples},
                          {"sigma", s.sigma},
                          {"kl", s.kl},
                          {"estimator", s.estimator},
                          {"batch", s.batch},
                          {"epochs", s.epochs},
                          {"time_steps", s.time_steps},
                          {"warmup_steps", 1},
                          {"time_eval_images", te.n},
                          {"datasets", s.datasets},
                          {"train_images_per_set", n_full},
                          {"batches_per_epoch", batches},
                          {"eval_images_per_set", n_eval},
                          {"corruption_images", s.corruption_images},
                          {"corruptions", data::corruption_names().size()},
                          {"severities", data::num_severities},
                          {"predicted_images_per_set", pred_images}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json",
                    json{{"provenance", experiment::provenance("sdebnn_classification", args, tconfig)},
                         {"results",
                          {{"last_step_loss", last_loss},
                           {"last_peer_step_loss", last_peer_loss},
                           {"mean_max_prob", mean_max_prob},
                           {"mean_max_prob_peer", mean_max_prob_peer}}}});
    json run = experiment::run_info(args);
    run["timings"] = {{"cpu_seconds_per_step", per_step},
                      {"cpu_seconds_per_peer_step", per_peer_step},
                      {"cpu_seconds_per_image", per_image},
                      {"cpu_seconds_per_peer_image", per_peer_image},
                      {"training_wall_seconds", train_wall},
                      {"estimated_cpu_seconds_training_per_set", train_cpu},
                      {"estimated_cpu_seconds_prediction_per_set", pred_cpu}};
    result_set.json("run.json", run);
    result_set.commit();
    return 0;
}

}  // namespace

int run(int argc, char** argv) {
    CLI::App app{
        "sdebnn_classification: SDE-BNN on MNIST and Fashion-MNIST with OOD detection against the other set"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/sdebnn_classification");
    Settings s;
    auto* o_epochs = app.add_option("--epochs", s.epochs, "training epochs")->check(CLI::Range(1, 1000));
    auto* o_width = app.add_option("--width", s.width, "conv channels")->check(CLI::Range(1, 512));
    auto* o_hidden =
        app.add_option("--hidden", s.hidden, "SDE-BNN drift hidden channels")->check(CLI::Range(1, 512));
    auto* o_groups = app.add_option("--groups", s.groups, "GroupNorm groups (must divide --width)")
                         ->check(CLI::Range(1, 512));
    auto* o_blocks = app.add_option("--blocks", s.blocks, "SDE-BNN blocks")->check(CLI::Range(1, 16));
    auto* o_steps = app.add_option("--steps", s.steps, "solver steps per block")->check(CLI::Range(1, 1000));
    auto* o_samples = app.add_option("--samples", s.samples, "weight paths averaged at test time")
                          ->check(CLI::Range(1, 1000));
    auto* o_train =
        app.add_option("--train-subset", s.train_subset, "training images per data set (0 = all)");
    auto* o_eval = app.add_option("--eval-subset", s.eval_subset, "test images per data set (0 = all)");
    app.add_option("--kl", s.kl, "KL estimator")->check(CLI::IsMember({"plain", "full", "stl"}));
    app.add_option("--estimator", s.estimator, "gradient estimator")
        ->check(CLI::IsMember({"backprop", "adjoint", "reversible_heun"}));
    app.add_option("--kl-coef", s.kl_coef, "KL weight over the training-set size")
        ->check(CLI::NonNegativeNumber);
    auto* o_lr = app.add_option("--lr", s.lr, "Adam learning rate")->check(CLI::PositiveNumber);
    auto* o_batch = app.add_option("--batch", s.batch, "minibatch size")->check(CLI::Range(1, 100000));
    auto* o_sigma = app.add_option("--sigma", s.sigma, "diffusion of the weights (prior and posterior)")
                        ->check(CLI::PositiveNumber);
    app.add_option("--datasets", s.datasets, "in-distribution sets trained and evaluated (OOD: the other)")
        ->check(CLI::IsMember({"mnist", "fashion_mnist"}));
    auto* o_corr = app.add_option("--corruption-images", s.corruption_images,
                                  "test images per corruption and severity (0 = no corruption study; "
                                  "quick 100, full 1000)");
    app.add_option("--time-steps", s.time_steps,
                   "CPU time of this many training steps of SDE-BNN and of its deterministic peer at this "
                   "configuration (after one untimed warm-up step each), then of the prediction (--samples "
                   "weight paths) of both on --time-eval-images test images of the first --datasets set; "
                   "prints the estimate of the whole run and exits; writes only the timing result "
                   "(default --out reports/results/sdebnn_classification_timing)")
        ->check(CLI::Range(1, 100000));
    app.add_option("--time-eval-images", s.time_eval_images, "test images of the --time-steps prediction")
        ->check(CLI::Range(1, 100000));
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {  // mnist_baselines' full size (width 64, 32 groups), the reference's 19 steps
        if (!o_epochs->count()) s.epochs = 20;
        if (!o_width->count()) s.width = 64;
        if (!o_hidden->count()) s.hidden = 64;
        if (!o_groups->count()) s.groups = 32;
        if (!o_blocks->count()) s.blocks = 2;
        if (!o_steps->count()) s.steps = 19;
        if (!o_samples->count()) s.samples = 10;
        if (!o_train->count()) s.train_subset = 0;
        if (!o_eval->count()) s.eval_subset = 0;
        if (!o_sigma->count()) s.sigma = 0.2;  // the reference's diff_coef
        if (!o_lr->count()) s.lr = 1e-3;
        if (!o_batch->count()) s.batch = 128;
        if (!o_corr->count()) s.corruption_images = 1000;
    }
    for (std::size_t i = 0; i < s.datasets.size(); ++i)
        if (std::count(s.datasets.begin(), s.datasets.end(), s.datasets[i]) > 1) {
            std::fprintf(stderr, "sdebnn_classification: --datasets names %s twice\n", s.datasets[i].c_str());
            return 2;
        }
    if (s.width % s.groups != 0) {
        std::fprintf(stderr, "sdebnn_classification: --groups %d must divide --width %lld\n", s.groups,
                     static_cast<long long>(s.width));
        return 2;
    }
    // The timing run has its own result directory (and report, reports/sdebnn_classification_timing.md).
    if (s.time_steps > 0 && app.get_option("--out")->count() == 0)
        args.out = "reports/results/sdebnn_classification_timing";
    experiment::apply_common(args);
    register_adjoint_estimators();
    const fs::path data_dir = data::resolve_data_dir(args.data);
    struct Named {
        std::string name;
        data::Dataset train, test;
    };
    std::vector<Named> sets;
    try {
        sets.push_back({"mnist", data::load_mnist(data_dir, data::Split::train),
                        data::load_mnist(data_dir, data::Split::test)});
        sets.push_back({"fashion_mnist", data::load_fashion_mnist(data_dir, data::Split::train),
                        data::load_fashion_mnist(data_dir, data::Split::test)});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sdebnn_classification: %s\n", e.what());
        return 1;
    }
    if (s.time_steps > 0) return time_run(s, args, sets[s.datasets[0] == "mnist" ? 0 : 1].train,
                                          sets[s.datasets[0] == "mnist" ? 0 : 1].test, s.datasets[0]);
    // Fail before training, naming the file and the script, when the corruption suite is missing.
    if (s.corruption_images > 0)
        for (const auto& name : s.datasets)
            for (const auto& c : data::corruption_names())
                for (int sev = 1; sev <= data::num_severities; ++sev) {
                    const std::string base = name == "mnist" ? "mnist" : "fashion-mnist";
                    const fs::path f = data::corruption_dir(data_dir, base) / c / std::to_string(sev) /
                                       "t10k-images-idx3-ubyte.gz";
                    if (!fs::exists(f))
                        throw std::runtime_error(f.string() +
                                                 ": file not found. Run scripts/make-corruptions (or pass "
                                                 "--corruption-images 0)");
                }
    json config = {{"epochs", s.epochs},
                   {"batch", s.batch},
                   {"lr", s.lr},
                   {"optimizer", "adam"},
                   {"width", s.width},
                   {"hidden", s.hidden},
                   {"groups", s.groups},
                   {"blocks", s.blocks},
                   {"steps", s.steps},
                   {"samples", s.samples},
                   {"sigma", s.sigma},
                   {"kl_coef", s.kl_coef},
                   {"kl", s.kl},
                   {"estimator", s.estimator},
                   {"hypernet", "concat-time linear P-2-64-2-P softplus, last zero"},
                   {"train_subset", s.train_subset},
                   {"eval_subset", s.eval_subset},
                   {"ood_score", "max softmax probability"},
                   {"paths_per_minibatch", 1}};
    const std::string config_key = config.dump() + fmt::format("|seed={}", args.seed);
    config["datasets"] = s.datasets;  // not in the checkpoint key: each set's training is independent of it
    config["peer"] = "deterministic: the same downsampler and head around --blocks residual conv blocks "
                     "(mnist_baselines' net), the same optimiser, batch, epochs and images";
    config["corruption_images"] = s.corruption_images;
    config["corruptions"] = s.corruption_images ? data::corruption_names() : std::vector<std::string>{};
    config["corruption_suite_seed"] = data::corruption_suite_seed;
    fs::create_directories(fs::path(args.out) / "checkpoints");
    json results, timings;
    experiment::Progress bar("sdebnn_classification",
                             static_cast<std::int64_t>(s.datasets.size()) * s.epochs * 2);
    std::int64_t done = 0;
    for (std::size_t d = 0; d < sets.size(); ++d) {
        const auto& in = sets[d];
        const auto& other = sets[1 - d];
        if (std::find(s.datasets.begin(), s.datasets.end(), in.name) == s.datasets.end()) continue;
        const data::MeanStd st = in.name == "mnist" ? data::mnist_stats : data::fashion_mnist_stats;
        data::Dataset tr = data::subset(in.train, s.train_subset), te = data::subset(in.test, s.eval_subset),
                      ood = data::subset(other.test, s.eval_subset);
        data::normalize(tr, st);
        data::normalize(te, st);
        data::normalize(ood, st);
        const Generator root(args.seed, 100 + d);
        Generator gen = root.fork(1);
        SDEBNNClassifier model(model_config(s), gen);
        nn::Adam opt(model.trainable_parameters(), {.lr = s.lr});
        const std::string ckpt = (fs::path(args.out) / "checkpoints" / (in.name + ".ckpt")).string();
        int start = 0;
        std::vector<double> epoch_seconds, epoch_loss;
        if (args.resume && fs::exists(ckpt)) {
            auto meta = json::parse(nn::read_checkpoint_file(ckpt).metadata);
            if (meta.value("config", "") == config_key) {
                nn::load_checkpoint(ckpt, model, &opt);
                start = meta["epochs_done"];
                epoch_seconds = meta["epoch_seconds"].get<std::vector<double>>();
                epoch_loss = meta["epoch_loss"].get<std::vector<double>>();
                done += start;
            }
        }
        data::BatchIterator it(tr.n, s.batch, seed_of(root.fork(2)));
        const Generator noise = root.fork(3);
        std::vector<std::int32_t> yb;
        const double n_train = static_cast<double>(tr.n);
        for (int e = start; e < s.epochs; ++e) {
            const double t0 = experiment::wall_seconds();
            it.start_epoch(static_cast<std::uint64_t>(e));
            double loss_sum = 0;
            std::size_t nb = 0, step = 0;
            for (auto idx = it.next(); !idx.empty(); idx = it.next(), ++step) {
                Tensor x = data::batch_tensor(tr, idx, yb);
                loss_sum += sdebnn_step(model, opt, x, yb,
                                        seed_of(noise.fork(static_cast<std::uint64_t>(e) * 1000003 + step)),
                                        s.kl_coef / n_train);
                ++nb;
                reset_tape();
            }
            epoch_seconds.push_back(experiment::wall_seconds() - t0);
            epoch_loss.push_back(loss_sum / static_cast<double>(nb));
            json meta = {{"config", config_key},
                         {"epochs_done", e + 1},
                         {"epoch_seconds", epoch_seconds},
                         {"epoch_loss", epoch_loss}};
            nn::save_checkpoint(ckpt, model, &opt, meta.dump());
            bar.update(++done);
        }
        const double t0 = experiment::wall_seconds();
        const Generator pred = root.fork(4);
        auto p_in = predict(model, te, s.samples, pred.fork(1)),
             p_out = predict(model, ood, s.samples, pred.fork(2));
        json r = baselines::evaluate(p_in, te, p_out);
        r["train_loss_per_epoch"] = epoch_loss;
        const double inference_seconds = experiment::wall_seconds() - t0;

        // The deterministic peer: mnist_baselines' net at the same width, groups and number of blocks
        // (residual conv blocks where SDE-BNN has its blocks), trained on the same images with the same
        // optimiser, batch and epochs.
        baselines::Settings ps;
        ps.epochs = s.epochs;
        ps.batch = s.batch;
        ps.lr = s.lr;
        ps.width = s.width;
        ps.groups = s.groups;
        ps.blocks = s.blocks;
        const json peer_identity = {
            {"config", config_key}, {"model", "deterministic_peer"}, {"set", in.name}};
        baselines::TrainResult peer =
            baselines::train(tr, 0.0, seed_of(root.fork(5)), ps,
                             (fs::path(args.out) / "checkpoints" / (in.name + "_peer.ckpt")).string(),
                             peer_identity, args.resume, bar, done);
        r["deterministic_peer"] = baselines::evaluate(baselines::predict(*peer.model, te, 0), te,
                                                      baselines::predict(*peer.model, ood, 0));
        r["deterministic_peer"]["parameters"] = peer.model->num_parameters();
        r["parameters"] = model.num_parameters();

        // Corruptions: the first corruption_images images of every corruption and severity of the committed
        // suite (scripts/make-corruptions). Corruption error CE_c = sum_s err(c, s) / sum_s err_peer(c, s)
        // (Hendrycks & Dietterich 2019, with the deterministic peer as the reference net); mCE = mean_c CE_c.
        if (s.corruption_images > 0) {
            const std::string base = in.name == "mnist" ? "mnist" : "fashion-mnist";
            json per, ce;
            double ce_sum = 0, acc_sum = 0, acc_peer_sum = 0, ece_sum = 0, ece_peer_sum = 0;
            int count = 0;
            for (const auto& c : data::corruption_names()) {
                double err = 0, err_peer = 0;
                for (int sev = 1; sev <= data::num_severities; ++sev) {
                    data::Dataset cd =
                        data::subset(data::load_corruption(data_dir, base, c, sev), s.corruption_images);
                    data::normalize(cd, st);
                    const std::uint64_t stream = 1000 + static_cast<std::uint64_t>(count);
                    json a = acc_ece(predict(model, cd, s.samples, pred.fork(stream)), cd),
                         b = acc_ece(baselines::predict(*peer.model, cd, 0), cd);
                    per[c][std::to_string(sev)] = {{"sdebnn", a}, {"deterministic_peer", b}};
                    err += 1 - a["accuracy"].get<double>();
                    err_peer += 1 - b["accuracy"].get<double>();
                    acc_sum += a["accuracy"].get<double>();
                    acc_peer_sum += b["accuracy"].get<double>();
                    ece_sum += a["ece_15"].get<double>();
                    ece_peer_sum += b["ece_15"].get<double>();
                    ++count;
                }
                // A peer without a single error at any severity leaves CE undefined (null in the JSON).
                ce[c] = err_peer > 0 ? json(err / err_peer) : json(nullptr);
                if (err_peer > 0) ce_sum += err / err_peer;
            }
            std::size_t defined = 0;
            for (auto& [c, v] : ce.items()) defined += v.is_null() ? 0 : 1;
            r["corruption"] = {
                {"images", s.corruption_images},
                {"per_corruption_severity", per},
                {"ce", ce},
                {"mce", defined ? json(ce_sum / static_cast<double>(defined)) : json(nullptr)},
                {"mean_accuracy", acc_sum / count},
                {"mean_accuracy_peer", acc_peer_sum / count},
                {"mean_ece_15", ece_sum / count},
                {"mean_ece_15_peer", ece_peer_sum / count}};
        }
        results[in.name + "_vs_" + other.name] = r;
        timings[in.name + "_vs_" + other.name] = {{"seconds_per_epoch", epoch_seconds},
                                                  {"peer_seconds_per_epoch", peer.epoch_seconds},
                                                  {"inference_seconds", inference_seconds}};
    }
    bar.finish();
    std::vector<std::vector<std::string>> rows;
    for (auto& [pair, r] : results.items()) {
        std::vector<std::string> row = {pair};
        for (const char* k : {"accuracy", "nll", "brier", "ece_15", "ece_10", "ood_auroc", "ood_aupr_in",
                              "ood_aupr_out", "ood_tnr_at_95_tpr"})
            row.push_back(experiment::num(r[k].get<double>()));
        rows.push_back(row);
    }
    json out = {{"provenance", experiment::provenance("sdebnn_classification", args, config)},
                {"results", results}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv",
                   {"pair", "accuracy", "nll", "brier", "ece_15", "ece_10", "ood_auroc", "ood_aupr_in",
                    "ood_aupr_out", "ood_tnr_at_95_tpr"},
                   rows);
    json run = experiment::run_info(args);
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json as one set
    for (auto& [pair, r] : results.items()) {
        const json& pr = r["deterministic_peer"];
        std::printf("%-26s acc %.4f  NLL %.4f  Brier %.4f  ECE15 %.4f  AUROC %.4f  %.1f s/epoch  "
                    "(peer: acc %.4f  ECE15 %.4f  AUROC %.4f)\n",
                    pair.c_str(), r["accuracy"].get<double>(), r["nll"].get<double>(),
                    r["brier"].get<double>(), r["ece_15"].get<double>(), r["ood_auroc"].get<double>(),
                    timings[pair]["seconds_per_epoch"].back().get<double>(), pr["accuracy"].get<double>(),
                    pr["ece_15"].get<double>(), pr["ood_auroc"].get<double>());
        if (r.contains("corruption") && !r["corruption"]["mce"].is_null())
            std::printf("%-26s corruptions: mCE %.4f vs the peer, mean accuracy %.4f (peer %.4f)\n", "",
                        r["corruption"]["mce"].get<double>(), r["corruption"]["mean_accuracy"].get<double>(),
                        r["corruption"]["mean_accuracy_peer"].get<double>());
    }
    return 0;
}

int main(int argc, char** argv) {
    return experiment::run_main("sdebnn_classification", argc, argv, run);
}
