// uq_benchmark: every classifier with uncertainty registered with nn/uq_method.hpp, on one protocol.
//
// For each in-distribution set (MNIST, Fashion-MNIST) and each registered method: fit on the training
// images (normalised by the set's constants), predict the test images and every OOD set (normalised the
// same way: the model cannot know an input is from elsewhere). OOD sets: the other data set's test images
// and uniform-noise images (pixels U(0, 1) before normalisation, as many as test images).
// Metrics, all computed here by the same code for every method (nn/metrics.hpp):
//   accuracy, NLL, Brier, ECE (15 equal-width bins on the max probability);
//   per OOD set, with the method's OOD score (UqMethodInfo::ood_score; in-distribution positive):
//   AUROC, AUPR in, AUPR out, TNR at 95% TPR; the OOD AUROC of every other score as well;
//   misclassification AUROC: the same score separating correct (positive) from wrong test predictions;
//   parameter count. Training seconds and prediction seconds per 1000 images go to run.json (they vary
//   from run to run; results.json is byte-identical for a seed and configuration with 1 or 2 threads).
// Corrupted test images (nn/corruptions.hpp: 9 corruptions at severities 1-5, in memory from the suite's
// seed; --corrupted-images per corruption and severity): per severity, the mean over the corruptions of the
// accuracy, NLL and ECE, and of the AUROC of the OOD score separating clean (positive) from corrupted test
// images (the same first images of the test set).
// The scores "max_prob" (1 - max_c p_c) and "entropy" (-sum_c p_c log p_c) are added for every method.
//
// One run is one seed; scripts/sweep uq_benchmark --seeds 0-4 runs the seeds and aggregates them (mean, std,
// n) for reports/uq_benchmark.md. Training checkpoints every epoch under OUT/checkpoints and resumes.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "experiments/common.hpp"
#include "nn/data.hpp"
#include "nn/metrics.hpp"
#include "nn/uq_method.hpp"
// The corruption suite (nn/corruptions.hpp) comes from the learned-confidence work; where it is part of the
// build, the corrupted test sets join the benchmark (--corrupted-images).
#if __has_include("nn/corruptions.hpp")
#include "nn/corruptions.hpp"
#define SDEUQ_HAVE_CORRUPTIONS 1
#else
#define SDEUQ_HAVE_CORRUPTIONS 0
#endif

using namespace sdeuq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

data::Dataset noise_images(std::size_t n, const data::Dataset& like, std::uint64_t seed) {
    data::Dataset out;
    out.n = n;
    out.shape = like.shape;
    out.num_classes = like.num_classes;
    out.labels.assign(n, 0);
    out.images.resize(n * like.sample_size());
    Generator g(seed, 7);
    Tensor u = rand_uniform({static_cast<std::int64_t>(out.images.size())}, g, DType::f64);
    for (std::size_t i = 0; i < out.images.size(); ++i)
        out.images[i] = static_cast<float>(u.flat(static_cast<std::int64_t>(i)));
    return out;
}

// FNV-1a: a method's name as a seed component that does not depend on registration order.
std::uint64_t name_hash(const std::string& s) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
}

std::vector<double> negated(const std::vector<double>& v) {
    std::vector<double> o(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) o[i] = -v[i];
    return o;
}

json finite_or_null(double v) {
    return std::isfinite(v) ? json(v) : json(nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "uq_benchmark: every registered classifier with uncertainty on MNIST and Fashion-MNIST, "
        "OOD the other set and noise"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/uq_benchmark");
    nn::UqSettings s;
    std::size_t train_subset = 3000, eval_subset = 1000, corrupted_images = 100;
    std::string methods_arg;
    std::vector<std::string> option_args;
    // Quick mode: a few minutes for 2 seeds on 2 cores (3000 training images, 3 epochs of batch 64).
    s.epochs = 3;
    s.batch = 64;
    s.lr = 3e-3;
    s.width = 16;
    s.groups = 4;
    s.blocks = 1;
    s.ensemble = 3;
    s.mc_samples = 5;
    auto* o_corr = app.add_option("--corrupted-images", corrupted_images,
                                  "test images per corruption and severity (0 = none; quick 100, full 1000)");
    auto* o_batch = app.add_option("--batch", s.batch, "minibatch size (quick 64, full 128)")
                        ->check(CLI::Range(1, 100000));
    auto* o_epochs = app.add_option("--epochs", s.epochs, "training epochs (quick 3, full 20)")
                         ->check(CLI::Range(1, 1000));
    auto* o_width =
        app.add_option("--width", s.width, "conv channels (quick 16, full 64)")->check(CLI::Range(1, 512));
    auto* o_groups =
        app.add_option("--groups", s.groups, "GroupNorm groups, must divide --width (quick 4, full 32)")
            ->check(CLI::Range(1, 512));
    auto* o_blocks = app.add_option("--blocks", s.blocks, "residual conv blocks (quick 1, full 2)")
                         ->check(CLI::Range(0, 32));
    auto* o_ens = app.add_option("--ensemble", s.ensemble, "deep ensemble members (quick 3, full 5)")
                      ->check(CLI::Range(1, 50));
    auto* o_mc = app.add_option("--mc-samples", s.mc_samples, "MC dropout masks (quick 5, full 10)")
                     ->check(CLI::Range(1, 1000));
    auto* o_train =
        app.add_option("--train-subset", train_subset, "training images per set (0 = all; quick 3000)");
    auto* o_eval =
        app.add_option("--eval-subset", eval_subset, "test and OOD images per set (0 = all; quick 1000)");
    auto* o_lr = app.add_option("--lr", s.lr, "Adam learning rate (quick 3e-3, full 1e-3)")
                     ->check(CLI::PositiveNumber);
    app.add_option("--dropout", s.dropout, "MC dropout rate")->check(CLI::Range(0.0, 0.95));
    app.add_option("--methods", methods_arg, "comma-separated methods (default: every registered one)");
    app.add_option("--option", option_args, "method option METHOD.KEY=VALUE (repeatable)");
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {  // SDE-Net's MNIST scale: width 64, 2 residual blocks, all data
        if (!o_epochs->count()) s.epochs = 20;
        if (!o_width->count()) s.width = 64;
        if (!o_groups->count()) s.groups = 32;
        if (!o_blocks->count()) s.blocks = 2;
        if (!o_ens->count()) s.ensemble = 5;
        if (!o_mc->count()) s.mc_samples = 10;
        if (!o_train->count()) train_subset = 0;
        if (!o_eval->count()) eval_subset = 0;
        if (!o_corr->count()) corrupted_images = 1000;
        if (!o_lr->count()) s.lr = 1e-3;
        if (!o_batch->count()) s.batch = 128;
    }
    if (s.width % s.groups != 0) {
        std::fprintf(stderr, "uq_benchmark: --groups %d must divide --width %lld\n", s.groups,
                     static_cast<long long>(s.width));
        return 2;
    }
    std::vector<nn::UqMethodInfo> methods;
    try {
        if (methods_arg.empty()) {
            methods = nn::uq_methods();
        } else {
            std::size_t pos = 0;
            while (pos <= methods_arg.size()) {
                const std::size_t comma = std::min(methods_arg.find(',', pos), methods_arg.size());
                methods.push_back(nn::uq_method(methods_arg.substr(pos, comma - pos)));
                pos = comma + 1;
            }
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "uq_benchmark: --methods: %s\n", e.what());
        return 2;
    }
    // --option METHOD.KEY=VALUE, for registered methods only.
    std::map<std::string, std::map<std::string, std::string>> method_options;
    for (const auto& o : option_args) {
        const auto dot = o.find('.'), eq = o.find('=');
        if (dot == std::string::npos || eq == std::string::npos || dot > eq) {
            std::fprintf(stderr, "uq_benchmark: --option '%s' is not METHOD.KEY=VALUE\n", o.c_str());
            return 2;
        }
        try {
            nn::uq_method(o.substr(0, dot));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "uq_benchmark: --option '%s': %s\n", o.c_str(), e.what());
            return 2;
        }
        method_options[o.substr(0, dot)][o.substr(dot + 1, eq - dot - 1)] = o.substr(eq + 1);
    }
    experiment::apply_common(args);
    const fs::path data_dir = data::resolve_data_dir(args.data);

    struct Named {
        std::string name;
        data::Dataset train, test;
        data::MeanStd stats;
    };
    std::vector<Named> sets;
    try {
        sets.push_back({"mnist", data::load_mnist(data_dir, data::Split::train),
                        data::load_mnist(data_dir, data::Split::test), data::mnist_stats});
        sets.push_back({"fashion_mnist", data::load_fashion_mnist(data_dir, data::Split::train),
                        data::load_fashion_mnist(data_dir, data::Split::test), data::fashion_mnist_stats});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "uq_benchmark: %s (run scripts/fetch-data)\n", e.what());
        return 1;
    }

    json method_list = json::array();
    for (auto& m : methods)
        method_list.push_back({{"name", m.name},
                               {"title", m.title},
                               {"description", m.description},
                               {"ood_score", m.ood_score},
                               {"options", method_options[m.name]}});
    json config = {{"epochs", s.epochs},
                   {"batch", s.batch},
                   {"lr", s.lr},
                   {"optimizer", "adam"},
                   {"width", s.width},
                   {"groups", s.groups},
                   {"residual_blocks", s.blocks},
                   {"dropout", s.dropout},
                   {"mc_samples", s.mc_samples},
                   {"ensemble", s.ensemble},
                   {"train_subset", train_subset},
                   {"eval_subset", eval_subset},
                   {"ece_bins", 15},
                   {"methods", method_list},
                   {"ood_sets", {"the other data set's test images", "uniform noise U(0,1) images"}}};
    if (!SDEUQ_HAVE_CORRUPTIONS) corrupted_images = 0;
    config["corrupted_images"] = corrupted_images;

    std::int64_t total = 0;
    for (auto& m : methods)
        total +=
            static_cast<std::int64_t>(sets.size()) * s.epochs * (m.name == "deep_ensemble" ? s.ensemble : 1);
    experiment::Progress bar("uq_benchmark", total);
    std::int64_t done = 0;
    json results, timings;
    for (std::size_t d = 0; d < sets.size(); ++d) {
        const auto& in = sets[d];
        const auto& other = sets[1 - d];
        data::Dataset tr = data::subset(in.train, train_subset), te = data::subset(in.test, eval_subset);
        // Corrupted copies of the first test images (before normalisation), severity-major.
        std::vector<std::vector<std::pair<std::string, data::Dataset>>> corrupted;
        data::Dataset clean_c = data::subset(in.test, corrupted_images);
#if SDEUQ_HAVE_CORRUPTIONS
        if (corrupted_images > 0)
            for (int sev = 1; sev <= data::num_severities; ++sev) {
                corrupted.emplace_back();
                for (const auto& cname : data::corruption_names()) {
                    data::Dataset cd = data::corrupt(clean_c, in.name == "mnist" ? "mnist" : "fashion-mnist",
                                                     cname, sev, data::corruption_suite_seed);
                    data::normalize(cd, in.stats);
                    corrupted.back().emplace_back(cname, std::move(cd));
                }
            }
#endif
        data::normalize(clean_c, in.stats);
        std::vector<std::pair<std::string, data::Dataset>> oods;
        oods.emplace_back(other.name, data::subset(other.test, eval_subset));
        oods.emplace_back("noise", noise_images(te.n, te, data::splitmix64(args.seed * 31 + d)));
        data::normalize(tr, in.stats);
        data::normalize(te, in.stats);
        for (auto& [name, ds] : oods) data::normalize(ds, in.stats);
        for (auto& info : methods) {
            nn::UqSettings ms = s;
            ms.quick = args.quick;
            ms.num_classes = static_cast<std::int64_t>(tr.num_classes);
            ms.input_shape = tr.shape;
            ms.seed = data::splitmix64(args.seed ^ data::splitmix64(name_hash(info.name) + 17 * d));
            ms.options = method_options[info.name];
            ms.checkpoint_dir = (fs::path(args.out) / "checkpoints" / in.name / info.name).string();
            ms.resume = args.resume;
            ms.on_epoch = [&] { bar.update(++done, in.name + " " + info.name); };
            json r, t;
            try {
                auto method = info.make(ms);
                const double t0 = experiment::wall_seconds();
                method->fit(tr);
                t["train_seconds"] = experiment::wall_seconds() - t0;
                const double t1 = experiment::wall_seconds();
                nn::UqPrediction p_in = method->predict(te);
                t["predict_seconds_per_1000"] =
                    (experiment::wall_seconds() - t1) / static_cast<double>(te.n) * 1000;
                const std::size_t c = tr.num_classes;
                auto add_common_scores = [&](nn::UqPrediction& p, std::size_t n) {
                    if (p.probs.size() != n * c)
                        throw std::runtime_error(
                            fmt::format("{}: predict returned {} probabilities for {} images "
                                        "x {} classes",
                                        info.name, p.probs.size(), n, c));
                    auto mp = metrics::max_prob(std::span<const double>(p.probs), c);
                    for (double& v : mp) v = 1.0 - v;
                    p.scores["max_prob"] = mp;
                    p.scores["entropy"] = metrics::predictive_entropy(std::span<const double>(p.probs), c);
                    for (auto& [k, v] : p.scores)
                        if (v.size() != n)
                            throw std::runtime_error(fmt::format("{}: score {} has {} values for {} images",
                                                                 info.name, k, v.size(), n));
                };
                add_common_scores(p_in, te.n);
                if (!p_in.scores.count(info.ood_score))
                    throw std::runtime_error(fmt::format("{}: its OOD score '{}' is not among its scores",
                                                         info.name, info.ood_score));
                std::span<const double> pin(p_in.probs);
                r["accuracy"] = metrics::accuracy(pin, te.labels, c);
                r["nll"] = metrics::nll(pin, te.labels, c);
                r["brier"] = metrics::brier(pin, te.labels, c);
                r["ece"] = metrics::ece(pin, te.labels, c, 15);
                r["parameters"] = method->parameter_count();
                r["ood_score"] = info.ood_score;
                // Misclassification: correct predictions positive, scored by minus the uncertainty.
                {
                    auto pred = metrics::argmax(pin, c);
                    std::vector<double> right, wrong;
                    const auto& u = p_in.scores[info.ood_score];
                    for (std::size_t i = 0; i < te.n; ++i)
                        (pred[i] == te.labels[i] ? right : wrong).push_back(-u[i]);
                    r["misclassification_auroc"] =
                        right.empty() || wrong.empty()
                            ? json(nullptr)
                            : finite_or_null(metrics::ood_metrics(right, wrong).auroc);
                }
                json ood;
                for (auto& [oname, ods] : oods) {
                    nn::UqPrediction p_out = method->predict(ods);
                    add_common_scores(p_out, ods.n);
                    const auto om = metrics::ood_metrics(negated(p_in.scores[info.ood_score]),
                                                         negated(p_out.scores[info.ood_score]));
                    json o = {{"auroc", om.auroc},
                              {"aupr_in", om.aupr_in},
                              {"aupr_out", om.aupr_out},
                              {"tnr_at_95_tpr", om.tnr_at_95_tpr}};
                    for (auto& [k, v] : p_in.scores)
                        if (p_out.scores.count(k))
                            o["auroc_by_score"][k] =
                                metrics::ood_metrics(negated(v), negated(p_out.scores[k])).auroc;
                    ood[oname] = o;
                }
                r["ood"] = ood;
                if (!corrupted.empty()) {
                    nn::UqPrediction p_clean = method->predict(clean_c);
                    add_common_scores(p_clean, clean_c.n);
                    const auto c = tr.num_classes;
                    json cor;
                    for (std::size_t sev = 0; sev < corrupted.size(); ++sev) {
                        double acc = 0, nll = 0, ece = 0, auroc = 0;
                        const double k = static_cast<double>(corrupted[sev].size());
                        for (auto& [cname, cd] : corrupted[sev]) {
                            nn::UqPrediction pc = method->predict(cd);
                            add_common_scores(pc, cd.n);
                            std::span<const double> pp(pc.probs);
                            acc += metrics::accuracy(pp, cd.labels, c) / k;
                            nll += metrics::nll(pp, cd.labels, c) / k;
                            ece += metrics::ece(pp, cd.labels, c, 15) / k;
                            auroc += metrics::ood_metrics(negated(p_clean.scores[info.ood_score]),
                                                          negated(pc.scores[info.ood_score]))
                                         .auroc /
                                     k;
                        }
                        cor[fmt::format("severity_{}", sev + 1)] = {
                            {"accuracy", acc}, {"nll", nll}, {"ece", ece}, {"auroc_vs_clean", auroc}};
                    }
                    cor["clean_accuracy"] =
                        metrics::accuracy(std::span<const double>(p_clean.probs), clean_c.labels, c);
                    r["corrupted"] = cor;
                }
            } catch (const std::exception& e) {
                std::fprintf(stderr, "\nuq_benchmark: %s on %s failed: %s\n", info.name.c_str(),
                             in.name.c_str(), e.what());
                return 1;
            }
            results[in.name][info.name] = r;
            timings[in.name][info.name] = t;
        }
    }
    bar.finish();

    std::vector<std::vector<std::string>> rows;
    for (auto& [set, res] : results.items())
        for (auto& [method, r] : res.items())
            for (auto& [oname, o] : r["ood"].items())
                rows.push_back(
                    {set, method, experiment::num(r["accuracy"].get<double>()),
                     experiment::num(r["nll"].get<double>()), experiment::num(r["brier"].get<double>()),
                     experiment::num(r["ece"].get<double>()), oname,
                     experiment::num(o["auroc"].get<double>()), experiment::num(o["aupr_in"].get<double>()),
                     experiment::num(o["aupr_out"].get<double>()),
                     experiment::num(o["tnr_at_95_tpr"].get<double>())});
    json out = {{"provenance", experiment::provenance("uq_benchmark", args, config)}, {"results", results}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv",
                   {"in_distribution", "method", "accuracy", "nll", "brier", "ece", "ood_set",
                    "ood_auroc", "ood_aupr_in", "ood_aupr_out", "ood_tnr_at_95_tpr"},
                   rows);
    json run = experiment::run_info(args);
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json, ... as one set
    for (auto& [set, res] : results.items())
        for (auto& [method, r] : res.items()) {
            std::printf("%-14s %-14s acc %.4f  NLL %.4f  ECE %.4f", set.c_str(), method.c_str(),
                        r["accuracy"].get<double>(), r["nll"].get<double>(), r["ece"].get<double>());
            for (auto& [oname, o] : r["ood"].items())
                std::printf("  AUROC(%s) %.4f", oname.c_str(), o["auroc"].get<double>());
            std::printf("  train %.1fs\n", timings[set][method]["train_seconds"].get<double>());
        }
    return 0;
}
