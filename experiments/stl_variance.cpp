// stl_variance: the gradient-variance study of Xu et al. 2022 ("Infinitely Deep Bayesian Neural Networks
// with SDEs", AISTATS, Figure 4; the reference's examples/grad_check/stl.py, protocol in REFERENCES.md
// "SDE-BNN STL study, details"): how noisy are per-sample gradients of the ELBO under the full ("fmc"),
// sticking-the-landing ("stl") and plain ("ckl") estimators of the path-space KL, along one training run?
//
// Model: a 1D SDE dY = f(t, Y) dt + dW, f = Linear(3 -> 400) - tanh - Linear(400 -> 1) on (sin t, cos t, y),
// prior dY = dW (Brownian motion), so u = f. Data: y = cos(2 pi t) at linspace(.4, .6, 5) U linspace(.8, 1,
// 5); Y_0.4 = cos(0.8 pi), the same for every sample. ELBO per sample = sum_i log N(y_i; Y_ti, 0.1^2) -
// logqp. Training: -mean ELBO over a batch of 256 with the full estimator (as the reference), Euler-Maruyama
// with dt = 3e-3, Adam lr 1e-2 with ExponentialLR 0.999 per iteration, float32. Statistic: at each listed
// iteration, for each estimator, K per-sample (batch 1) gradients of the ELBO over all 2001 parameters, each
// on fresh Brownian noise; per parameter the unbiased std over the K samples; reported: their mean
// ("std_avg", the reference's figure) and their Euclidean norm ("std_norm").
//
// Our deviation from the reference's grid: the reference restarts Euler at each observation time and
// shortens the interval's last step (203 steps); we step on the global grid 0.4 + k dt with the
// observation times inserted (sde/integrate.hpp's grid: 209 steps). Beyond the reference: the same
// statistic with the stochastic adjoint (midpoint forward and backward; the diffusion is constant, so the
// Ito and Stratonovich SDEs coincide) for every KL estimator the adjoint supports; an unsupported one is
// recorded with the library's message.
//
// Checkpointed (model, optimizer, curves so far) after every measurement and every 100 iterations.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "autodiff/random.hpp"
#include "experiments/common.hpp"
#include "nn/checkpoint.hpp"
#include "nn/layers.hpp"
#include "nn/optim.hpp"
#include "sde/adjoint.hpp"
#include "sde/logqp.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Settings {
    std::vector<int> checkpoints{1, 50, 100, 200};
    int samples = 200;  // per-sample gradients per estimator and checkpoint
    int batch = 256;
    int hidden = 400;
    double dt = 3e-3, lr = 1e-2, gamma = 0.999, obs_std = 0.1;
    bool adjoint = true;
};

class StlSde : public PosteriorPriorSDE {
public:
    StlSde(int hidden, std::uint64_t seed) {
        Generator gen(seed, 1);
        drift_.emplace<nn::Linear>(3, hidden, gen);
        drift_.emplace<nn::Activation>(nn::Act::tanh);
        drift_.emplace<nn::Linear>(hidden, 1, gen);
        add_parameters([this] { return drift_.trainable_parameters(); });
    }
    Calculus calculus() const override { return calculus_; }
    void set_calculus(Calculus c) { calculus_ = c; }
    Var f(double t, const Var& y) override {
        std::vector<Var> parts{Var(Tensor::full({y.dim(0), 1}, std::sin(t))),
                               Var(Tensor::full({y.dim(0), 1}, std::cos(t))), y};
        return drift_.forward(concat(parts, 1));
    }
    Var g(double, const Var& y) override { return Var(Tensor::full(y.shape(), 1.0)); }
    Var g_prod(double, const Var&, const Var& dw) override { return dw; }
    Var h(double, const Var& y) override { return Var(Tensor::zeros(y.shape())); }
    Var u(double t, const Var& y) override { return f(t, y); }  // (f - 0) / 1
    nn::Sequential& net() { return drift_; }

private:
    nn::Sequential drift_;
    Calculus calculus_ = Calculus::ito;
};

struct Problem {
    std::vector<double> ts, obs;
    Tensor obs_t;  // [T, 1, 1]
};

Problem make_problem() {
    Problem p;
    for (int i = 0; i < 5; ++i) p.ts.push_back(0.4 + 0.05 * i);
    for (int i = 0; i < 5; ++i) p.ts.push_back(0.8 + 0.05 * i);
    for (double t : p.ts) p.obs.push_back(std::cos(2 * std::numbers::pi * t));
    p.obs_t = Tensor::from_vector(p.obs, {static_cast<std::int64_t>(p.ts.size()), 1, 1});
    return p;
}

// The SolveOptions of every solve here, built in one place.
SolveOptions solve_options(const std::string& estimator, double dt) {
    SolveOptions o;
    o.dt = dt;
    o.estimator = estimator;
    o.solver = estimator == "backprop" ? "euler" : "midpoint";
    return o;
}

std::uint64_t seed_of(Generator g) {
    return (static_cast<std::uint64_t>(g()) << 32) | g();
}

// The Brownian path of the last solve: the adjoint reads it during backward(), so it outlives elbo().
std::unique_ptr<BrownianPath> g_path;

// Per-sample ELBO [B]: sum_i log N(obs_i; Y_ti, 0.1^2) - logqp(T).
Var elbo(StlSde& sde, const Problem& p, const Settings& s, std::int64_t batch, std::uint64_t seed,
         const std::string& estimator, KLEstimator kl) {
    sde.set_calculus(estimator == "backprop" ? Calculus::ito : Calculus::stratonovich);
    const SolveOptions so = solve_options(estimator, s.dt);
    g_path = std::make_unique<BrownianPath>(p.ts.front(), p.ts.back(), batch, seed,
                                            BrownianOptions{so.dt, 0.0, false});
    LogqpResult r = sdeint_logqp(sde, Var(Tensor::full({batch, 1}, p.obs.front())), p.ts, *g_path, so, kl);
    Var z = (r.ys - Var(p.obs_t)) / s.obs_std;
    const double c = -std::log(s.obs_std) - 0.5 * std::log(2 * std::numbers::pi);
    Var logpy = sum(reshape(z * z, Shape{z.dim(0), batch}) * -0.5 + c, {0});
    const std::int64_t nt = r.logqp.dim(0);
    return logpy - reshape(slice(r.logqp, 0, nt - 1, nt), Shape{batch});
}

struct Stat {
    double std_avg = 0, std_norm = 0, mean_norm = 0;
};

// K per-sample gradients of the ELBO on fresh noise: per-parameter unbiased std (Welford, double).
Stat gradient_std(StlSde& sde, const Problem& p, const Settings& s, const std::string& estimator,
                  KLEstimator kl, const Generator& noise) {
    auto params = sde.parameters();
    std::size_t n = 0;
    for (Parameter* q : params) n += static_cast<std::size_t>(q->value().numel());
    std::vector<double> mean(n, 0.0), m2(n, 0.0);
    for (int k = 0; k < s.samples; ++k) {
        for (Parameter* q : params) q->zero_grad();
        backward(sum(elbo(sde, p, s, 1, seed_of(noise.fork(static_cast<std::uint64_t>(k))), estimator, kl)));
        std::size_t i = 0;
        for (Parameter* q : params)
            for (double v : q->grad().to_vector()) {
                const double d = v - mean[i];
                mean[i] += d / (k + 1);
                m2[i] += d * (v - mean[i]);
                ++i;
            }
        reset_tape();
    }
    Stat st;
    for (std::size_t i = 0; i < n; ++i) {
        const double sd = std::sqrt(m2[i] / (s.samples - 1));
        st.std_avg += sd / static_cast<double>(n);
        st.std_norm += sd * sd;
        st.mean_norm += mean[i] * mean[i];
    }
    st.std_norm = std::sqrt(st.std_norm);
    st.mean_norm = std::sqrt(st.mean_norm);
    return st;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "stl_variance: per-sample ELBO gradient std of the full, STL and plain path-space KL estimators"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/stl_variance");
    Settings s;
    auto* o_ck = app.add_option("--checkpoints", s.checkpoints, "training iterations at which to measure");
    auto* o_samples =
        app.add_option("--samples", s.samples, "per-sample gradients per estimator and iteration")
            ->check(CLI::Range(2, 100000));
    app.add_option("--batch", s.batch, "training batch")->check(CLI::Range(1, 100000));
    app.add_option("--hidden", s.hidden, "drift hidden width")->check(CLI::Range(1, 100000));
    app.add_option("--dt", s.dt, "Euler-Maruyama step")->check(CLI::Range(1e-5, 0.1));
    app.add_flag("--adjoint,!--no-adjoint", s.adjoint, "also measure through the stochastic adjoint");
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {
        if (!o_ck->count()) s.checkpoints = {1, 50, 100, 500, 1000, 2000, 3000, 6000};
        if (!o_samples->count()) s.samples = 2000;
    }
    for (std::size_t i = 0; i < s.checkpoints.size(); ++i)
        if (s.checkpoints[i] < 0 || (i > 0 && s.checkpoints[i] <= s.checkpoints[i - 1])) {
            std::fprintf(stderr, "stl_variance: --checkpoints must be increasing and >= 0\n");
            return 2;
        }
    experiment::apply_common(args);
    register_adjoint_estimators();
    const Problem prob = make_problem();

    struct Mode {
        std::string estimator;
        KLEstimator kl;
    };
    std::vector<Mode> modes;
    for (const char* e : {"backprop", "adjoint"}) {
        if (std::string(e) == "adjoint" && !s.adjoint) continue;
        for (KLEstimator kl : {KLEstimator::full, KLEstimator::stl, KLEstimator::plain})
            modes.push_back({e, kl});
    }
    json config = {
        {"checkpoints", s.checkpoints},
        {"samples", s.samples},
        {"batch", s.batch},
        {"hidden", s.hidden},
        {"dt", s.dt},
        {"lr", s.lr},
        {"lr_decay", s.gamma},
        {"obs_std", s.obs_std},
        {"adjoint", s.adjoint},
        {"dtype", "f32"},
        {"train_kl", "full"},
        {"optimizer", "Adam + ExponentialLR"},
        {"solvers", {{"backprop", "euler (Ito)"}, {"adjoint", "midpoint (Stratonovich), adjoint midpoint"}}},
        {"observation_times", prob.ts}};
    const std::string config_key = config.dump() + fmt::format("|seed={}", args.seed);

    StlSde sde(s.hidden, args.seed);
    nn::Adam opt(sde.parameters(), {.lr = s.lr});
    nn::ExponentialLR sched(s.lr, s.gamma);
    const Generator root(args.seed, 2);
    const Generator train_noise = root.fork(1), measure_noise = root.fork(2);

    json curves = json::object(), train_loss = json::array();
    int it = 0;
    std::size_t next_ck = 0;
    double train_seconds = 0, measure_seconds = 0;
    fs::create_directories(fs::path(args.out) / "checkpoints");
    const std::string ckpt = (fs::path(args.out) / "checkpoints" / "stl_variance.ckpt").string();
    if (args.resume && fs::exists(ckpt)) {
        auto meta = json::parse(nn::read_checkpoint_file(ckpt).metadata);
        // The run may be extended: a checkpoint of the same configuration whose measurement iterations so
        // far are a prefix of ours (the training trajectory does not depend on where it is measured).
        auto same_run = [&](const std::string& key) {
            const auto bar_pos = key.rfind("|seed=");
            if (bar_pos == std::string::npos || key.substr(bar_pos) != fmt::format("|seed={}", args.seed))
                return false;
            json old = json::parse(key.substr(0, bar_pos), nullptr, false);
            if (old.is_discarded() || !old.contains("checkpoints")) return false;
            const auto old_ck = old["checkpoints"].get<std::vector<int>>();
            const std::size_t measured = meta.value("next_checkpoint", std::size_t(0));
            if (measured > s.checkpoints.size()) return false;
            for (std::size_t k = 0; k < measured; ++k)
                if (k >= old_ck.size() || old_ck[k] != s.checkpoints[k]) return false;
            const int at = meta.value("iteration", 0);
            if (measured < s.checkpoints.size() ? at > s.checkpoints[measured] : at != s.checkpoints.back())
                return false;
            old.erase("checkpoints");
            json mine = config;
            mine.erase("checkpoints");
            return old == mine;
        };
        if (same_run(meta.value("config", ""))) {
            nn::load_checkpoint(ckpt, sde.net(), &opt);
            it = meta["iteration"];
            next_ck = meta["next_checkpoint"];
            curves = meta["curves"];
            train_loss = meta["train_loss"];
            train_seconds = meta["train_seconds"];
            measure_seconds = meta["measure_seconds"];
            std::fprintf(stderr, "resuming after iteration %d\n", it);
        }
    }
    auto save = [&]() {
        json meta = {{"config", config_key},
                     {"iteration", it},
                     {"next_checkpoint", next_ck},
                     {"curves", curves},
                     {"train_loss", train_loss},
                     {"train_seconds", train_seconds},
                     {"measure_seconds", measure_seconds}};
        nn::save_checkpoint(ckpt, sde.net(), &opt, meta.dump());
    };
    const int total_it = s.checkpoints.back();
    experiment::Progress bar("stl_variance", total_it + static_cast<std::int64_t>(s.checkpoints.size()));
    while (true) {
        if (next_ck < s.checkpoints.size() && it == s.checkpoints[next_ck]) {
            const double t0 = experiment::wall_seconds();
            for (std::size_t m = 0; m < modes.size(); ++m) {
                const std::string key = modes[m].estimator + "_" + kl_estimator_name(modes[m].kl);
                json row = {{"iteration", it}};
                try {
                    Stat st = gradient_std(sde, prob, s, modes[m].estimator, modes[m].kl,
                                           measure_noise.fork(next_ck * 16 + m));
                    row["std_avg"] = st.std_avg;
                    row["std_norm"] = st.std_norm;
                    row["mean_norm"] = st.mean_norm;
                } catch (const UsageError& e) {
                    reset_tape();
                    row["unsupported"] = e.what();
                }
                curves[key].push_back(row);
            }
            measure_seconds += experiment::wall_seconds() - t0;
            ++next_ck;
            save();
            bar.update(it + static_cast<std::int64_t>(next_ck));
        }
        if (it >= total_it) break;
        const double t0 = experiment::wall_seconds();
        sched.apply(opt, it);
        opt.zero_grad();
        Var loss =
            -mean(elbo(sde, prob, s, s.batch, seed_of(train_noise.fork(static_cast<std::uint64_t>(it))),
                       "backprop", KLEstimator::full));
        backward(loss);
        opt.step();
        if (it % 10 == 0) train_loss.push_back({{"iteration", it}, {"loss", loss.item()}});
        reset_tape();
        ++it;
        train_seconds += experiment::wall_seconds() - t0;
        if (it % 100 == 0) save();
        bar.update(it + static_cast<std::int64_t>(next_ck));
    }
    bar.finish();

    std::vector<std::vector<std::string>> rows;
    for (auto& [key, c] : curves.items())
        for (auto& r : c)
            if (r.contains("std_avg"))
                rows.push_back({key, std::to_string(r["iteration"].get<int>()), experiment::num(r["std_avg"]),
                                experiment::num(r["std_norm"]), experiment::num(r["mean_norm"])});
    json out = {{"provenance", experiment::provenance("stl_variance", args, config)},
                {"curves", curves},
                {"train_loss", train_loss}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv",
                   {"mode", "iteration", "std_avg", "std_norm", "mean_norm"}, rows);
    json run = experiment::run_info(args);
    run["timings"] = {{"train_seconds", train_seconds},
                      {"seconds_per_train_iteration", train_seconds / std::max(1, total_it)},
                      {"measure_seconds", measure_seconds}};
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json, ... as one set

    std::printf("%-22s", "iteration");
    for (int c : s.checkpoints) std::printf(" %10d", c);
    std::printf("\n");
    for (auto& [key, c] : curves.items()) {
        std::printf("%-22s", key.c_str());
        for (auto& r : c) {
            if (r.contains("std_avg"))
                std::printf(" %10.3e", r["std_avg"].get<double>());
            else
                std::printf(" %10s", "n/a");
        }
        std::printf("\n");
    }
    std::printf("train %.1f s (%.3f s/iteration), measurements %.1f s\n", train_seconds,
                train_seconds / std::max(1, total_it), measure_seconds);
    return 0;
}
