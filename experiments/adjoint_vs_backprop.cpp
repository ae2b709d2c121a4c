// adjoint_vs_backprop: how the memory-efficient gradient estimators of sde/adjoint.hpp compare with
// backprop through the solver (the comparison of Figure 5 of Xu et al. 2022, "Infinitely Deep Bayesian
// Neural Networks with Stochastic Differential Equations", AISTATS).
//
// (a) Gradient error against dt. A small neural SDE in float64 (state d = 4, batch 32, drift MLP with tanh,
//     diagonal diffusion of per-coordinate MLPs ending in a sigmoid, Stratonovich, t in [0, 1]) and
//     L = mean(y_1^2). For each dt = 2^-k the gradient of L with respect to y0 and every parameter is
//     computed on ONE Brownian path by
//       backprop_midpoint         backprop through the midpoint solver
//       adjoint                   the stochastic adjoint (Li et al. 2020), midpoint forward and backward
//       reversible_heun           the reversible Heun adjoint (Kidger et al. 2021)
//       backprop_reversible_heun  backprop through the reversible Heun solver
//     and compared by the relative error ||g - g'|| / ||g'||: the adjoint against backprop_midpoint (it is
//     the gradient of the continuous solution, so the gap should shrink with dt), reversible Heun against
//     backprop through the same solver (the "exact adjoint" claim: round-off at every dt) and against
//     backprop_midpoint, and every method against backprop_midpoint at the reference step.
// (b) Training curves. A neural SDE with state d = 1 is fitted to 64 sample paths of an Ornstein-Uhlenbeck
//     process dX = theta (mu - X) dt + sigma dW observed at 20 times, by matching the mean and standard
//     deviation of the marginals at the observation times (the model starts from the data's initial
//     values). The same initial model is trained with Adam by each gradient method, with fixed steps and
//     (backprop, adjoint) adaptive steps; every method sees the same Brownian path at each iteration.
//
// Outputs in --out: results.json (provenance, "gradient_error", "training"), results.csv (gradient
// errors), training.csv (the curves) and run.json (wall time per iteration: never in the results, which
// are byte-identical for a seed whatever the thread count).
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "autodiff/random.hpp"
#include "experiments/common.hpp"
#include "nn/layers.hpp"
#include "nn/optim.hpp"
#include "sde/adjoint.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using nlohmann::json;

namespace {

struct Settings {
    // (a)
    std::int64_t grad_d = 4, grad_batch = 32, grad_hidden = 32;
    int k_min = 2, k_max = 8;  // dt = 2^-k
    int k_ref = 12;
    // (b)
    int iterations = 60;
    std::int64_t data_paths = 64, observations = 20, train_hidden = 32;
    // Model paths per data path: the model's moments are estimated from this many times more paths, so
    // that their Monte Carlo noise does not swamp the training curves.
    std::int64_t model_repeats = 4;
    double ou_theta = 2.0, ou_mu = 1.0, ou_sigma = 0.5, x0_std = 0.2;
    double train_dt = 1.0 / 40;  // the observation times i / 20 are grid points
    double lr = 1e-2;
    double rtol = 1e-3, atol = 1e-3;
    int eval_paths = 8;  // held-out Brownian paths for the final loss
    int eval_k = 8;      // their solves use dt = 2^-eval_k
};

// dY = f(Y) dt + g(Y) o dW with diagonal noise: f an MLP d -> h -> h -> d (tanh) and
// g_i = sigmoid(MLP_i(y_i)), one 1 -> h -> 1 network per coordinate (tanh hidden layer), as torchsde's
// latent SDE example builds its diagonal diffusion. g_i depending on y_i alone makes the noise commutative,
// so that the midpoint and reversible Heun solvers have strong order 1 (a diffusion MLP mixing the
// coordinates would drop them to order 1/2: the Levy areas enter; measured here: slope about 0.47 instead of 0.92).
// The sigmoid bounds the diffusion, so coarse steps stay stable.
class MlpSde : public SDE {
public:
    MlpSde(std::int64_t d, std::int64_t hidden, std::uint64_t seed) {
        Generator gen(seed, 7);
        const nn::LinearOptions o{.dtype = DType::f64};
        drift_.emplace<nn::Linear>(d, hidden, gen, o);
        drift_.emplace<nn::Activation>(nn::Act::tanh);
        drift_.emplace<nn::Linear>(hidden, hidden, gen, o);
        drift_.emplace<nn::Activation>(nn::Act::tanh);
        drift_.emplace<nn::Linear>(hidden, d, gen, o);
        add_parameters([this] { return drift_.trainable_parameters(); });
        // PyTorch's default initialisation of the per-coordinate Linear layers: U(+-1/sqrt(fan_in)).
        const double a2 = 1.0 / std::sqrt(static_cast<double>(hidden));
        w1_ = Parameter("diffusion.w1", rand_uniform({d, hidden}, gen, DType::f64, -1.0, 1.0));
        b1_ = Parameter("diffusion.b1", rand_uniform({d, hidden}, gen, DType::f64, -1.0, 1.0));
        w2_ = Parameter("diffusion.w2", rand_uniform({d, hidden}, gen, DType::f64, -a2, a2));
        b2_ = Parameter("diffusion.b2", rand_uniform({d}, gen, DType::f64, -a2, a2));
        for (Parameter* p : {&w1_, &b1_, &w2_, &b2_}) add_parameter(*p);
    }
    Noise noise() const override { return Noise::diagonal; }
    Calculus calculus() const override { return Calculus::stratonovich; }
    Var f(double, const Var& y) override { return drift_.forward(y); }
    // h[b, i, :] = tanh(y[b, i] w1[i, :] + b1[i, :]),  g[b, i] = sigmoid(h[b, i, :] . w2[i, :] + b2[i]).
    Var g(double, const Var& y) override {
        Var h = tanh(reshape(y, Shape{y.dim(0), y.dim(1), 1}) * w1_.var() + b1_.var());
        return sigmoid(sum(h * w2_.var(), {2}) + b2_.var());
    }

private:
    nn::Sequential drift_;
    Parameter w1_, b1_, w2_, b2_;
};

// ||a - b|| / ||b||
double rel_error(const std::vector<double>& a, const std::vector<double>& b) {
    double num = 0, den = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return std::sqrt(num / den);
}

json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// ---------------------------------------------------------------------------------- (a) gradient error
struct GradMethod {
    std::string name, estimator, solver;
};
const std::vector<GradMethod> kGradMethods = {{"backprop_midpoint", "backprop", "midpoint"},
                                              {"adjoint", "adjoint", "midpoint"},
                                              {"reversible_heun", "reversible_heun", "reversible_heun"},
                                              {"backprop_reversible_heun", "backprop", "reversible_heun"}};

// The gradient of mean(y_1^2) with respect to y0 and the parameters (flattened, y0 first).
std::vector<double> gradient(MlpSde& sde, const Tensor& y0, const BrownianPath& bm, const GradMethod& m,
                             double dt, double* loss) {
    for (Parameter* p : sde.parameters()) p->zero_grad();
    SolveOptions opt;
    opt.solver = m.solver;
    opt.estimator = m.estimator;
    opt.dt = dt;
    const double ts[2] = {0.0, 1.0};
    Var y0v = leaf(y0);
    Var ys = sdeint(sde, y0v, ts, bm, opt);
    Var yT = slice(ys, 0, 1, 2);
    Var l = mean(yT * yT);
    backward(l);
    std::vector<double> g = y0v.grad().to_vector();
    for (Parameter* p : sde.parameters()) {
        auto v = p->grad().to_vector();
        g.insert(g.end(), v.begin(), v.end());
    }
    *loss = l.item();
    reset_tape();
    return g;
}

json gradient_error(const Settings& s, std::uint64_t seed, experiment::Progress& bar, std::int64_t& done,
                    std::vector<std::vector<std::string>>& csv_rows) {
    MlpSde sde(s.grad_d, s.grad_hidden, seed * 1000 + 1);
    Generator gen(seed, 11);
    Tensor y0 = randn({s.grad_batch, s.grad_d}, gen, DType::f64);
    // One path for every dt: its base cells are the reference step, so every coarser grid time is a cell
    // boundary and all solves (reference included) see the same Brownian motion. (A path per dt with
    // dt_hint = dt would be a different path each time: the tree is built on the base grid.)
    const double dt_ref = std::ldexp(1.0, -s.k_ref);
    BrownianPath bm(0.0, 1.0, s.grad_batch * s.grad_d, seed * 1000 + 2, {.dt_hint = dt_ref});

    double ref_loss = 0;
    const std::vector<double> ref = gradient(sde, y0, bm, kGradMethods[0], dt_ref, &ref_loss);
    bar.update(++done);

    double ref_norm = 0;
    for (double v : ref) ref_norm += v * v;
    json by_method = json::object(), errors = json::object();
    std::vector<double> dts;
    std::vector<std::string> names = {"adjoint_vs_backprop_midpoint",
                                      "reversible_heun_vs_backprop_reversible_heun",
                                      "reversible_heun_vs_backprop_midpoint"};
    for (const auto& m : kGradMethods) names.push_back(m.name + "_vs_reference");
    for (const auto& n : names) errors[n] = json::array();
    for (const auto& m : kGradMethods) by_method[m.name] = {{"loss", json::array()}};

    for (int k = s.k_min; k <= s.k_max; ++k) {
        const double dt = std::ldexp(1.0, -k);
        dts.push_back(dt);
        std::vector<std::vector<double>> g;
        for (const auto& m : kGradMethods) {
            double loss = 0;
            g.push_back(gradient(sde, y0, bm, m, dt, &loss));
            by_method[m.name]["loss"].push_back(finite_or_null(loss));
            bar.update(++done, fmt::format("dt 2^-{} {}", k, m.name));
        }
        auto add = [&](const std::string& name, const std::string& method, const std::string& against,
                       double e) {
            errors[name].push_back(finite_or_null(e));
            csv_rows.push_back({experiment::num(dt), method, against, experiment::num(e)});
        };
        add(names[0], "adjoint", "backprop_midpoint", rel_error(g[1], g[0]));
        add(names[1], "reversible_heun", "backprop_reversible_heun", rel_error(g[2], g[3]));
        add(names[2], "reversible_heun", "backprop_midpoint", rel_error(g[2], g[0]));
        for (std::size_t i = 0; i < kGradMethods.size(); ++i)
            add(names[3 + i], kGradMethods[i].name, "reference", rel_error(g[i], ref));
    }
    return {{"dts", dts},
            {"reference_dt", dt_ref},
            {"reference_method", "backprop_midpoint"},
            {"reference_loss", ref_loss},
            {"reference_gradient_norm", std::sqrt(ref_norm)},
            {"gradient_size", ref.size()},
            {"methods", by_method},
            {"relative_error", errors},
            {"note",
             "relative error ||g - g'|| / ||g'|| of the gradient of mean(y_1^2) with respect to y0 and "
             "all parameters, on one Brownian path shared by every dt"}};
}

// -------------------------------------------------------------------------------------- (b) training
struct TrainMethod {
    std::string name, estimator, solver;
    bool adaptive;
};
const std::vector<TrainMethod> kTrainMethods = {
    {"backprop_fixed", "backprop", "midpoint", false},
    {"adjoint_fixed", "adjoint", "midpoint", false},
    {"reversible_heun_fixed", "reversible_heun", "reversible_heun", false},
    {"backprop_adaptive", "backprop", "midpoint", true},
    {"adjoint_adaptive", "adjoint", "midpoint", true}};

struct OuData {
    std::vector<double> ts;          // 0 and the observation times
    Tensor y0;                       // [paths * model_repeats, 1]: the observed initial values, repeated
    std::vector<double> mean, std_;  // empirical moments at the observation times (not at 0)
};

// Exact OU transitions (the Gaussian transition density of the process, so the data have no
// discretisation error):
//     X(t + h) = mu + (X(t) - mu) e^{-theta h} + sigma sqrt((1 - e^{-2 theta h}) / (2 theta)) z.
OuData make_data(const Settings& s, std::uint64_t seed) {
    OuData d;
    Generator gen(seed, 21);
    const std::size_t n = static_cast<std::size_t>(s.data_paths);
    std::vector<double> x(n);
    for (auto& v : x) v = s.x0_std * gen.normal();
    std::vector<double> starts;
    for (std::int64_t r = 0; r < s.model_repeats; ++r) starts.insert(starts.end(), x.begin(), x.end());
    d.y0 = Tensor::from_vector(starts, Shape{s.data_paths * s.model_repeats, 1}, DType::f64);
    d.ts.push_back(0.0);
    const double h = 1.0 / static_cast<double>(s.observations);
    const double decay = std::exp(-s.ou_theta * h);
    const double sd = s.ou_sigma * std::sqrt(-std::expm1(-2 * s.ou_theta * h) / (2 * s.ou_theta));
    for (std::int64_t i = 1; i <= s.observations; ++i) {
        d.ts.push_back(static_cast<double>(i) * h);
        double m = 0, m2 = 0;
        for (auto& v : x) {
            v = s.ou_mu + (v - s.ou_mu) * decay + sd * gen.normal();
            m += v / static_cast<double>(n);
        }
        for (double v : x) m2 += (v - m) * (v - m) / static_cast<double>(n);
        d.mean.push_back(m);
        d.std_.push_back(std::sqrt(m2));
    }
    return d;
}

struct Moments {
    Var mean, std_;  // [observations, 1]
};

// Moments over the batch at the observation times of a solution ys [T, batch, 1] (row 0 is y0).
Moments moments(const Var& ys) {
    Var obs = slice(ys, 0, 1, ys.dim(0));
    Var m = mean(obs, {1}, true);  // [n, 1, 1]
    Var c = obs - m;
    // The small constant keeps the derivative of sqrt finite should a marginal collapse.
    Var sd = sqrt(mean(c * c, {1}) + 1e-12);
    return {reshape(m, Shape{ys.dim(0) - 1, 1}), sd};
}

// Moment matching: mean over the observation times of (m - m_data)^2 + (s - s_data)^2.
Var moment_loss(const Var& ys, const Tensor& target_mean, const Tensor& target_std) {
    Moments mo = moments(ys);
    Var dm = mo.mean - Var(target_mean), ds = mo.std_ - Var(target_std);
    return mean(dm * dm) + mean(ds * ds);
}

struct TrainOut {
    std::vector<double> loss, seconds;
    std::vector<std::int64_t> steps, rejected;
    double eval_loss = 0;
    std::vector<double> fit_mean, fit_std;
};

TrainOut train(const TrainMethod& tm, const Settings& s, const OuData& data, std::uint64_t seed,
               experiment::Progress& bar, std::int64_t& done) {
    MlpSde sde(1, s.train_hidden, seed * 1000 + 3);  // the same initial model for every method
    nn::Adam opt(sde.parameters(), {.lr = s.lr});
    const auto nobs = static_cast<std::int64_t>(s.observations);
    Tensor target_mean = Tensor::from_vector(data.mean, Shape{nobs, 1}, DType::f64);
    Tensor target_std = Tensor::from_vector(data.std_, Shape{nobs, 1}, DType::f64);
    SolveOptions so;
    so.solver = tm.solver;
    so.estimator = tm.estimator;
    so.dt = s.train_dt;
    so.adaptive = tm.adaptive;
    so.rtol = s.rtol;
    so.atol = s.atol;
    TrainOut out;
    for (int it = 0; it < s.iterations; ++it) {
        const double t0 = experiment::wall_seconds();
        // Iteration it draws the same path for every method.
        BrownianPath bm(0.0, 1.0, data.y0.dim(0), seed * 1000 + 100 + static_cast<std::uint64_t>(it),
                        {.dt_hint = s.train_dt});
        SolveStats stats;
        opt.zero_grad();
        Var ys = sdeint(sde, Var(data.y0), data.ts, bm, so, &stats);
        Var l = moment_loss(ys, target_mean, target_std);
        experiment::check_loss(l.item(), tm.name, it, 0);  // one batch per iteration
        backward(l);
        opt.step();
        out.loss.push_back(l.item());
        reset_tape();
        out.steps.push_back(stats.steps);
        out.rejected.push_back(stats.rejected);
        out.seconds.push_back(experiment::wall_seconds() - t0);
        bar.update(++done, tm.name);
    }
    // Held-out loss of the trained model: fresh paths, a fine fixed step, averaged; and its moments.
    NoGradScope ng;
    SolveOptions eo;
    eo.solver = "midpoint";
    eo.dt = std::ldexp(1.0, -s.eval_k);
    out.fit_mean.assign(data.mean.size(), 0.0);
    out.fit_std.assign(data.std_.size(), 0.0);
    for (int e = 0; e < s.eval_paths; ++e) {
        BrownianPath bm(0.0, 1.0, data.y0.dim(0), seed * 1000 + 900'000 + static_cast<std::uint64_t>(e),
                        {.dt_hint = eo.dt});
        Var ys = sdeint(sde, Var(data.y0), data.ts, bm, eo);
        out.eval_loss += moment_loss(ys, target_mean, target_std).item() / s.eval_paths;
        Moments mo = moments(ys);
        for (std::size_t i = 0; i < data.mean.size(); ++i) {
            out.fit_mean[i] += mo.mean.value().flat(static_cast<std::int64_t>(i)) / s.eval_paths;
            out.fit_std[i] += mo.std_.value().flat(static_cast<std::int64_t>(i)) / s.eval_paths;
        }
        reset_tape();
    }
    return out;
}

}  // namespace

int run(int argc, char** argv) {
    CLI::App app{
        "adjoint_vs_backprop: gradient error against dt and training curves of the SDE gradient "
        "estimators"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/adjoint_vs_backprop");
    Settings s;
    app.add_option("--iterations", s.iterations, "Adam iterations per training method")
        ->check(CLI::Range(1, 100000));
    app.add_option("--k-min", s.k_min, "gradient study: coarsest dt = 2^-k_min")->check(CLI::Range(0, 20));
    app.add_option("--k-max", s.k_max, "gradient study: finest dt = 2^-k_max")->check(CLI::Range(0, 20));
    app.add_option("--k-ref", s.k_ref, "gradient study: reference dt = 2^-k_ref")->check(CLI::Range(0, 20));
    app.add_option("--eval-paths", s.eval_paths, "held-out Brownian paths for the final loss")
        ->check(CLI::Range(1, 1000));
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {
        if (app.count("--iterations") == 0) s.iterations = 300;
        if (app.count("--k-max") == 0) s.k_max = 10;
        if (app.count("--eval-paths") == 0) s.eval_paths = 32;
    }
    if (s.k_min > s.k_max || s.k_max > s.k_ref) {
        throw experiment::UsageError("need --k-min <= --k-max <= --k-ref");
    }
    experiment::apply_common(args);
    register_adjoint_estimators();

    json config = {
        {"gradient_error",
         {{"state", s.grad_d},
          {"batch", s.grad_batch},
          {"hidden", s.grad_hidden},
          {"k_min", s.k_min},
          {"k_max", s.k_max},
          {"k_ref", s.k_ref},
          {"loss", "mean(y_1^2)"},
          {"calculus", "stratonovich"},
          {"noise", "diagonal"},
          {"dtype", "f64"},
          {"drift", "Linear-tanh-Linear-tanh-Linear"},
          {"diffusion", "per coordinate: 1-hidden-1, tanh, sigmoid"}}},
        {"training",
         {{"iterations", s.iterations},
          {"data_paths", s.data_paths},
          {"observations", s.observations},
          {"model_paths", s.data_paths * s.model_repeats},
          {"ou", {{"theta", s.ou_theta}, {"mu", s.ou_mu}, {"sigma", s.ou_sigma}, {"x0_std", s.x0_std}}},
          {"hidden", s.train_hidden},
          {"state", 1},
          {"dt", s.train_dt},
          {"lr", s.lr},
          {"optimizer", "Adam"},
          {"rtol", s.rtol},
          {"atol", s.atol},
          {"eval_paths", s.eval_paths},
          {"eval_dt", std::ldexp(1.0, -s.eval_k)},
          {"loss", "mean over observation times of (mean - data mean)^2 + (std - data std)^2"}}}};

    const auto n_dts = static_cast<std::int64_t>(s.k_max - s.k_min + 1);
    const std::int64_t n_grad = 1 + n_dts * static_cast<std::int64_t>(kGradMethods.size());
    const std::int64_t total = n_grad + static_cast<std::int64_t>(kTrainMethods.size()) * s.iterations;
    experiment::Progress bar("adjoint_vs_backprop", total);
    std::int64_t done = 0;
    json run = experiment::run_info(args);

    double t0 = experiment::wall_seconds();
    std::vector<std::vector<std::string>> grad_rows;
    json grad = gradient_error(s, args.seed, bar, done, grad_rows);
    run["timings"]["gradient_error_seconds"] = experiment::wall_seconds() - t0;

    const OuData data = make_data(s, args.seed);
    json training = {{"observation_times", std::vector<double>(data.ts.begin() + 1, data.ts.end())},
                     {"data_mean", data.mean},
                     {"data_std", data.std_},
                     {"methods", json::object()}};
    std::vector<std::vector<std::string>> train_rows;
    for (const auto& tm : kTrainMethods) {
        t0 = experiment::wall_seconds();
        TrainOut o = train(tm, s, data, args.seed, bar, done);
        double total_steps = 0;
        for (auto n : o.steps) total_steps += static_cast<double>(n);
        training["methods"][tm.name] = {{"estimator", tm.estimator},
                                        {"solver", tm.solver},
                                        {"adaptive", tm.adaptive},
                                        {"loss", o.loss},
                                        {"steps", o.steps},
                                        {"rejected", o.rejected},
                                        {"final_loss", o.loss.back()},
                                        {"mean_steps", total_steps / static_cast<double>(o.steps.size())},
                                        {"eval_loss", o.eval_loss},
                                        {"fit_mean", o.fit_mean},
                                        {"fit_std", o.fit_std}};
        double total_seconds = 0;
        for (double v : o.seconds) total_seconds += v;
        run["timings"]["training"][tm.name] = {
            {"seconds_per_iteration", o.seconds},
            {"total_seconds", total_seconds},
            {"mean_seconds_per_iteration", total_seconds / static_cast<double>(o.seconds.size())}};
        for (std::size_t i = 0; i < o.loss.size(); ++i)
            train_rows.push_back({tm.name, std::to_string(i), experiment::num(o.loss[i]),
                                  std::to_string(o.steps[i]), std::to_string(o.rejected[i])});
    }
    bar.finish();

    json out = {{"provenance", experiment::provenance("adjoint_vs_backprop", args, config)},
                {"gradient_error", grad},
                {"training", training}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", out);
    result_set.csv("results.csv", {"dt", "method", "compared_to", "relative_error"},
                   grad_rows);
    result_set.csv("training.csv", {"method", "iteration", "loss", "steps", "rejected"},
                   train_rows);
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json, ... as one set

    const auto& err = grad["relative_error"];
    const auto& dts = grad["dts"];
    std::printf("gradient relative error (%zu entries: y0 and the parameters)\n",
                grad["gradient_size"].get<std::size_t>());
    std::printf("%-10s %-12s %-12s %-12s %-12s\n", "dt", "adj/bp", "rh/bp_rh", "rh/bp", "bp/ref");
    for (std::size_t i = 0; i < dts.size(); ++i) {
        auto v = [&](const char* k) { return err[k][i].is_null() ? NAN : err[k][i].get<double>(); };
        std::printf("%-10.3g %-12.3e %-12.3e %-12.3e %-12.3e\n", dts[i].get<double>(),
                    v("adjoint_vs_backprop_midpoint"), v("reversible_heun_vs_backprop_reversible_heun"),
                    v("reversible_heun_vs_backprop_midpoint"), v("backprop_midpoint_vs_reference"));
    }
    for (const auto& tm : kTrainMethods) {
        const auto& m = training["methods"][tm.name];
        std::printf("%-22s final loss %.4e  held-out %.4e  mean steps %.1f  %.2f s\n", tm.name.c_str(),
                    m["final_loss"].get<double>(), m["eval_loss"].get<double>(),
                    m["mean_steps"].get<double>(),
                    run["timings"]["training"][tm.name]["total_seconds"].get<double>());
    }
    return 0;
}

// Every error ends in one line naming its cause and exit status 1 or 2 (experiments/common.hpp).
int main(int argc, char** argv) { return sdeuq::experiment::run_main("adjoint_vs_backprop", argc, argv, run); }
