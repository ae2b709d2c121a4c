// mnist_baselines: the baselines every uncertainty method in sdeuq is compared against.
//
// A deterministic conv net (SDE-Net's MNIST downsampling block, residual conv blocks, linear head), MC
// dropout (the same net with dropout, several masks at test time) and a deep ensemble (independently
// seeded deterministic nets; member 0 is the deterministic model), trained on MNIST and on Fashion-MNIST.
// Reported: accuracy, NLL, ECE (15 and 10 bins), Brier, and OOD detection with the other data set as OOD
// (MNIST -> Fashion-MNIST, Fashion-MNIST -> MNIST) scored by the maximum predicted probability: AUROC,
// AUPR (in and out), TNR at 95% TPR, detection accuracy. Seconds per epoch go to run.json.
//
// Training is checkpointed after every epoch (out/checkpoints/); a killed run resumes where it stopped
// unless --no-resume. A checkpoint from another configuration is not used.
#include <cstdio>
#include <filesystem>
#include <fmt/format.h>

#include "experiments/common.hpp"
#include "experiments/mnist_baselines_lib.hpp"
#include "nn/checkpoint.hpp"
#include "nn/data.hpp"
#include "nn/metrics.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"

using namespace sdeuq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using baselines::Settings;
using baselines::predict;
using baselines::train;
using baselines::evaluate;

}  // namespace

int run(int argc, char** argv) {
    CLI::App app{"mnist_baselines: deterministic conv net, MC dropout and deep ensemble on MNIST and Fashion-MNIST"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/mnist_baselines");
    Settings s;
    auto* o_epochs = app.add_option("--epochs", s.epochs, "training epochs")->check(CLI::Range(1, 1000));
    auto* o_width = app.add_option("--width", s.width, "conv channels")->check(CLI::Range(1, 512));
    auto* o_groups = app.add_option("--groups", s.groups, "GroupNorm groups (must divide --width)")->check(CLI::Range(1, 512));
    auto* o_blocks = app.add_option("--blocks", s.blocks, "residual conv blocks")->check(CLI::Range(0, 32));
    auto* o_ens = app.add_option("--ensemble", s.ensemble, "ensemble members")->check(CLI::Range(1, 50));
    auto* o_train = app.add_option("--train-subset", s.train_subset, "training images per data set (0 = all)")
        ->check(experiment::NonNegativeInteger);
    auto* o_eval = app.add_option("--eval-subset", s.eval_subset, "test images per data set (0 = all)")
        ->check(experiment::NonNegativeInteger);
    app.add_option("--mc-samples", s.mc_samples, "MC dropout samples")->check(CLI::Range(1, 1000));
    app.add_option("--lr", s.lr, "Adam learning rate")->check(experiment::PositiveFinite);
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {  // paper-scale: SDE-Net's width 64, two residual blocks, all data
        if (!o_epochs->count()) s.epochs = 20;
        if (!o_width->count()) s.width = 64;
        if (!o_groups->count()) s.groups = 32;
        if (!app.count("--lr")) s.lr = 1e-3;
        if (!o_blocks->count()) s.blocks = 2;
        if (!o_train->count()) s.train_subset = 0;
        if (!o_eval->count()) s.eval_subset = 0;
        if (!o_ens->count()) s.ensemble = 5;
    }
    if (s.width % s.groups != 0) {
        throw experiment::UsageError(fmt::format("--groups {} must divide --width {}", s.groups, s.width));
    }
    experiment::apply_common(args);
    const fs::path data_dir = data::resolve_data_dir(args.data);

    struct Named {
        std::string name;
        data::Dataset train, test;
    };
    std::vector<Named> sets;
    sets.push_back({"mnist", data::load_mnist(data_dir, data::Split::train), data::load_mnist(data_dir, data::Split::test)});
    sets.push_back({"fashion_mnist", data::load_fashion_mnist(data_dir, data::Split::train),
                    data::load_fashion_mnist(data_dir, data::Split::test)});
    // Each model sees its training set normalised by that set's constants; the OOD set is normalised the
    // same way (the model cannot know an input is from elsewhere).
    json config = {{"epochs", s.epochs}, {"batch", s.batch}, {"lr", s.lr}, {"optimizer", "adam"}, {"width", s.width}, {"groups", s.groups},
                   {"residual_blocks", s.blocks}, {"dropout", s.dropout}, {"mc_samples", s.mc_samples},
                   {"ensemble", s.ensemble}, {"train_subset", s.train_subset}, {"eval_subset", s.eval_subset},
                   {"ood_score", "max softmax probability"}};
    // What each checkpoint belongs to (nn::checkpoint_to_resume): with the data set, its training files'
    // checksums and the model slot added per model below.
    const json run_identity = {{"experiment", "mnist_baselines"}, {"config", config}, {"seed", args.seed}};
    const json train_files = {{"mnist", nn::file_identity(data::mnist_files(data_dir, data::Split::train))},
                              {"fashion_mnist",
                               nn::file_identity(data::fashion_mnist_files(data_dir, data::Split::train))}};
    json results, timings;
    const std::int64_t total = static_cast<std::int64_t>(sets.size()) * s.epochs * (s.ensemble + 1);
    experiment::Progress bar("mnist_baselines", total);
    std::int64_t done = 0;
    fs::create_directories(fs::path(args.out) / "checkpoints");
    for (std::size_t d = 0; d < sets.size(); ++d) {
        const auto& in = sets[d];
        const auto& other = sets[1 - d];
        const data::MeanStd st = in.name == "mnist" ? data::mnist_stats : data::fashion_mnist_stats;
        data::Dataset tr = data::subset(in.train, s.train_subset), te = data::subset(in.test, s.eval_subset),
                      ood = data::subset(other.test, s.eval_subset);
        data::normalize(tr, st);
        data::normalize(te, st);
        data::normalize(ood, st);
        auto ck = [&](const std::string& m) { return (fs::path(args.out) / "checkpoints" / (in.name + "_" + m + ".ckpt")).string(); };
        auto identity = [&](const std::string& slot) {
            json id = run_identity;
            id["dataset"] = in.name;
            id["data_files"] = train_files[in.name];
            id["slot"] = slot;
            return id;
        };
        json res, tim;
        std::vector<double> ens_in(te.n * 10, 0.0), ens_out(ood.n * 10, 0.0);
        for (int k = 0; k < s.ensemble; ++k) {
            auto tr_res = train(tr, 0.0, args.seed * 7919 + 100 * d + static_cast<std::uint64_t>(k), s,
                                ck("member" + std::to_string(k)), identity("member" + std::to_string(k)),
                                args.resume, bar, done);
            const double t0 = experiment::wall_seconds();
            auto p_in = predict(*tr_res.model, te, 0), p_out = predict(*tr_res.model, ood, 0);
            const double ti = experiment::wall_seconds() - t0;
            for (std::size_t i = 0; i < ens_in.size(); ++i) ens_in[i] += p_in[i] / s.ensemble;
            for (std::size_t i = 0; i < ens_out.size(); ++i) ens_out[i] += p_out[i] / s.ensemble;
            if (k == 0) {
                res["deterministic"] = evaluate(p_in, te, p_out);
                tim["deterministic"] = {{"seconds_per_epoch", tr_res.epoch_seconds}, {"inference_seconds", ti}};
            }
        }
        res["deep_ensemble"] = evaluate(ens_in, te, ens_out);
        {
            auto tr_res = train(tr, s.dropout, args.seed * 7919 + 100 * d + 99, s, ck("dropout"), identity("dropout"),
                                args.resume, bar, done);
            const double t0 = experiment::wall_seconds();
            auto p_in = predict(*tr_res.model, te, s.mc_samples), p_out = predict(*tr_res.model, ood, s.mc_samples);
            res["mc_dropout"] = evaluate(p_in, te, p_out);
            tim["mc_dropout"] = {{"seconds_per_epoch", tr_res.epoch_seconds},
                                 {"inference_seconds", experiment::wall_seconds() - t0}};
        }
        results[in.name + "_vs_" + other.name] = res;
        timings[in.name + "_vs_" + other.name] = tim;
    }
    bar.finish();
    std::vector<std::vector<std::string>> rows;
    for (auto& [pair, res] : results.items())
        for (auto& [method, r] : res.items()) {
            std::vector<std::string> row = {pair, method};
            for (auto& [k, v] : r.items()) row.push_back(experiment::num(v.get<double>()));
            rows.push_back(row);
        }
    std::vector<std::string> header = {"pair", "method"};
    for (auto& [k, v] : results.begin()->begin()->items()) header.push_back(k);
    json out = {{"provenance", experiment::provenance("mnist_baselines", args, config)}, {"results", results}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv", header, rows);
    json run = experiment::run_info(args);
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json, ... as one set
    for (auto& [pair, res] : results.items())
        for (auto& [method, r] : res.items())
            std::printf("%-26s %-14s acc %.4f  NLL %.4f  ECE15 %.4f  AUROC %.4f\n", pair.c_str(), method.c_str(),
                        r["accuracy"].get<double>(), r["nll"].get<double>(), r["ece_15"].get<double>(),
                        r["ood_auroc"].get<double>());
    return 0;
}

// Every error ends in one line naming its cause and exit status 1 or 2 (experiments/common.hpp).
int main(int argc, char** argv) { return sdeuq::experiment::run_main("mnist_baselines", argc, argv, run); }
