// sdebnn_estimators: the paper's adjoint-vs-backprop comparison (Xu et al. 2022, Figure 5) on SDE-BNN itself:
// the same SDE-BNN classifier (sde/sdebnn.hpp SDEBNNClassifier) trained on an MNIST subset from the same
// initialisation, on the same minibatches and Brownian paths, with gradients by
//   backprop         the tape through the midpoint solver
//   adjoint          the stochastic adjoint (Li et al. 2020), midpoint forward and backward
//   reversible_heun  the algebraically reversible Heun adjoint (Kidger et al. 2021)
// all with the plain KL estimator (the one every estimator supports today; the KL is then one more state
// coordinate, sde/sdebnn.hpp). Reported: training loss against iteration and against wall time (run.json:
// timings vary), and the memory the recorded graph holds after one forward + backward (bytes in use in
// the root tape's arena, where backprop keeps every step; the adjoints' per-step temporaries live in
// nested tapes, reused every step) for several numbers of steps, with the solver steps taken.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "experiments/common.hpp"
#include "nn/data.hpp"
#include "nn/optim.hpp"
#include "sde/adjoint.hpp"
#include "sde/sdebnn.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
    int iterations = 40;
    std::size_t batch = 64, train_subset = 1024;
    std::int64_t width = 16, hidden = 16;
    int groups = 4, steps = 8;
    double lr = 1e-3, kl_coef = 1e-3, sigma = 0.2;
    std::vector<int> memory_steps{4, 8, 16, 32};
};

const char* solver_of(const std::string& e) {
    return e == "reversible_heun" ? "reversible_heun" : "midpoint";
}

SDEBNNClassifierConfig model_config(const Settings& s, const std::string& estimator, int steps) {
    SDEBNNClassifierConfig c;
    c.width = s.width;
    c.hidden = s.hidden;
    c.groups = s.groups;
    c.blocks = 1;
    c.block.sigma = s.sigma;
    c.block.steps = steps;
    c.block.kl = KLEstimator::plain;
    c.block.estimator = estimator;
    c.block.solver = solver_of(estimator);
    c.block.hyper_hidden = {2, 64, 2};
    c.block.hyper_act = nn::Act::softplus;
    return c;
}

std::uint64_t seed_of(Generator g) {
    return (static_cast<std::uint64_t>(g()) << 32) | g();
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "sdebnn_estimators: SDE-BNN trained by backprop, the stochastic adjoint and reversible Heun"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/sdebnn_estimators");
    Settings s;
    auto* o_it =
        app.add_option("--iterations", s.iterations, "training iterations")->check(CLI::Range(1, 1000000));
    auto* o_sub = app.add_option("--train-subset", s.train_subset, "MNIST training images")
                      ->check(CLI::Range(16, 60000));
    app.add_option("--width", s.width, "conv channels")->check(CLI::Range(1, 512));
    app.add_option("--hidden", s.hidden, "drift hidden channels")->check(CLI::Range(1, 512));
    app.add_option("--groups", s.groups, "GroupNorm groups")->check(CLI::Range(1, 512));
    app.add_option("--steps", s.steps, "solver steps for training")->check(CLI::Range(1, 1000));
    app.add_option("--memory-steps", s.memory_steps, "step counts of the memory measurement");
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {
        if (!o_it->count()) s.iterations = 300;
        if (!o_sub->count()) s.train_subset = 10000;
    }
    if (s.width % s.groups != 0) {
        std::fprintf(stderr, "sdebnn_estimators: --groups %d must divide --width %lld\n", s.groups,
                     static_cast<long long>(s.width));
        return 2;
    }
    experiment::apply_common(args);
    register_adjoint_estimators();
    data::Dataset tr;
    try {
        tr = data::load_mnist(data::resolve_data_dir(args.data), data::Split::train);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sdebnn_estimators: %s\n", e.what());
        return 1;
    }
    tr.n = std::min(tr.n, s.train_subset);
    tr.images.resize(tr.n * tr.sample_size());
    tr.labels.resize(tr.n);
    data::normalize(tr, data::mnist_stats);
    json config = {
        {"iterations", s.iterations},
        {"batch", s.batch},
        {"train_subset", s.train_subset},
        {"width", s.width},
        {"hidden", s.hidden},
        {"groups", s.groups},
        {"steps", s.steps},
        {"lr", s.lr},
        {"kl_coef", s.kl_coef},
        {"sigma", s.sigma},
        {"kl", "plain"},
        {"memory_steps", s.memory_steps},
        {"solvers",
         {{"backprop", "midpoint"}, {"adjoint", "midpoint"}, {"reversible_heun", "reversible_heun"}}}};
    const std::vector<std::string> estimators{"backprop", "adjoint", "reversible_heun"};
    const Generator root(args.seed, 7);
    json curves, timings, memory;
    experiment::Progress bar("sdebnn_estimators",
                             static_cast<std::int64_t>(estimators.size()) *
                                 (s.iterations + static_cast<std::int64_t>(s.memory_steps.size())));
    std::int64_t done = 0;
    for (const std::string& est : estimators) {
        Generator gen = root.fork(1);  // the same initialisation for every estimator
        SDEBNNClassifier model(model_config(s, est, s.steps), gen);
        nn::Adam opt(model.trainable_parameters(), {.lr = s.lr});
        data::BatchIterator it(tr.n, s.batch, seed_of(root.fork(2)));
        const Generator noise = root.fork(3);
        std::vector<std::int32_t> yb;
        std::vector<double> loss, secs;
        double elapsed = 0;
        std::uint64_t epoch = 0;
        it.start_epoch(epoch);
        for (int i = 0; i < s.iterations; ++i) {
            auto idx = it.next();
            if (idx.empty()) {
                it.start_epoch(++epoch);
                idx = it.next();
            }
            const double t0 = experiment::wall_seconds();
            Tensor x = data::batch_tensor(tr, idx, yb);
            opt.zero_grad();
            ClassifierOutput o = model.forward(Var(x), 1, seed_of(noise.fork(static_cast<std::uint64_t>(i))));
            Var l = cross_entropy(o.logits, yb) + sum(o.kl) * (s.kl_coef / static_cast<double>(tr.n));
            backward(l);
            opt.step();
            loss.push_back(l.item());
            reset_tape();
            elapsed += experiment::wall_seconds() - t0;
            secs.push_back(elapsed);
            bar.update(++done);
        }
        curves[est] = {{"loss", loss}, {"solver", solver_of(est)}};
        timings[est] = {{"cumulative_seconds", secs}, {"seconds_per_iteration", elapsed / s.iterations}};
        // Memory of one forward + backward at each step count (a fresh model each, batch 64).
        for (int steps : s.memory_steps) {
            Generator g2 = root.fork(1);
            SDEBNNClassifier m(model_config(s, est, steps), g2);
            std::vector<std::size_t> idx(std::min<std::size_t>(s.batch, tr.n));
            for (std::size_t k = 0; k < idx.size(); ++k) idx[k] = k;
            Tensor x = data::batch_tensor(tr, idx, yb);
            reset_tape();
            ClassifierOutput o = m.forward(Var(x), 1, 99);
            backward(cross_entropy(o.logits, yb) + sum(o.kl) * 1e-3);
            const double mib = static_cast<double>(current_tape().arena().bytes_in_use()) / (1024.0 * 1024.0);
            memory[est].push_back(
                {{"steps", steps}, {"solver_steps", m.steps_taken()}, {"root_tape_mib", mib}});
            reset_tape();
            bar.update(++done);
        }
    }
    bar.finish();
    std::vector<std::vector<std::string>> rows;
    for (const auto& est : estimators)
        for (std::size_t i = 0; i < curves[est]["loss"].size(); ++i)
            rows.push_back({est, std::to_string(i), experiment::num(curves[est]["loss"][i].get<double>())});
    json out = {{"provenance", experiment::provenance("sdebnn_estimators", args, config)},
                {"curves", curves},
                {"memory", memory}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("training.csv", {"estimator", "iteration", "loss"}, rows);
    json run = experiment::run_info(args);
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, training.csv, run.json as one set
    for (const auto& est : estimators) {
        std::printf("%-16s final loss %.4f  %.3f s/iteration  memory(MiB) by steps:", est.c_str(),
                    curves[est]["loss"].back().get<double>(),
                    timings[est]["seconds_per_iteration"].get<double>());
        for (auto& m : memory[est])
            std::printf(" %d:%.2f", m["steps"].get<int>(), m["root_tape_mib"].get<double>());
        std::printf("\n");
    }
    return 0;
}
