// sdenet_regression: study 5 of issue 12, SDE-Net's regression variant on Boston housing against MC dropout
// and a deep ensemble.
//
// Protocol (the usual UCI one, Hernandez-Lobato & Adams 2015): --splits random 90/10 train/test splits
// (seeded permutations); features and target standardised with the training split's mean and std; RMSE and
// Gaussian NLL reported in the original units (MEDV, $1000s), mean +- std (ddof 1) over splits.
//   * SDE-Net: the reference's YearMSD model with d = 13 (Linear(13, 50), 4 Euler-Maruyama steps, drift
//     ReLU(Linear(50, 50)), diffusion Linear(50, 100)-ReLU-Linear(100, 1)-sigmoid on h0, head ReLU-Linear(50,
//     2), std = softplus + 1e-3), its loss mean(log s^2 + (y - m)^2 / s^2), two SGD optimizers (momentum 0.9,
//     weight decay 5e-4), gradient-norm clip 100, sigma 0.1 in training until epoch 30 then 0.5 (the
//     reference), evaluation at sigma 0.5 with 10 passes. Boston has 455 training rows instead of YearMSD's
//     463,715, so the reference's lr 1e-4 for 60 epochs of 3,622 batches would barely move: here batch 32,
//     lr 1e-3 (x0.1 after 2/3 of the epochs), diffusion lr 0.01, for --epochs epochs (all flags).
//   * MC dropout: MLP 13-50-2 (ReLU, dropout --dropout after the hidden layer, same heteroscedastic head),
//     Gaussian NLL, Adam; 10 masks at test time.
//   * Deep ensemble (Lakshminarayanan et al. 2017, without adversarial training): 5 such MLPs without
//     dropout, independently initialised and shuffled.
//   Predictive distribution of the stochastic methods: the Gaussian matching the mixture's first two moments,
//   mean = avg m_k, var = avg s_k^2 + var m_k (over passes / members).
//   Early stopping (all three methods, each ensemble member on its own): a random --val-fraction of the
//   training rows is held out; after every epoch the Gaussian NLL of the predictive distribution on it (the
//   test-time one: --passes passes at the evaluation sigma, or masks) is measured, the weights of the best
//   epoch are kept, and training stops after --patience epochs without improvement. The reference's YearMSD
//   script has no validation split (fixed 60 epochs on 463,715 rows); on Boston's ~450 rows fixed-length
//   training overfits the variance head (SDE-Net NLL 15.96 +- 8.51 over 20 splits without it).
// OOD for regression (scores: minus the std of the predicted mean over the passes / members, the
// reference's; and minus SDE-Net's diffusion), in = the test split, out =
//   (a) "shifted": the test inputs moved by --shift standard deviations along a random +-1 direction per
//       feature (a fixed direction per split), in standardised units;
//   (b) "feature_split": a covariate-shift split by one feature (--split-feature, default LSTAT): models are
//       trained (again) on a random 90% of the rows whose feature lies below its 80th percentile, tested on
//       the other 10% of those rows (in) against the rows above it (out).
// Metrics under both definitions (nn/metrics exact, nn/metrics_grid the reference's grid). Each finished
// split is saved to out/checkpoints/splits.json (a killed run resumes after the last finished split).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <numbers>

#include "experiments/common.hpp"
#include "nn/data.hpp"
#include "nn/layers.hpp"
#include "nn/metrics.hpp"
#include "nn/metrics_grid.hpp"
#include "nn/optim.hpp"
#include "sde/sdenet.hpp"

using namespace sdeuq;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
    int splits = 5;
    double test_fraction = 0.1;
    int epochs = 100;
    std::size_t batch = 32;
    int passes = 10;
    std::int64_t hidden = 50;
    double sigma_eval = 0.5;
    double sigma_train_early = 0.1;
    int sigma_switch_epoch = 30;
    sde::SdeNetTrainConfig sdenet;
    double baseline_lr = 1e-3;
    double dropout = 0.05;
    int ensemble = 5;
    double shift = 4.0;
    std::string split_feature = "LSTAT";
    double split_quantile = 0.8;
    std::size_t grid_steps = 200000;
    double val_fraction = 0.1;  // 0: no validation split, train for --epochs
    int patience = 50;
};

// The parameter and buffer values of a module at its best validation epoch.
class BestWeights {
public:
    void save(nn::Module& m) {
        values_.clear();
        for (Parameter* p : m.parameters()) values_.push_back(p->value().clone());
        for (Tensor* b : m.buffers()) values_.push_back(b->clone());
    }
    void restore(nn::Module& m) const {
        std::size_t k = 0;
        for (Parameter* p : m.parameters()) p->value().copy_from(values_.at(k++));
        for (Tensor* b : m.buffers()) b->copy_from(values_.at(k++));
    }
    bool empty() const { return values_.empty(); }

private:
    std::vector<Tensor> values_;
};

// Early-stopping bookkeeping: update() after each epoch with the validation loss; true = stop now.
struct EarlyStop {
    explicit EarlyStop(int patience_epochs) : patience(patience_epochs) {}
    int patience;
    double best = std::numeric_limits<double>::infinity();
    int best_epoch = -1, epochs_run = 0;
    BestWeights weights;
    bool update(nn::Module& m, int epoch, double val_loss) {
        epochs_run = epoch + 1;
        if (val_loss < best) {  // a NaN loss never improves
            best = val_loss;
            best_epoch = epoch;
            weights.save(m);
        }
        return epoch - best_epoch >= patience;
    }
    void finish(nn::Module& m) const {
        if (!weights.empty()) weights.restore(m);
    }
    json summary() const {
        return {{"best_epoch", best_epoch}, {"epochs_run", epochs_run}, {"best_val_nll", best}};
    }
};

// Mean Gaussian NLL (standardised units) of predictive means and variances against targets.
double gaussian_nll_mean(const std::vector<double>& mean, const std::vector<double>& var, const Tensor& y) {
    double nll = 0;
    for (std::size_t i = 0; i < mean.size(); ++i) {
        const double r = double(y.data<float>()[i]) - mean[i];
        nll += 0.5 * (std::log(2 * std::numbers::pi * var[i]) + r * r / var[i]);
    }
    return nll / double(mean.size());
}

// A regression problem in standardised units.
struct Problem {
    Tensor x_train, y_train, x_test, y_test;  // f32 [n, d], [n]
    std::vector<double> y_test_raw;
    double y_mean = 0, y_std = 1;
};

Problem make_problem(const data::TabularDataset& ds, const std::vector<std::size_t>& train,
                     const std::vector<std::size_t>& test) {
    const std::size_t d = ds.d;
    std::vector<double> mu(d, 0.0), sd(d, 0.0);
    for (std::size_t i : train)
        for (std::size_t j = 0; j < d; ++j) mu[j] += ds.x[i * d + j] / double(train.size());
    for (std::size_t i : train)
        for (std::size_t j = 0; j < d; ++j)
            sd[j] += std::pow(ds.x[i * d + j] - mu[j], 2) / double(train.size());
    for (auto& v : sd) v = v > 0 ? std::sqrt(v) : 1.0;  // a constant feature (e.g. CHAS in a split) stays 0
    Problem p;
    for (std::size_t i : train) p.y_mean += ds.y[i] / double(train.size());
    double vy = 0;
    for (std::size_t i : train) vy += std::pow(ds.y[i] - p.y_mean, 2) / double(train.size());
    p.y_std = std::sqrt(vy);
    auto fill = [&](const std::vector<std::size_t>& rows, Tensor& x, Tensor& y) {
        const auto n = static_cast<std::int64_t>(rows.size());
        x = Tensor::empty({n, static_cast<std::int64_t>(d)}, DType::f32);
        y = Tensor::empty({n}, DType::f32);
        for (std::size_t r = 0; r < rows.size(); ++r) {
            for (std::size_t j = 0; j < d; ++j)
                x.data<float>()[r * d + j] = static_cast<float>((ds.x[rows[r] * d + j] - mu[j]) / sd[j]);
            y.data<float>()[r] = static_cast<float>((ds.y[rows[r]] - p.y_mean) / p.y_std);
        }
    };
    fill(train, p.x_train, p.y_train);
    fill(test, p.x_test, p.y_test);
    for (std::size_t i : test) p.y_test_raw.push_back(ds.y[i]);
    return p;
}

Tensor gather_rows(const Tensor& x, std::span<const std::size_t> idx) {
    const std::int64_t d = x.rank() == 2 ? x.dim(1) : 1;
    Tensor out = x.rank() == 2 ? Tensor::empty({static_cast<std::int64_t>(idx.size()), d}, DType::f32)
                               : Tensor::empty({static_cast<std::int64_t>(idx.size())}, DType::f32);
    for (std::size_t r = 0; r < idx.size(); ++r)
        std::copy_n(x.data<float>() + idx[r] * static_cast<std::size_t>(d), d,
                    out.data<float>() + r * static_cast<std::size_t>(d));
    return out;
}

// Predictive moments per test row, in standardised units, plus the epistemic spread (std of the means).
struct Prediction {
    std::vector<double> mean, var, mean_std, diffusion;
};

// 13-50-2 MLP with a heteroscedastic Gaussian head (optionally dropout after the hidden ReLU).
class HeteroMlp : public nn::Module {
public:
    HeteroMlp(std::int64_t d, std::int64_t hidden, double dropout, Generator& gen) {
        l1_ = register_module("l1", std::make_shared<nn::Linear>(d, hidden, gen));
        if (dropout > 0) {
            const std::uint64_t hi = gen(), lo = gen();
            drop_ = register_module(
                "dropout", std::make_shared<nn::Dropout>(dropout, Generator(gen.seed(), (hi << 32) | lo)));
        }
        l2_ = register_module("l2", std::make_shared<nn::Linear>(hidden, 2, gen));
    }
    std::string describe() const override { return "HeteroMlp"; }
    Var forward(const Var& x) override {
        Var h = relu(l1_->forward(x));
        if (drop_) h = drop_->forward(h);
        return l2_->forward(h);
    }
    std::pair<Var, Var> mean_std(const Var& x) {
        Var o = forward(x);
        const std::int64_t n = o.dim(0);
        return {reshape(slice(o, 1, 0, 1), Shape{n}), softplus(reshape(slice(o, 1, 1, 2), Shape{n})) + 1e-3};
    }

private:
    std::shared_ptr<nn::Linear> l1_, l2_;
    std::shared_ptr<nn::Dropout> drop_;
};

// Moments of the mixture of Gaussians N(m_k, s_k^2), k over passes / members.
Prediction mixture(const std::vector<std::vector<double>>& means,
                   const std::vector<std::vector<double>>& stds) {
    const std::size_t n = means[0].size();
    const double k = double(means.size());
    Prediction p;
    p.mean.assign(n, 0.0);
    p.var.assign(n, 0.0);
    p.mean_std.assign(n, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        double m = 0, v = 0, ss = 0;
        for (std::size_t j = 0; j < means.size(); ++j) {
            m += means[j][i] / k;
            v += stds[j][i] * stds[j][i] / k;
        }
        for (std::size_t j = 0; j < means.size(); ++j) ss += (means[j][i] - m) * (means[j][i] - m) / k;
        p.mean[i] = m;
        p.var[i] = v + ss;
        p.mean_std[i] = std::sqrt(ss);
    }
    return p;
}

std::pair<std::vector<double>, std::vector<double>> mlp_pass(HeteroMlp& m, const Tensor& x) {
    NoGradScope ng;
    auto [mu, sd] = m.mean_std(Var(x));
    auto r = std::make_pair(mu.value().to_vector(), sd.value().to_vector());
    reset_tape();
    return r;
}

// Adam on the Gaussian NLL; after every epoch `val_loss()` (if given) feeds the early stop, whose best
// weights are restored at the end.
json train_mlp(HeteroMlp& m, const Tensor& x, const Tensor& y, const Settings& s, std::uint64_t seed,
               const std::function<double()>& val_loss) {
    nn::Adam opt(m.trainable_parameters(), {.lr = s.baseline_lr});
    const auto n = static_cast<std::size_t>(x.dim(0));
    data::BatchIterator it(n, std::min(s.batch, n), seed);
    EarlyStop stop(s.patience);
    for (int e = 0; e < s.epochs; ++e) {
        m.train();
        it.start_epoch(static_cast<std::uint64_t>(e));
        for (auto idx = it.next(); !idx.empty(); idx = it.next()) {
            opt.zero_grad();
            auto [mu, sd] = m.mean_std(Var(gather_rows(x, idx)));
            backward(gaussian_nll(mu, square(sd), Var(gather_rows(y, idx))));
            opt.step();
            reset_tape();
        }
        if (val_loss && stop.update(m, e, val_loss())) break;
    }
    stop.finish(m);
    return val_loss ? stop.summary() : json{{"epochs_run", s.epochs}};
}

// Trains the three methods on (x, y) and predicts on each of `evals`.
struct Trained {
    std::map<std::string, std::vector<Prediction>> preds;  // method -> one per eval set
    json sdenet_losses;
    json stopping;  // method -> early-stopping summary (deep_ensemble: one per member)
};

Trained train_and_predict(const Tensor& x_all, const Tensor& y_all, const std::vector<Tensor>& evals,
                          const Settings& s, std::uint64_t seed) {
    Trained out;
    const std::int64_t d = x_all.dim(1);
    // Hold out the validation rows (a seeded permutation of the training rows).
    Tensor x = x_all, y = y_all, xv, yv;
    const auto n_all = static_cast<std::size_t>(x_all.dim(0));
    const auto n_val = static_cast<std::size_t>(std::lround(s.val_fraction * double(n_all)));
    const bool early = n_val > 0;
    if (early) {
        const auto perm = data::epoch_permutation(n_all, seed, 5);
        const std::span<const std::size_t> pv(perm.data(), n_val), pt(perm.data() + n_val, n_all - n_val);
        xv = gather_rows(x_all, pv);
        yv = gather_rows(y_all, pv);
        x = gather_rows(x_all, pt);
        y = gather_rows(y_all, pt);
    }
    {  // SDE-Net
        Generator gen(seed, 1);
        sde::SdeNetRegressionConfig c;
        c.in_dim = d;
        c.hidden = s.hidden;
        c.sigma = s.sigma_eval;
        sde::SdeNetRegression net(c, gen);
        sde::SdeNetTrainer tr(net, s.sdenet, seed + 1);
        const auto n = static_cast<std::size_t>(x.dim(0));
        data::BatchIterator it(n, std::min(s.batch, n), seed + 2);
        EarlyStop stop(s.patience);
        json losses = json::array();
        for (int e = 0; e < s.epochs; ++e) {
            tr.set_epoch(e);
            tr.set_sigma_train(e < s.sigma_switch_epoch ? s.sigma_train_early : s.sdenet.sigma_train);
            it.start_epoch(static_cast<std::uint64_t>(e));
            double loss = 0, bi = 0, bo = 0;
            int b = 0;
            for (auto idx = it.next(); !idx.empty(); idx = it.next(), ++b) {
                auto st = tr.step(gather_rows(x, idx), gather_rows(y, idx));
                loss += st.task_loss;
                bi += st.bce_in;
                bo += st.bce_out;
            }
            if (e == 0 || e + 1 == s.epochs)
                losses.push_back({{"epoch", e}, {"loss", loss / b}, {"bce_in", bi / b}, {"bce_out", bo / b}});
            if (early) {
                // predict_regression runs at the model's sigma (the evaluation one) and leaves it in eval
                // mode; the trainer's steps switch back to training mode.
                auto r = sde::predict_regression(net, xv, s.passes);
                if (stop.update(net, e, gaussian_nll_mean(r.mean, r.variance, yv))) break;
            }
        }
        stop.finish(net);
        out.sdenet_losses = losses;
        out.stopping["sdenet"] = early ? stop.summary() : json{{"epochs_run", s.epochs}};
        net.set_sigma(s.sigma_eval);
        for (const auto& xe : evals) {
            auto r = sde::predict_regression(net, xe, s.passes);
            Prediction p;
            p.mean = r.mean;
            p.mean_std = r.mean_std;
            p.var = r.variance;
            p.diffusion = sde::diffusion_score(net, xe);
            out.preds["sdenet"].push_back(std::move(p));
        }
    }
    auto mc_predict = [&](HeteroMlp& m, const Tensor& xe) {
        m.eval();
        nn::set_mc_dropout(m, true);
        std::vector<std::vector<double>> ms, ss;
        for (int k = 0; k < s.passes; ++k) {
            auto [mu, sd] = mlp_pass(m, xe);
            ms.push_back(mu);
            ss.push_back(sd);
        }
        nn::set_mc_dropout(m, false);
        return mixture(ms, ss);
    };
    {  // MC dropout
        Generator gen(seed, 2);
        HeteroMlp m(d, s.hidden, s.dropout, gen);
        std::function<double()> val;
        if (early)
            val = [&] {
                const Prediction p = mc_predict(m, xv);
                return gaussian_nll_mean(p.mean, p.var, yv);
            };
        out.stopping["mc_dropout"] = train_mlp(m, x, y, s, seed + 3, val);
        for (const auto& xe : evals) out.preds["mc_dropout"].push_back(mc_predict(m, xe));
    }
    {  // deep ensemble
        std::vector<std::vector<std::vector<double>>> ms(evals.size()), ss(evals.size());
        for (int k = 0; k < s.ensemble; ++k) {
            Generator gen(seed + 100 + static_cast<std::uint64_t>(k), 3);
            HeteroMlp m(d, s.hidden, 0.0, gen);
            std::function<double()> val;
            if (early)
                val = [&] {
                    m.eval();
                    auto [mu, sd] = mlp_pass(m, xv);
                    std::vector<double> var(sd.size());
                    for (std::size_t i = 0; i < sd.size(); ++i) var[i] = sd[i] * sd[i];
                    return gaussian_nll_mean(mu, var, yv);
                };
            out.stopping["deep_ensemble"].push_back(
                train_mlp(m, x, y, s, seed + 200 + static_cast<std::uint64_t>(k), val));
            m.eval();
            for (std::size_t j = 0; j < evals.size(); ++j) {
                auto [mu, sd] = mlp_pass(m, evals[j]);
                ms[j].push_back(mu);
                ss[j].push_back(sd);
            }
        }
        for (std::size_t j = 0; j < evals.size(); ++j)
            out.preds["deep_ensemble"].push_back(mixture(ms[j], ss[j]));
    }
    return out;
}

json ood_json(const std::vector<double>& in, const std::vector<double>& out, std::size_t grid_steps) {
    const auto e = metrics::ood_metrics(in, out);
    const auto g = metrics::grid_ood_metrics(in, out, grid_steps);
    return {{"exact",
             {{"auroc", e.auroc},
              {"tnr_at_95_tpr", e.tnr_at_95_tpr},
              {"detection_accuracy", e.detection_accuracy},
              {"aupr_in", e.aupr_in},
              {"aupr_out", e.aupr_out}}},
            {"grid",
             {{"auroc", g.auroc},
              {"tnr_at_95_tpr", g.tnr_at_95_tpr},
              {"detection_accuracy", g.detection_accuracy},
              {"aupr_in", g.aupr_in},
              {"aupr_out", g.aupr_out}}}};
}

std::vector<double> neg(const std::vector<double>& v) {
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = -v[i];
    return r;
}

// The scores of each method (higher = in-distribution).
std::vector<std::pair<std::string, std::vector<double>>> scores(const std::string& method,
                                                                const Prediction& p) {
    std::vector<std::pair<std::string, std::vector<double>>> s = {{method + "/mean_std", neg(p.mean_std)}};
    if (!p.diffusion.empty()) s.push_back({method + "/diffusion", neg(p.diffusion)});
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "sdenet_regression: SDE-Net, MC dropout and a deep ensemble on Boston housing (RMSE, NLL, OOD)"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/sdenet_regression");
    Settings s;
    s.sdenet.lr = 1e-3;
    s.sdenet.lr_diffusion = 0.01;
    s.sdenet.sigma_train = 0.5;
    s.sdenet.clip_classifier = 100.0;
    s.sdenet.milestones = {};
    s.sdenet.milestones_diffusion = {};
    auto* o_splits = app.add_option("--splits", s.splits, "random 90/10 splits")->check(CLI::Range(1, 1000));
    auto* o_epochs =
        app.add_option("--epochs", s.epochs, "training epochs per model")->check(CLI::Range(1, 100000));
    app.add_option("--batch", s.batch, "batch size")->check(CLI::Range(1, 100000));
    app.add_option("--passes", s.passes, "stochastic passes at evaluation")->check(CLI::Range(2, 1000));
    app.add_option("--hidden", s.hidden, "hidden units")->check(CLI::Range(1, 4096));
    app.add_option("--lr", s.sdenet.lr, "SDE-Net drift/head SGD learning rate")->check(CLI::PositiveNumber);
    app.add_option("--lr-diffusion", s.sdenet.lr_diffusion, "SDE-Net diffusion SGD learning rate")
        ->check(CLI::PositiveNumber);
    auto* o_ms =
        app.add_option("--milestones", s.sdenet.milestones,
                       "SDE-Net lr x0.1 after these 0-based epochs (default: after 2/3 of --epochs)");
    app.add_option("--sigma-train", s.sdenet.sigma_train,
                   "SDE-Net sigma in training from --sigma-switch-epoch")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--sigma-train-early", s.sigma_train_early, "SDE-Net sigma in training before it")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--sigma-switch-epoch", s.sigma_switch_epoch, "epoch of the sigma switch")
        ->check(CLI::Range(0, 100000));
    app.add_option("--sigma-eval", s.sigma_eval, "SDE-Net sigma at evaluation")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--clip", s.sdenet.clip_classifier, "SDE-Net gradient-norm clip (0 = off)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--baseline-lr", s.baseline_lr, "MC dropout / ensemble Adam learning rate")
        ->check(CLI::PositiveNumber);
    app.add_option("--dropout", s.dropout, "MC dropout rate")->check(CLI::Range(0.0, 0.95));
    app.add_option("--ensemble", s.ensemble, "ensemble members")->check(CLI::Range(2, 100));
    app.add_option("--shift", s.shift, "OOD (a): shift in standard deviations")->check(CLI::PositiveNumber);
    app.add_option("--split-feature", s.split_feature, "OOD (b): the feature of the covariate-shift split");
    app.add_option("--split-quantile", s.split_quantile, "OOD (b): rows above this quantile are OOD")
        ->check(CLI::Range(0.5, 0.99));
    app.add_option("--val-fraction", s.val_fraction,
                   "fraction of the training rows held out for early stopping (0 = none)")
        ->check(CLI::Range(0.0, 0.5));
    app.add_option("--patience", s.patience, "early stopping: epochs without a better validation NLL")
        ->check(CLI::Range(1, 100000));
    app.add_option("--grid-steps", s.grid_steps, "threshold grid of the reference metrics")
        ->check(CLI::Range(1, 10000000));
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {
        if (!o_splits->count()) s.splits = 20;
        if (!o_epochs->count()) s.epochs = 300;
    }
    if (!o_ms->count()) s.sdenet.milestones = {static_cast<std::int64_t>(2 * s.epochs / 3) - 1};
    experiment::apply_common(args);
    data::TabularDataset ds;
    try {
        ds = data::load_boston(data::resolve_data_dir(args.data));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "sdenet_regression: %s\n", e.what());
        return 1;
    }
    const auto feat = std::find(ds.feature_names.begin(), ds.feature_names.end(), s.split_feature);
    if (feat == ds.feature_names.end()) {
        std::string all;
        for (auto& f : ds.feature_names) all += " " + f;
        std::fprintf(stderr, "sdenet_regression: --split-feature '%s' is not a column (allowed:%s)\n",
                     s.split_feature.c_str(), all.c_str());
        return 2;
    }
    const std::size_t fj = static_cast<std::size_t>(feat - ds.feature_names.begin());

    json config = {{"data", "Boston housing (506 x 13, target MEDV)"},
                   {"splits", s.splits},
                   {"test_fraction", s.test_fraction},
                   {"epochs", s.epochs},
                   {"batch", s.batch},
                   {"passes", s.passes},
                   {"hidden", s.hidden},
                   {"sdenet_lr", s.sdenet.lr},
                   {"sdenet_lr_diffusion", s.sdenet.lr_diffusion},
                   {"sdenet_milestones", s.sdenet.milestones},
                   {"sdenet_momentum", s.sdenet.momentum},
                   {"sdenet_weight_decay", s.sdenet.weight_decay},
                   {"sdenet_clip", s.sdenet.clip_classifier},
                   {"sigma_train_early", s.sigma_train_early},
                   {"sigma_switch_epoch", s.sigma_switch_epoch},
                   {"sigma_train", s.sdenet.sigma_train},
                   {"sigma_eval", s.sigma_eval},
                   {"ood_noise_std", s.sdenet.ood_noise_std},
                   {"baseline_lr", s.baseline_lr},
                   {"baseline_optimizer", "adam"},
                   {"dropout", s.dropout},
                   {"ensemble", s.ensemble},
                   {"shift", s.shift},
                   {"split_feature", s.split_feature},
                   {"split_quantile", s.split_quantile},
                   {"grid_steps", s.grid_steps},
                   {"val_fraction", s.val_fraction},
                   {"patience", s.patience}};
    const std::string key = config.dump() + fmt::format("|seed={}", args.seed);
    fs::create_directories(fs::path(args.out) / "checkpoints");
    const std::string ckpt = (fs::path(args.out) / "checkpoints" / "splits.json").string();
    json per_split = json::array();
    std::vector<double> split_seconds;
    if (args.resume && fs::exists(ckpt)) {
        std::ifstream f(ckpt);
        json saved = json::parse(f, nullptr, false);
        if (!saved.is_discarded() && saved.value("config", "") == key) {
            per_split = saved["splits"];
            split_seconds = saved.value("seconds", std::vector<double>{});
            std::fprintf(stderr, "resuming %s after split %zu\n", ckpt.c_str(), per_split.size());
        }
    }
    experiment::Progress bar("sdenet_regression", s.splits);
    for (int k = static_cast<int>(per_split.size()); k < s.splits; ++k) {
        const double t0 = experiment::wall_seconds();
        const std::uint64_t seed = args.seed * 1000003 + static_cast<std::uint64_t>(k) * 101;
        // (a) random 90/10 split
        const auto perm = data::epoch_permutation(ds.n, args.seed, static_cast<std::uint64_t>(k) + 1);
        const std::size_t n_test = static_cast<std::size_t>(std::lround(s.test_fraction * double(ds.n)));
        std::vector<std::size_t> test(perm.begin(), perm.begin() + static_cast<std::ptrdiff_t>(n_test));
        std::vector<std::size_t> train(perm.begin() + static_cast<std::ptrdiff_t>(n_test), perm.end());
        Problem p = make_problem(ds, train, test);
        Tensor shifted = p.x_test.clone();
        data::Rng dir(seed, data::Stream::user, 1);
        std::vector<double> sign(ds.d);
        for (auto& v : sign) v = dir.uniform01() < 0.5 ? -1.0 : 1.0;
        for (std::int64_t i = 0; i < shifted.dim(0); ++i)
            for (std::size_t j = 0; j < ds.d; ++j)
                shifted.data<float>()[static_cast<std::size_t>(i) * ds.d + j] +=
                    static_cast<float>(s.shift * sign[j]);
        Trained t = train_and_predict(p.x_train, p.y_train, {p.x_test, shifted}, s, seed);
        json split = {{"split", k}, {"n_train", train.size()}, {"n_test", test.size()}};
        for (auto& [method, preds] : t.preds) {
            const Prediction& pr = preds[0];
            double se = 0, nll = 0;
            for (std::size_t i = 0; i < test.size(); ++i) {
                const double m = pr.mean[i] * p.y_std + p.y_mean, v = pr.var[i] * p.y_std * p.y_std;
                se += std::pow(p.y_test_raw[i] - m, 2);
                nll += 0.5 * (std::log(2 * std::numbers::pi * v) + std::pow(p.y_test_raw[i] - m, 2) / v);
            }
            split["rmse"][method] = std::sqrt(se / double(test.size()));
            split["nll"][method] = nll / double(test.size());
            for (auto& [name, sc] : scores(method, pr)) {
                const auto so = scores(method, preds[1]);
                for (auto& [n2, sc2] : so)
                    if (n2 == name) split["ood"]["shifted"][name] = ood_json(sc, sc2, s.grid_steps);
            }
        }
        split["sdenet_losses"] = t.sdenet_losses;
        split["early_stopping"] = t.stopping;
        // (b) covariate shift by one feature
        std::vector<double> col(ds.n);
        for (std::size_t i = 0; i < ds.n; ++i) col[i] = ds.x[i * ds.d + fj];
        std::vector<double> sorted = col;
        std::sort(sorted.begin(), sorted.end());
        const double cut = sorted[static_cast<std::size_t>(s.split_quantile * double(ds.n - 1))];
        std::vector<std::size_t> low, high;
        for (std::size_t i : perm) (col[i] <= cut ? low : high).push_back(i);
        const std::size_t n_low_test =
            static_cast<std::size_t>(std::lround(s.test_fraction * double(low.size())));
        std::vector<std::size_t> low_test(low.begin(), low.begin() + static_cast<std::ptrdiff_t>(n_low_test));
        std::vector<std::size_t> low_train(low.begin() + static_cast<std::ptrdiff_t>(n_low_test), low.end());
        Problem q = make_problem(ds, low_train, low_test);
        Problem qh = make_problem(ds, low_train, high);  // the same standardisation (training rows)
        Trained tb = train_and_predict(q.x_train, q.y_train, {q.x_test, qh.x_test}, s, seed + 7);
        for (auto& [method, preds] : tb.preds) {
            const auto si = scores(method, preds[0]), so = scores(method, preds[1]);
            for (std::size_t j = 0; j < si.size(); ++j)
                split["ood"]["feature_split"][si[j].first] =
                    ood_json(si[j].second, so[j].second, s.grid_steps);
        }
        split["feature_split"] = {{"feature", s.split_feature},
                                  {"cut", cut},
                                  {"n_train", low_train.size()},
                                  {"n_in", low_test.size()},
                                  {"n_out", high.size()}};
        per_split.push_back(split);
        split_seconds.push_back(experiment::wall_seconds() - t0);
        experiment::write_json(ckpt, {{"config", key}, {"splits", per_split}, {"seconds", split_seconds}});
        bar.update(k + 1);
    }
    bar.finish();

    // Summary: mean +- std (ddof 1) over splits.
    json summary;
    auto ms = [&](const std::vector<double>& v) {
        const auto r = metrics::mean_std(v, v.size() > 1 ? 1 : 0);
        return json{{"mean", r.mean}, {"std", r.std}, {"n", v.size()}};
    };
    std::vector<std::vector<std::string>> rows;
    for (const char* what : {"rmse", "nll"})
        for (auto& [method, v0] : per_split[0][what].items()) {
            (void)v0;
            std::vector<double> v;
            for (auto& sp : per_split) v.push_back(sp[what][method].get<double>());
            summary[what][method] = ms(v);
            rows.push_back({what, method, "", "",
                            experiment::num(summary[what][method]["mean"].get<double>()),
                            experiment::num(summary[what][method]["std"].get<double>())});
        }
    // Early stopping: the best (kept) epoch per method, mean +- std over splits (ensemble: over members too).
    if (s.val_fraction > 0)
        for (const char* method : {"sdenet", "mc_dropout", "deep_ensemble"}) {
            std::vector<double> v;
            for (auto& sp : per_split) {
                const json& e = sp["early_stopping"][method];
                if (e.is_array())
                    for (auto& m : e) v.push_back(m["best_epoch"].get<double>());
                else
                    v.push_back(e["best_epoch"].get<double>());
            }
            summary["best_epoch"][method] = ms(v);
        }
    for (auto& [construction, by_score] : per_split[0]["ood"].items())
        for (auto& [score, defs] : by_score.items())
            for (auto& [def, mets] : defs.items())
                for (auto& [metric, v0] : mets.items()) {
                    (void)v0;
                    std::vector<double> v;
                    for (auto& sp : per_split)
                        v.push_back(sp["ood"][construction][score][def][metric].get<double>());
                    summary["ood"][construction][score][def][metric] = ms(v);
                    rows.push_back({"ood:" + construction, score, def, metric,
                                    experiment::num(ms(v)["mean"].get<double>()),
                                    experiment::num(ms(v)["std"].get<double>())});
                }
    experiment::ResultSet result_set(args.out);
    result_set.csv("results.csv",
                   {"quantity", "method/score", "definition", "metric", "mean", "std"}, rows);
    result_set.json("results.json",
                    {{"provenance", experiment::provenance("sdenet_regression", args, config)},
                     {"summary", summary},
                     {"splits", per_split}});
    json run = experiment::run_info(args);
    run["timings"] = {{"seconds_per_split", split_seconds}};
    result_set.json("run.json", run);
    result_set.commit();  // results.csv, results.json, run.json as one set
    for (auto& [method, r] : summary["rmse"].items())
        std::printf("%-14s RMSE %.3f +- %.3f  NLL %.3f +- %.3f\n", method.c_str(), r["mean"].get<double>(),
                    r["std"].get<double>(), summary["nll"][method]["mean"].get<double>(),
                    summary["nll"][method]["std"].get<double>());
    if (summary.contains("best_epoch"))
        for (auto& [method, r] : summary["best_epoch"].items())
            std::printf("%-14s best epoch %.1f +- %.1f\n", method.c_str(), r["mean"].get<double>(),
                        r["std"].get<double>());
    for (auto& [c, by] : summary["ood"].items())
        for (auto& [sc, d] : by.items())
            std::printf("OOD %-14s %-26s AUROC %.3f +- %.3f\n", c.c_str(), sc.c_str(),
                        d["exact"]["auroc"]["mean"].get<double>(), d["exact"]["auroc"]["std"].get<double>());
    return 0;
}
