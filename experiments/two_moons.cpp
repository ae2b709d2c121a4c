// two_moons: the TensorFlow tutorial "Uncertainty-aware Deep Learning with SNGP" in sdeuq.
//
// Four methods on the tutorial's two moons (2 x 500 points, noise 0.1, shifted classes): the deterministic
// ResNet, SNGP (spectral norm 0.9 + random-feature GP head, mean-field logits), MC dropout (10 samples)
// and a deep ensemble (10 members), all with the tutorial's settings: 6 residual Dense layers of 128,
// dropout 0.1, Adam 1e-4, 100 epochs, batch 128. Outputs: accuracies, OOD AUROC of each method's
// uncertainty p(1 - p) (the OOD cluster N((2.5, -1.75), 0.01 I) against fresh in-domain test points),
// and the class-1 probability and uncertainty over the 100 x 100 grid for the figures.
#include <cstdio>
#include <fmt/format.h>

#include "experiments/common.hpp"
#include "nn/data.hpp"
#include "nn/metrics.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"

using namespace sdeuq;
using nlohmann::json;

namespace {

struct Settings {
    int epochs = 100;
    std::size_t batch = 128;
    double lr = 1e-4;
    int mc_samples = 10;
    int ensemble = 10;
    std::size_t n_per_class = 500;
    std::size_t n_ood = 500;
};

Tensor points_tensor(const data::Points2d& p, std::size_t lo, std::size_t hi) {
    Tensor t = Tensor::empty({static_cast<std::int64_t>(hi - lo), 2}, DType::f32);
    std::copy(p.xy.begin() + static_cast<std::ptrdiff_t>(2 * lo), p.xy.begin() + static_cast<std::ptrdiff_t>(2 * hi),
              t.data<float>());
    return t;
}

std::unique_ptr<nn::ResNetClassifier> train_model(bool sngp, std::uint64_t seed, const data::Points2d& train,
                                                  const Settings& s, experiment::Progress& bar, std::int64_t& done) {
    Generator gen(seed, 1);
    nn::ResNetConfig cfg;
    cfg.sngp = sngp;
    auto model = std::make_unique<nn::ResNetClassifier>(cfg, gen);
    nn::Adam opt(model->trainable_parameters(), {.lr = s.lr});
    data::BatchIterator it(train.n, s.batch, seed);
    std::vector<float> xb;
    std::vector<std::int32_t> yb;
    model->train();
    for (int e = 0; e < s.epochs; ++e) {
        model->reset_precision();  // the GP precision is an exact sum over each epoch (momentum -1)
        it.start_epoch(static_cast<std::uint64_t>(e));
        std::int64_t b = 0;
        for (auto idx = it.next(); !idx.empty(); idx = it.next(), ++b) {
            Tensor x = Tensor::empty({static_cast<std::int64_t>(idx.size()), 2}, DType::f32);
            yb.clear();
            for (std::size_t i = 0; i < idx.size(); ++i) {
                x.data<float>()[2 * i] = train.xy[2 * idx[i]];
                x.data<float>()[2 * i + 1] = train.xy[2 * idx[i] + 1];
                yb.push_back(train.labels[idx[i]]);
            }
            opt.zero_grad();
            Var loss = cross_entropy(model->forward(Var(x)), yb);
            experiment::check_loss(loss.item(), sngp ? "sngp" : fmt::format("model of seed {}", seed), e, b);
            backward(loss);
            opt.step();
            reset_tape();
        }
        bar.update(++done);
    }
    return model;
}

enum class Predict { deterministic, sngp, mc_dropout };

// Class probabilities [n x 2] of points under the model.
std::vector<double> predict(nn::ResNetClassifier& model, const data::Points2d& pts, Predict how, int samples) {
    std::vector<double> probs(2 * pts.n, 0.0);
    NoGradScope ng;
    model.eval();
    if (how == Predict::mc_dropout) nn::set_mc_dropout(model, true);
    const std::size_t chunk = 2000;
    for (std::size_t lo = 0; lo < pts.n; lo += chunk) {
        const std::size_t hi = std::min(pts.n, lo + chunk);
        Var x(points_tensor(pts, lo, hi));
        const int reps = how == Predict::mc_dropout ? samples : 1;
        for (int r = 0; r < reps; ++r) {
            Var logits;
            if (how == Predict::sngp) {
                nn::GpPrediction p = model.predict(x);
                logits = nn::mean_field_logits(p.logits, p.variance, model.config().gp.mean_field_factor);
            } else {
                logits = model.forward(x);
            }
            Var pr = softmax(logits, -1);
            for (std::size_t i = 0; i < 2 * (hi - lo); ++i) probs[2 * lo + i] += pr.value().flat(static_cast<std::int64_t>(i)) / reps;
        }
        reset_tape();
    }
    if (how == Predict::mc_dropout) nn::set_mc_dropout(model, false);
    return probs;
}

struct MethodOut {
    std::string name;
    std::vector<double> train_p, test_p, ood_p, grid_p;
    double train_seconds = 0, infer_seconds = 0;
};

std::vector<double> uncertainty(const std::vector<double>& probs) {
    std::vector<double> u(probs.size() / 2);
    for (std::size_t i = 0; i < u.size(); ++i) u[i] = probs[2 * i + 1] * (1.0 - probs[2 * i + 1]);
    return u;
}

}  // namespace

int run(int argc, char** argv) {
    CLI::App app{"two_moons: SNGP vs deterministic ResNet, MC dropout and deep ensemble on two moons"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/two_moons");
    Settings s;
    app.add_option("--epochs", s.epochs, "training epochs")->check(CLI::Range(1, 100000));
    app.add_option("--lr", s.lr, "Adam learning rate")->check(experiment::PositiveFinite);
    app.add_option("--mc-samples", s.mc_samples, "MC dropout samples")->check(CLI::Range(1, 1000));
    app.add_option("--ensemble", s.ensemble, "deep ensemble members")->check(CLI::Range(1, 100));
    SDEUQ_PARSE(app, argc, argv);
    // Quick mode keeps the tutorial's settings but trains 5 ensemble members instead of 10 (the full run
    // takes well under a minute on 2 cores, so there is little to save).
    if (args.quick && app.count("--ensemble") == 0) s.ensemble = 5;
    experiment::apply_common(args);

    data::Points2d train = data::make_two_moons(s.n_per_class, args.seed);
    data::Points2d test = data::make_two_moons(s.n_per_class, args.seed + 1'000'003);
    data::Points2d ood = data::make_two_moons_ood(s.n_ood, args.seed);
    data::Grid2d grid = data::make_grid();

    json config = {{"epochs", s.epochs}, {"batch", s.batch},          {"lr", s.lr},
                   {"dropout", 0.1},     {"hidden", 128},             {"residual_layers", 6},
                   {"mc_samples", s.mc_samples}, {"ensemble", s.ensemble}, {"n_per_class", s.n_per_class},
                   {"n_ood", s.n_ood},   {"sngp", {{"spec_norm_bound", 0.9}, {"num_inducing", 1024},
                                                   {"ridge", 1.0}, {"mean_field_factor", 0.39269908169872414}}}};
    json run = experiment::run_info(args);
    const std::int64_t total_epochs = static_cast<std::int64_t>(s.epochs) * (2 + 1 + s.ensemble);
    experiment::Progress bar("two_moons", total_epochs);
    std::int64_t done = 0;
    std::vector<MethodOut> outs;

    auto eval_all = [&](MethodOut& m, auto&& predict_fn) {
        double t0 = experiment::wall_seconds();
        m.train_p = predict_fn(train);
        m.test_p = predict_fn(test);
        m.ood_p = predict_fn(ood);
        m.grid_p = predict_fn(grid.points);
        m.infer_seconds = experiment::wall_seconds() - t0;
    };

    // MC dropout is the deterministic network evaluated with dropout on (10 masks), as in the tutorial.
    {
        double t0 = experiment::wall_seconds();
        auto model = train_model(false, args.seed * 1000 + 1, train, s, bar, done);
        double tt = experiment::wall_seconds() - t0;
        MethodOut det;
        det.name = "deterministic";
        det.train_seconds = tt;
        eval_all(det, [&](const data::Points2d& p) { return predict(*model, p, Predict::deterministic, 1); });
        outs.push_back(det);
        MethodOut mc;
        mc.name = "mc_dropout";
        mc.train_seconds = tt;
        eval_all(mc, [&](const data::Points2d& p) { return predict(*model, p, Predict::mc_dropout, s.mc_samples); });
        outs.push_back(mc);
    }
    {
        double t0 = experiment::wall_seconds();
        auto model = train_model(true, args.seed * 1000 + 2, train, s, bar, done);
        MethodOut sn;
        sn.name = "sngp";
        sn.train_seconds = experiment::wall_seconds() - t0;
        eval_all(sn, [&](const data::Points2d& p) { return predict(*model, p, Predict::sngp, 1); });
        outs.push_back(sn);
    }
    {
        MethodOut ens;
        ens.name = "deep_ensemble";
        std::vector<std::unique_ptr<nn::ResNetClassifier>> members;
        double t0 = experiment::wall_seconds();
        for (int k = 0; k < s.ensemble; ++k)
            members.push_back(train_model(false, args.seed * 1000 + 100 + static_cast<std::uint64_t>(k), train, s, bar, done));
        ens.train_seconds = experiment::wall_seconds() - t0;
        eval_all(ens, [&](const data::Points2d& p) {
            std::vector<double> acc(2 * p.n, 0.0);
            for (auto& m : members) {
                auto pr = predict(*m, p, Predict::deterministic, 1);
                for (std::size_t i = 0; i < acc.size(); ++i) acc[i] += pr[i] / static_cast<double>(members.size());
            }
            return acc;
        });
        outs.push_back(ens);
    }
    bar.finish();

    json results, timings;
    std::vector<std::vector<std::string>> rows;
    for (auto& m : outs) {
        auto ood_u = uncertainty(m.ood_p), test_u = uncertainty(m.test_p);
        // Scores with in-distribution high: minus the uncertainty.
        std::vector<double> in_s(test_u.size()), out_s(ood_u.size());
        for (std::size_t i = 0; i < in_s.size(); ++i) in_s[i] = -test_u[i];
        for (std::size_t i = 0; i < out_s.size(); ++i) out_s[i] = -ood_u[i];
        auto om = metrics::ood_metrics(in_s, out_s);
        json r = {{"train_accuracy", metrics::accuracy(std::span<const double>(m.train_p), train.labels, 2)},
                  {"test_accuracy", metrics::accuracy(std::span<const double>(m.test_p), test.labels, 2)},
                  {"test_nll", metrics::nll(std::span<const double>(m.test_p), test.labels, 2)},
                  {"ood_auroc", om.auroc},
                  {"ood_aupr_in", om.aupr_in},
                  {"ood_aupr_out", om.aupr_out},
                  {"mean_uncertainty_test", metrics::mean(test_u)},
                  {"mean_uncertainty_ood", metrics::mean(ood_u)}};
        results[m.name] = r;
        timings[m.name] = {{"train_seconds", m.train_seconds}, {"inference_seconds", m.infer_seconds}};
        rows.push_back({m.name, experiment::num(r["train_accuracy"]), experiment::num(r["test_accuracy"]), experiment::num(r["test_nll"]),
                        experiment::num(om.auroc), experiment::num(om.aupr_in), experiment::num(om.aupr_out)});
    }
    json out = {{"provenance", experiment::provenance("two_moons", args, config)}, {"methods", results}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv",
                   {"method", "train_accuracy", "test_accuracy", "test_nll", "ood_auroc", "ood_aupr_in", "ood_aupr_out"},
                   rows);
    // Grid values for the figures: x, y, then per method p(class 1) and p(1 - p).
    {
        std::vector<std::string> header = {"x", "y"};
        for (auto& m : outs) {
            header.push_back(m.name + "_p1");
            header.push_back(m.name + "_uncertainty");
        }
        std::vector<std::vector<std::string>> g;
        for (std::size_t k = 0; k < grid.points.n; ++k) {
            std::vector<std::string> row = {experiment::num(grid.points.xy[2 * k]), experiment::num(grid.points.xy[2 * k + 1])};
            for (auto& m : outs) {
                double p1 = m.grid_p[2 * k + 1];
                row.push_back(experiment::num(p1));
                row.push_back(experiment::num(p1 * (1 - p1)));
            }
            g.push_back(std::move(row));
        }
        result_set.csv("grid.csv", header, g);
        std::vector<std::vector<std::string>> pts;
        for (std::size_t i = 0; i < train.n; ++i)
            pts.push_back({"train", experiment::num(train.xy[2 * i]), experiment::num(train.xy[2 * i + 1]), std::to_string(train.labels[i])});
        for (std::size_t i = 0; i < ood.n; ++i)
            pts.push_back({"ood", experiment::num(ood.xy[2 * i]), experiment::num(ood.xy[2 * i + 1]), "-1"});
        result_set.csv("points.csv", {"set", "x", "y", "label"}, pts);
    }
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json, ... as one set
    for (auto& [name, r] : results.items())
        std::printf("%-14s train acc %.4f  test acc %.4f  OOD AUROC %.4f  (train %.1fs)\n", name.c_str(),
                    r["train_accuracy"].get<double>(), r["test_accuracy"].get<double>(), r["ood_auroc"].get<double>(),
                    timings[name]["train_seconds"].get<double>());
    return 0;
}

// Every error ends in one line naming its cause and exit status 1 or 2 (experiments/common.hpp).
int main(int argc, char** argv) { return sdeuq::experiment::run_main("two_moons", argc, argv, run); }
