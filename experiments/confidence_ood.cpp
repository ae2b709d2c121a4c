// confidence_ood: learned confidence (DeVries & Taylor 2018) against the max-softmax baseline and ODIN, for
// out-of-distribution and misclassification detection on MNIST and Fashion-MNIST.
//
// For each in-distribution set (MNIST, Fashion-MNIST) and each seed, two networks of the same backbone (the
// FlatConvNet of nn/confidence by default, or --backbone conv for the MnistConvNet of nn/models) are trained
// from the same initialisation with the same data, augmentation (random crop with padding, Cutout with
// p 0.5) and optimizer (Adam, cosine-decayed learning rate): a plain classifier (cross-entropy) and the
// same classifier with the confidence branch (hinted loss and budget, nn/confidence). Scores: baseline =
// max softmax; ODIN = max softmax at temperature T of the perturbed input; confidence = c; confidence +
// preprocessing = c of the perturbed input. OOD sets: the other data set's test split, Gaussian noise
// N(0.5, 1) clipped to [0, 1], uniform noise U(0, 1), and the corruption suite (scripts/make-corruptions)
// at the chosen severities. Metrics: the reference's FPR at 95% TPR, detection error, AUROC, AUPR in and
// out (nn/metrics_confidence), for OOD and for misclassification (correct = in, wrong = out), and the test
// accuracy of both networks; mean and std over the seeds.
//
// Epsilon of ODIN and of the preprocessing is tuned per network on a held-out set that is never the test
// split: `--tune-subset` images at the end of the in-distribution training split (excluded from training)
// as "in", and as "out" (--tune-ood) the same images with permuted pixels (default: tuning sees none of the
// OOD test sets), nothing (the largest mean in-distribution score), or the other data set's training split;
// the epsilon with the lowest criterion (first in the grid on ties) is used on every OOD test set. (The
// reference tunes on the first 1000 images of each OOD test set and tests on the rest.)
//
// Checkpoints after every epoch (out/checkpoints/, with the budget lambda); a killed run resumes.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>

#include "experiments/common.hpp"
#include "nn/checkpoint.hpp"
#include "nn/confidence.hpp"
#include "nn/corruptions.hpp"
#include "nn/data.hpp"
#include "nn/metrics_confidence.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"
#include "nn/transforms.hpp"

using namespace sdeuq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
    int epochs = 1;
    int seeds = 3;
    std::size_t batch = 128;
    double lr = 2e-3;
    std::string backbone = "flat";
    std::int64_t width = 8;
    std::int64_t hidden = 128;  // FlatConvNet's feature width
    int groups = 8;
    int blocks = 1;
    std::size_t train_subset = 24000;  // 0 = all but the tuning images
    std::size_t eval_subset = 1000;   // 0 = all
    std::size_t tune_subset = 500;
    int crop_padding = 2;
    int cutout = 8;
    double cutout_prob = 0.5;
    double hint_prob = 0.5;
    double lambda0 = 0.1;
    // The reference's 0.3 suits CIFAR-10's training error; on MNIST it makes the branch spend confidence on
    // images it classifies correctly (probes, 1 seed, MNIST in, 2 epochs: FPR@95 vs Fashion-MNIST of c 0.93 at
    // beta 0.3, 0.77 at 0.1, 0.72 at 0.03, max softmax 0.87).
    double beta = 0.03;
    double temperature = 1000;
    long grid = 100000;
    // Standardised units (MNIST's pixel std is 0.31, so 0.01 is 0.003 of the pixel range).
    std::vector<double> epsilons = {0, 0.0005, 0.001, 0.0014, 0.002, 0.0024, 0.005, 0.01, 0.02, 0.05, 0.1};
    std::vector<int> severities = {3};
    std::vector<std::string> corruptions = data::corruption_names();
    std::vector<std::string> in_sets = {"mnist", "fashion_mnist"};
    std::string tune_ood = "permuted";
};

// What epsilon tuning uses as its "out" side (the "in" side is always the held-out in-distribution images).
const std::map<std::string, std::string> tune_ood_descriptions = {
    {"permuted",
     "in: the last tune_subset images of the in-distribution training split (not trained on); out: the same "
     "images with their pixels permuted (a fresh seeded permutation per image), so tuning sees none of the "
     "OOD test sets; epsilon = lowest FPR@95 on them"},
    {"none",
     "in: the last tune_subset images of the in-distribution training split (not trained on), and no OOD "
     "data at all: epsilon = the largest mean score on them (the in-distribution criterion of Hsu et al., "
     "Generalized ODIN, 2020)"},
    {"other",
     "in: the last tune_subset images of the in-distribution training split (not trained on); out: the first "
     "tune_subset images of the other data set's training split (the same distribution as one OOD test set); "
     "epsilon = lowest FPR@95 on them"}};

// Each image of ds with its pixels randomly permuted (per image, seeded): the intensity histogram stays,
// the shapes go.
data::Dataset permuted_pixels(data::Dataset ds, std::uint64_t seed) {
    data::Rng rng(seed, data::Stream::user, 0x7065);
    const std::size_t ss = ds.sample_size();
    for (std::size_t i = 0; i < ds.n; ++i) {
        float* img = ds.images.data() + i * ss;
        for (std::size_t j = ss - 1; j > 0; --j) {  // Fisher-Yates
            const auto r = static_cast<std::size_t>(rng.uniform01() * double(j + 1));
            std::swap(img[j], img[std::min(r, j)]);
        }
    }
    return ds;
}

const std::vector<std::string> methods = {"baseline", "odin", "confidence", "confidence_preprocessing"};
const std::vector<std::string> metric_names = {"fpr_at_95_tpr", "detection_error", "auroc", "aupr_in",
                                               "aupr_out"};

data::Dataset slice(const data::Dataset& ds, std::size_t lo, std::size_t hi) {
    hi = std::min(hi, ds.n);
    data::Dataset out;  // field by field: copying `ds` whole would copy all its images first
    out.shape = ds.shape;
    out.num_classes = ds.num_classes;
    const std::size_t ss = ds.sample_size();
    out.n = hi - lo;
    out.images.assign(ds.images.begin() + static_cast<std::ptrdiff_t>(lo * ss),
                      ds.images.begin() + static_cast<std::ptrdiff_t>(hi * ss));
    out.labels.assign(ds.labels.begin() + static_cast<std::ptrdiff_t>(lo),
                      ds.labels.begin() + static_cast<std::ptrdiff_t>(hi));
    return out;
}

data::Dataset noise_set(std::size_t n, bool gaussian, std::uint64_t seed) {
    data::Dataset ds;
    ds.n = n;
    ds.shape = {1, 28, 28};
    ds.num_classes = 10;
    ds.labels.assign(n, 0);
    ds.images.resize(n * 784);
    data::Rng rng(seed, data::Stream::user, gaussian ? 0x6761 : 0x756e);
    for (auto& v : ds.images)
        v = static_cast<float>(gaussian ? std::clamp(0.5 + rng.normal(), 0.0, 1.0) : rng.uniform01());
    return ds;
}

Tensor range_tensor(const data::Dataset& ds, std::size_t lo, std::size_t hi) {
    const std::size_t ss = ds.sample_size();
    Tensor x = Tensor::empty({static_cast<std::int64_t>(hi - lo), 1, 28, 28}, DType::f32);
    std::copy_n(ds.images.begin() + static_cast<std::ptrdiff_t>(lo * ss), (hi - lo) * ss, x.data<float>());
    return x;
}

struct Nets {
    std::shared_ptr<nn::FeatureClassifier> baseline;
    std::shared_ptr<nn::ConfidenceClassifier> confidence;
    std::vector<double> seconds_per_epoch_baseline, seconds_per_epoch_confidence, lambda_per_epoch,
        confidence_loss_per_epoch;
};

std::shared_ptr<nn::FeatureClassifier> make_backbone(const Settings& s, Generator& gen) {
    if (s.backbone == "flat") {
        nn::FlatConvNetConfig fc;
        fc.width = s.width;
        fc.hidden = s.hidden;
        return std::make_shared<nn::FlatConvNet>(fc, gen);
    }
    nn::ConvNetConfig cfg;
    cfg.width = s.width;
    cfg.num_blocks = s.blocks;
    cfg.groups = s.groups;
    return std::make_shared<nn::MnistConvNet>(cfg, gen);
}

// Trains one network (the confidence loss when `conf` is set) with per-epoch checkpoints.
void train(nn::Module& model, nn::ConfidenceClassifier* conf, const data::Dataset& tr, float crop_fill,
           std::uint64_t seed, const Settings& s, const std::string& ckpt, const std::string& key,
           bool resume, std::vector<double>& seconds, std::vector<double>* lambdas,
           std::vector<double>* closses, experiment::Progress& bar, std::int64_t& done) {
    nn::Adam opt(model.trainable_parameters(), {.lr = s.lr});
    std::vector<std::pair<std::string, Generator*>> gens;
    nn::BudgetOptions budget;
    budget.lambda0 = s.lambda0;
    budget.beta = s.beta;
    double lambda = budget.lambda0;
    int start = 0;
    if (resume && fs::exists(ckpt)) {
        auto meta = json::parse(nn::read_checkpoint_file(ckpt).metadata);
        if (meta.value("config", "") == key) {
            nn::load_checkpoint(ckpt, model, &opt, gens);
            start = meta.value("epochs_done", 0);
            seconds = meta.value("epoch_seconds", std::vector<double>{});
            lambda = meta.value("lambda", lambda);
            if (lambdas) *lambdas = meta.value("lambda_per_epoch", std::vector<double>{});
            if (closses) *closses = meta.value("confidence_loss_per_epoch", std::vector<double>{});
            done += start;
            std::fprintf(stderr, "resuming %s after epoch %d\n", ckpt.c_str(), start);
        }
    }
    data::BatchIterator it(tr.n, s.batch, seed);
    // Cosine decay of the learning rate to 0 over the whole run, per iteration (no warm-up): Adam's steps
    // shrink at the end, which settles a short run (SGDR eq. 5 without restarts).
    const auto steps_per_epoch = static_cast<std::int64_t>(it.num_batches());
    const nn::WarmupCosineLR schedule(s.lr, 0, steps_per_epoch * s.epochs);
    std::vector<std::int32_t> yb;
    model.train();
    const Generator aug_root(seed, 11), hint_root(seed, 12);
    for (int e = start; e < s.epochs; ++e) {
        const double t0 = experiment::wall_seconds();
        it.start_epoch(static_cast<std::uint64_t>(e));
        double closs_sum = 0;
        std::size_t nb = 0;
        for (auto idx = it.next(); !idx.empty(); idx = it.next(), ++nb) {
            Tensor x = data::batch_tensor(tr, idx, yb);
            // Per-(epoch, batch) generators: the augmentation and hints of a batch do not depend on
            // whether the run was resumed.
            const std::uint64_t tag = static_cast<std::uint64_t>(e) * 1000003 + nb;
            Generator aug = aug_root.fork(tag);
            std::span<float> px(x.data<float>(), static_cast<std::size_t>(x.numel()));
            nn::random_crop_pad(px, idx.size(), 1, 28, 28, s.crop_padding, aug, crop_fill);
            nn::cutout(px, idx.size(), 1, 28, 28, s.cutout, s.cutout_prob, aug, 0.0f);
            opt.zero_grad();
            schedule.apply(opt, e * steps_per_epoch + static_cast<std::int64_t>(nb));
            if (conf) {
                Generator hg = hint_root.fork(tag);
                auto hints = nn::draw_hints(idx.size(), s.hint_prob, hg);
                closs_sum += nn::confidence_backward(*conf, Var(x), yb, hints, lambda, budget);
            } else {
                backward(cross_entropy(model.forward(Var(x)), yb));
            }
            opt.step();
            reset_tape();
        }
        seconds.push_back(experiment::wall_seconds() - t0);
        if (lambdas) lambdas->push_back(lambda);
        if (closses) closses->push_back(closs_sum / double(std::max<std::size_t>(nb, 1)));
        json meta = {{"config", key}, {"epochs_done", e + 1}, {"epoch_seconds", seconds}, {"lambda", lambda}};
        if (lambdas) meta["lambda_per_epoch"] = *lambdas;
        if (closses) meta["confidence_loss_per_epoch"] = *closses;
        nn::save_checkpoint(ckpt, model, &opt, meta.dump(), gens);
        bar.update(++done);
    }
    model.eval();
}

constexpr std::size_t eval_chunk = 250;

// Scores of `method` with perturbation size eps on every image of ds.
std::vector<double> scores(Nets& nets, const std::string& method, const data::Dataset& ds, double eps,
                           const Settings& s) {
    std::vector<double> out;
    out.reserve(ds.n);
    for (std::size_t lo = 0; lo < ds.n; lo += eval_chunk) {
        const std::size_t hi = std::min(ds.n, lo + eval_chunk);
        Tensor x = range_tensor(ds, lo, hi);
        std::vector<double> sc;
        if (method == "baseline") {
            sc = nn::max_softmax_scores(*nets.baseline, x, 1.0);
        } else if (method == "odin") {
            sc = nn::max_softmax_scores(
                *nets.baseline, nn::odin_perturb(*nets.baseline, x, s.temperature, eps), s.temperature);
        } else if (method == "confidence") {
            sc = nn::confidence_logits(*nets.confidence, x);
        } else {
            sc = nn::confidence_logits(*nets.confidence, nn::confidence_perturb(*nets.confidence, x, eps));
        }
        out.insert(out.end(), sc.begin(), sc.end());
        reset_tape();
    }
    return out;
}

// Predicted classes of a network on ds.
std::vector<std::int32_t> predictions(nn::Module& model, const data::Dataset& ds) {
    std::vector<std::int32_t> out;
    NoGradScope ng;
    for (std::size_t lo = 0; lo < ds.n; lo += eval_chunk) {
        const std::size_t hi = std::min(ds.n, lo + eval_chunk);
        Var logits = model.forward(Var(range_tensor(ds, lo, hi)));
        const float* p = logits.value().data<float>();
        const std::int64_t k = logits.dim(1);
        for (std::size_t i = 0; i < hi - lo; ++i)
            out.push_back(
                static_cast<std::int32_t>(std::max_element(p + i * k, p + (i + 1) * k) - (p + i * k)));
        reset_tape();
    }
    return out;
}

void push_metrics(std::map<std::string, std::vector<double>>& dst, const metrics::ConfidenceOodMetrics& m) {
    dst["fpr_at_95_tpr"].push_back(m.fpr_at_95_tpr);
    dst["detection_error"].push_back(m.detection_error);
    dst["auroc"].push_back(m.auroc);
    dst["aupr_in"].push_back(m.aupr_in);
    dst["aupr_out"].push_back(m.aupr_out);
}

// Histogram over [0, 1] of c = sigmoid(z) for confidence logits z.
std::vector<double> histogram(const std::vector<double>& logits, int bins) {
    std::vector<double> h(static_cast<std::size_t>(bins), 0.0);
    for (double z : logits) {
        const double c = 1.0 / (1.0 + std::exp(-z));
        h[static_cast<std::size_t>(std::clamp(int(c * bins), 0, bins - 1))] += 1.0 / double(logits.size());
    }
    return h;
}

// {"values": [...], "mean": m, "std": s} (std with n - 1; 0 for one value).
json summary(const std::vector<double>& v) {
    double m = 0, q = 0;
    for (double x : v) m += x / double(v.size());
    for (double x : v) q += (x - m) * (x - m);
    const double sd = v.size() > 1 ? std::sqrt(q / double(v.size() - 1)) : 0.0;
    return {{"values", v}, {"mean", m}, {"std", sd}};
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"confidence_ood: learned confidence vs max-softmax and ODIN on MNIST and Fashion-MNIST"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/confidence_ood");
    Settings s;
    auto* o_epochs = app.add_option("--epochs", s.epochs, "training epochs")->check(CLI::Range(1, 1000));
    auto* o_seeds =
        app.add_option("--seeds", s.seeds, "networks per method and data set")->check(CLI::Range(1, 100));
    app.add_option("--backbone", s.backbone, "flat (FlatConvNet) or conv (MnistConvNet)")
        ->check(CLI::IsMember({"flat", "conv"}));
    app.add_option("--width", s.width, "conv channels")->check(CLI::Range(1, 512));
    app.add_option("--hidden", s.hidden, "FlatConvNet's hidden (feature) width")->check(CLI::Range(1, 4096));
    app.add_option("--groups", s.groups, "GroupNorm groups (must divide --width)")->check(CLI::Range(1, 512));
    app.add_option("--blocks", s.blocks, "residual conv blocks")->check(CLI::Range(0, 32));
    auto* o_train =
        app.add_option("--train-subset", s.train_subset, "training images (0 = all but the tuning ones)");
    auto* o_eval = app.add_option("--eval-subset", s.eval_subset, "test images per set (0 = all)");
    auto* o_tune = app.add_option("--tune-subset", s.tune_subset, "held-out images per side for epsilon")
                       ->check(CLI::Range(1, 20000));
    app.add_option("--lr", s.lr, "Adam learning rate")->check(CLI::PositiveNumber);
    app.add_option("--batch", s.batch, "batch size")->check(CLI::Range(1, 4096));
    app.add_option("--crop-padding", s.crop_padding, "random-crop padding (0 = off)")
        ->check(CLI::Range(0, 14));
    app.add_option("--cutout", s.cutout, "Cutout square side (0 = off)")->check(CLI::Range(0, 28));
    app.add_option("--cutout-prob", s.cutout_prob, "Cutout probability per image")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--hint-prob", s.hint_prob, "probability that a sample keeps its c (hint)")
        ->check(CLI::Range(0.0, 1.0));
    app.add_option("--lambda0", s.lambda0, "initial confidence-loss weight")->check(CLI::PositiveNumber);
    app.add_option("--beta", s.beta, "confidence budget")->check(CLI::PositiveNumber);
    app.add_option("--temperature", s.temperature, "ODIN temperature")->check(CLI::PositiveNumber);
    app.add_option("--grid", s.grid, "threshold grid of FPR@95 and detection error")
        ->check(CLI::Range(10L, 10000000L));
    app.add_option("--epsilons", s.epsilons, "epsilon grid for ODIN and preprocessing")
        ->check(CLI::Range(0.0, 10.0));
    auto* o_sev = app.add_option("--corruption-severities", s.severities,
                                 "corruption severities used as OOD sets (1-5)")
                      ->check(CLI::Range(1, 5));
    app.add_option("--corruptions", s.corruptions, "corruptions used as OOD sets")
        ->check(CLI::IsMember(data::corruption_names()));
    app.add_option("--in-sets", s.in_sets, "in-distribution sets (mnist, fashion_mnist)")
        ->check(CLI::IsMember({"mnist", "fashion_mnist"}));
    app.add_option("--tune-ood", s.tune_ood,
                   "out side of epsilon tuning: permuted (held-out in-distribution images with permuted "
                   "pixels), none (in-distribution criterion: largest mean score), other (the other data "
                   "set's training split)")
        ->check(CLI::IsMember({"permuted", "none", "other"}));
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {
        // Sized to about 20 min of one core (FlatConvNet, width 8, ~3.5 s of CPU per epoch and network):
        // 10 epochs on 59,000 images (6 epochs already beat 2 clearly in the probes), every test
        // image, the corruptions at severities 3 and 5.
        if (!o_epochs->count()) s.epochs = 10;
        if (!o_seeds->count()) s.seeds = 3;
        if (!o_train->count()) s.train_subset = 0;
        if (!o_eval->count()) s.eval_subset = 0;
        if (!o_tune->count()) s.tune_subset = 1000;
        if (!o_sev->count()) s.severities = {3, 5};
    }
    if (s.backbone == "conv" && s.width % s.groups != 0) {
        std::fprintf(stderr, "confidence_ood: --groups %d must divide --width %lld\n", s.groups,
                     static_cast<long long>(s.width));
        return 2;
    }
    experiment::apply_common(args);
    const fs::path data_dir = data::resolve_data_dir(args.data);

    struct Named {
        std::string name, base;  // result name, corruption-suite base
        data::Dataset train, test;
        data::MeanStd stats;
    };
    std::vector<Named> sets;
    try {
        sets.push_back({"mnist", "mnist", data::load_mnist(data_dir, data::Split::train),
                        data::load_mnist(data_dir, data::Split::test), data::mnist_stats});
        sets.push_back({"fashion_mnist", "fashion-mnist",
                        data::load_fashion_mnist(data_dir, data::Split::train),
                        data::load_fashion_mnist(data_dir, data::Split::test), data::fashion_mnist_stats});
        // Fail early, naming the file and the script, when the corruption suite is missing.
        for (const auto& st : sets)
            for (const auto& c : s.corruptions)
                for (int sev : s.severities) {
                    const fs::path f = data::corruption_dir(data_dir, st.base) / c / std::to_string(sev) /
                                       "t10k-images-idx3-ubyte.gz";
                    if (!fs::exists(f))
                        throw std::runtime_error(f.string() +
                                                 ": file not found. Run scripts/make-corruptions "
                                                 "(or pass --corruptions with fewer names)");
                }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "confidence_ood: %s\n", e.what());
        return 1;
    }
    if (s.tune_subset >= sets[0].train.n / 2) {
        std::fprintf(stderr, "confidence_ood: --tune-subset %zu leaves too few training images\n",
                     s.tune_subset);
        return 2;
    }

    json config = {{"epochs", s.epochs},
                   {"seeds", s.seeds},
                   {"batch", s.batch},
                   {"lr", s.lr},
                   {"optimizer", "adam"},
                   {"lr_schedule", "cosine to 0 per iteration, no warm-up"},
                   {"backbone", s.backbone},
                   {"width", s.width},
                   {"hidden", s.hidden},
                   {"groups", s.groups},
                   {"residual_blocks", s.blocks},
                   {"train_subset", s.train_subset},
                   {"eval_subset", s.eval_subset},
                   {"tune_subset", s.tune_subset},
                   {"crop_padding", s.crop_padding},
                   {"cutout", s.cutout},
                   {"cutout_prob", s.cutout_prob},
                   {"hint_prob", s.hint_prob},
                   {"lambda0", s.lambda0},
                   {"beta", s.beta},
                   {"temperature", s.temperature},
                   {"grid", s.grid},
                   {"epsilons", s.epsilons},
                   {"corruption_severities", s.severities},
                   {"corruptions", s.corruptions},
                   {"corruption_suite_seed", data::corruption_suite_seed},
                   {"in_sets", s.in_sets},
                   {"tune_ood", s.tune_ood},
                   {"tuning_set", tune_ood_descriptions.at(s.tune_ood)}};
    const std::string key = config.dump() + fmt::format("|seed={}", args.seed);
    const auto wanted = [&](const std::string& name) {
        return std::find(s.in_sets.begin(), s.in_sets.end(), name) != s.in_sets.end();
    };
    const std::int64_t total =
        static_cast<std::int64_t>(wanted("mnist") + wanted("fashion_mnist")) * s.seeds * s.epochs * 2;
    experiment::Progress bar("confidence_ood", total);
    std::int64_t done = 0;
    fs::create_directories(fs::path(args.out) / "checkpoints");
    json results, timings;
    const metrics::ConfidenceOodOptions mopt{s.grid, 0.9495, 0.9505};

    for (std::size_t d = 0; d < sets.size(); ++d) {
        const Named& in = sets[d];
        const Named& other = sets[1 - d];
        if (!wanted(in.name)) continue;
        const std::size_t n_train_all = in.train.n - s.tune_subset;
        data::Dataset tr =
            slice(in.train, 0, s.train_subset == 0 ? n_train_all : std::min(s.train_subset, n_train_all));
        data::Dataset tune_in = slice(in.train, n_train_all, in.train.n);
        data::Dataset tune_out = s.tune_ood == "other" ? slice(other.train, 0, s.tune_subset)
                                 : s.tune_ood == "permuted"
                                     ? permuted_pixels(slice(in.train, n_train_all, in.train.n), args.seed * 1000 + d)
                                     : data::Dataset{};
        data::Dataset te = slice(in.test, 0, s.eval_subset == 0 ? in.test.n : s.eval_subset);
        const std::size_t n_eval = te.n;
        for (auto* ds : {&tr, &tune_in, &tune_out, &te})
            if (ds->n > 0) data::normalize(*ds, in.stats);
        const float crop_fill = static_cast<float>(-in.stats.mean / in.stats.std);  // a black pixel

        // OOD test sets, built per use (the corruption files are loaded one at a time).
        std::vector<std::string> ood_names = {other.name, "gaussian_noise_n05_1", "uniform_noise"};
        for (const auto& c : s.corruptions)
            for (int sev : s.severities) ood_names.push_back(fmt::format("corrupt_{}_{}", c, sev));
        auto load_ood = [&](std::size_t k) {
            data::Dataset o;
            if (k == 0)
                o = slice(other.test, 0, n_eval);
            else if (k == 1)
                o = noise_set(n_eval, true, args.seed * 1000 + d);
            else if (k == 2)
                o = noise_set(n_eval, false, args.seed * 1000 + d);
            else {
                const std::size_t j = k - 3;
                const auto& c = s.corruptions[j / s.severities.size()];
                o = slice(data::load_corruption(data_dir, in.base, c, s.severities[j % s.severities.size()]),
                          0, n_eval);
            }
            data::normalize(o, in.stats);
            return o;
        };

        // per seed: accuracy[method net], ood[set][method][metric], misc[method][metric], eps[method]
        std::map<std::string, std::vector<double>> acc, eps_chosen;
        std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>> ood;
        std::map<std::string, std::map<std::string, std::vector<double>>> misc;
        json hist, tim, budget_trace, tuning;
        for (int k = 0; k < s.seeds; ++k) {
            const std::uint64_t seed = args.seed * 7919 + 100 * d + static_cast<std::uint64_t>(k);
            Nets nets;
            {
                Generator gen(seed, 1);
                nets.baseline = make_backbone(s, gen);
            }
            {
                Generator gen(seed, 1);  // the same backbone initialisation, plus the branch
                auto backbone = make_backbone(s, gen);
                nets.confidence = std::make_shared<nn::ConfidenceClassifier>(backbone, gen);
            }
            auto ck = [&](const std::string& m) {
                return (fs::path(args.out) / "checkpoints" / fmt::format("{}_{}_seed{}.ckpt", in.name, m, k))
                    .string();
            };
            train(*nets.baseline, nullptr, tr, crop_fill, seed, s, ck("baseline"), key, args.resume,
                  nets.seconds_per_epoch_baseline, nullptr, nullptr, bar, done);
            train(*nets.confidence, nets.confidence.get(), tr, crop_fill, seed, s, ck("confidence"), key,
                  args.resume, nets.seconds_per_epoch_confidence, &nets.lambda_per_epoch,
                  &nets.confidence_loss_per_epoch, bar, done);
            const double t_eval = experiment::wall_seconds();

            // Test accuracy and misclassification detection.
            auto pred_b = predictions(*nets.baseline, te), pred_c = predictions(*nets.confidence, te);
            auto accuracy = [&](const std::vector<std::int32_t>& p) {
                double a = 0;
                for (std::size_t i = 0; i < te.n; ++i) a += p[i] == te.labels[i];
                return a / double(te.n);
            };
            acc["baseline"].push_back(accuracy(pred_b));
            acc["confidence"].push_back(accuracy(pred_c));

            // Epsilon per method on the held-out tuning set.
            std::map<std::string, double> eps = {{"baseline", 0.0}, {"confidence", 0.0}};
            json tune_trace;
            for (const std::string m : {"odin", "confidence_preprocessing"}) {
                // Lower is better: FPR@95 against the tuning "out" side, or minus the mean in-distribution
                // score without one. The first epsilon of the grid wins ties.
                double best = 0, best_eps = s.epsilons.front();
                for (std::size_t g = 0; g < s.epsilons.size(); ++g) {
                    const double e = s.epsilons[g];
                    const auto si = scores(nets, m, tune_in, e, s);
                    double f = 0;
                    if (s.tune_ood == "none") {
                        for (double v : si) f -= v / double(si.size());
                    } else {
                        f = metrics::confidence_ood_metrics(si, scores(nets, m, tune_out, e, s), mopt)
                                .fpr_at_95_tpr;
                    }
                    if (g == 0 || f < best) best = f, best_eps = e;
                    tune_trace[m].push_back(f);
                }
                eps[m] = best_eps;
                eps_chosen[m].push_back(best_eps);
            }
            std::map<std::string, std::vector<double>> in_scores;
            for (const auto& m : methods) {
                in_scores[m] = scores(nets, m, te, eps[m], s);
                const auto& pred = m == "baseline" || m == "odin" ? pred_b : pred_c;
                std::vector<double> right, wrong;
                for (std::size_t i = 0; i < te.n; ++i)
                    (pred[i] == te.labels[i] ? right : wrong).push_back(in_scores[m][i]);
                if (!wrong.empty() && !right.empty())
                    push_metrics(misc[m], metrics::confidence_ood_metrics(right, wrong, mopt));
            }
            if (k == 0) hist["in"] = histogram(in_scores["confidence"], 40);
            for (std::size_t j = 0; j < ood_names.size(); ++j) {
                const data::Dataset o = load_ood(j);
                for (const auto& m : methods) {
                    auto so = scores(nets, m, o, eps[m], s);
                    push_metrics(ood[ood_names[j]][m],
                                 metrics::confidence_ood_metrics(in_scores[m], so, mopt));
                    if (k == 0 && m == "confidence") hist[ood_names[j]] = histogram(so, 40);
                }
            }
            tuning.push_back(tune_trace);
            budget_trace.push_back({{"lambda_per_epoch", nets.lambda_per_epoch},
                                    {"confidence_loss_per_epoch", nets.confidence_loss_per_epoch}});
            tim.push_back({{"seconds_per_epoch_baseline", nets.seconds_per_epoch_baseline},
                           {"seconds_per_epoch_confidence", nets.seconds_per_epoch_confidence},
                           {"evaluation_seconds", experiment::wall_seconds() - t_eval},
                           {"process_cpu_seconds_so_far", double(std::clock()) / CLOCKS_PER_SEC}});
        }
        json r;
        for (auto& [m, v] : acc) r["accuracy"][m] = summary(v);
        for (auto& [m, v] : eps_chosen) r["epsilon"][m] = v;
        for (auto& [set, mm] : ood)
            for (auto& [m, met] : mm)
                for (auto& [name, v] : met) r["ood"][set][m][name] = summary(v);
        for (auto& [m, met] : misc)
            for (auto& [name, v] : met) r["misclassification"][m][name] = summary(v);
        r["ood_sets"] = ood_names;
        r["confidence_histogram_seed0"] = hist;
        r["budget"] = budget_trace;
        r["confidence_score"] = "the confidence logit z (the ranking of c = sigmoid(z) without its float32 ties at 1)";
        r["tuning_criterion_per_seed"] = tuning;
        r["n_test"] = n_eval;
        r["n_train"] = tr.n;
        results[in.name] = r;
        timings[in.name] = tim;
    }
    bar.finish();

    std::vector<std::vector<std::string>> rows;
    for (auto& [in_name, r] : results.items()) {
        for (auto& [set, mm] : r["ood"].items())
            for (const auto& m : methods)
                for (const auto& name : metric_names)
                    rows.push_back({in_name, set, m, name, experiment::num(mm[m][name]["mean"].get<double>()),
                                    experiment::num(mm[m][name]["std"].get<double>())});
        if (r.contains("misclassification"))
            for (auto& [m, met] : r["misclassification"].items())
                for (const auto& name : metric_names)
                    rows.push_back({in_name, "misclassification", m, name,
                                    experiment::num(met[name]["mean"].get<double>()),
                                    experiment::num(met[name]["std"].get<double>())});
        for (auto& [m, v] : r["accuracy"].items())
            rows.push_back({in_name, "test", m, "accuracy", experiment::num(v["mean"].get<double>()),
                            experiment::num(v["std"].get<double>())});
    }
    json out = {{"provenance", experiment::provenance("confidence_ood", args, config)}, {"results", results}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv", {"in", "set", "method", "metric", "mean", "std"}, rows);
    json run = experiment::run_info(args);
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json as one set
    for (auto& [in_name, r] : results.items()) {
        std::printf("%s: accuracy baseline %.4f confidence %.4f\n", in_name.c_str(),
                    r["accuracy"]["baseline"]["mean"].get<double>(),
                    r["accuracy"]["confidence"]["mean"].get<double>());
        for (auto& [set, mm] : r["ood"].items())
            std::printf("  %-28s FPR@95 base %.3f odin %.3f conf %.3f conf+pre %.3f\n", set.c_str(),
                        mm["baseline"]["fpr_at_95_tpr"]["mean"].get<double>(),
                        mm["odin"]["fpr_at_95_tpr"]["mean"].get<double>(),
                        mm["confidence"]["fpr_at_95_tpr"]["mean"].get<double>(),
                        mm["confidence_preprocessing"]["fpr_at_95_tpr"]["mean"].get<double>());
    }
    return 0;
}
