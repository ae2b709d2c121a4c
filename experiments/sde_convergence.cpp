// Strong convergence of every solver on the test SDEs of sde/test_sdes.hpp, measured.
//
// For each SDE, one Brownian path of `paths` independent coordinates per noise dimension (the paths are the
// batch), a reference solution at T = 1 (the closed form when there is one, else srk with a very small
// step on the same path), and for each solver and dt = 2^-k: err(dt) = mean over paths and components of
// |Y_T - reference|. The strong order is the least-squares slope of log err on log dt, reported with its
// standard error, next to the theoretical order (Solver::strong_order) and the order expected for this
// particular SDE (which can be higher: commuting general noise, H-cancellation on ExpAdditive).
//
//   sde_convergence [--seed N] [--quick | --full] [--threads N] [--out DIR]
//                   [--paths N] [--k-max K] [--k-ref K]
//
// Built on experiments/common: the shared flags and provenance, and atomic writes of DIR/results.json and
// DIR/results.csv (byte-identical for the same seed and flags with any --threads: no timings, threads,
// CPU or dates in them) and DIR/run.json (threads, CPU, date, timings).
#include "experiments/common.hpp"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "autodiff/parallel.hpp"
#include "experiments/common.hpp"
#include "sde/integrate.hpp"
#include "sde/test_sdes.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using nlohmann::json;
namespace ts = sdeuq::sde::testing;

namespace {

struct Config {
    std::uint64_t seed = 0;
    std::int64_t paths = 200;
    int k_min = 3, k_max = 8;  // dt = 2^-k
    int k_ref = 14;            // reference step for SDEs without a closed form
};

// One SDE of the study with the solvers run on it.
struct SdeCase {
    std::string name;
    std::string note;
    std::vector<double> y0;  // per component
    bool closed_form = true;
    bool levy_area = false;
    std::function<std::unique_ptr<SDE>()> make;
    // exact(sde, y0, W_1) for closed forms.
    std::function<Tensor(SDE&, const Tensor&, const Tensor&)> exact;
    struct Run {
        std::string solver;
        double expected;  // for this SDE; may exceed the solver's general theoretical order
    };
    std::vector<Run> runs;
};

struct RunResult {
    std::string sde, solver, noise, calculus;
    double theory = 0, expected = 0;
    std::vector<double> dts, errors;
    double slope = NAN, slope_se = NAN;
    int fit_points = 0;
    double slope_fine = NAN, slope_fine_se = NAN;  // over the 4 smallest steps only
    double seconds = 0;
};

template <class S>
std::function<Tensor(SDE&, const Tensor&, const Tensor&)> exact_of() {
    return [](SDE& s, const Tensor& y0, const Tensor& w) { return static_cast<S&>(s).exact(1.0, y0, w); };
}

std::vector<SdeCase> make_cases() {
    using C = Calculus;
    std::vector<SdeCase> cs;
    auto gbm = [&](const char* name, C calc, Noise noise, std::vector<SdeCase::Run> runs) {
        SdeCase c;
        c.name = name;
        c.note = "GBM mu = (0.4, -0.3), sigma = (0.6, 0.9), y0 = (1, 0.8); closed form";
        c.y0 = {1.0, 0.8};
        c.make = [calc, noise] {
            return std::make_unique<ts::GeometricBrownianMotion>(std::vector<double>{0.4, -0.3},
                                                                 std::vector<double>{0.6, 0.9}, calc, noise);
        };
        c.exact = exact_of<ts::GeometricBrownianMotion>();
        c.runs = std::move(runs);
        cs.push_back(std::move(c));
    };
    gbm("gbm_diagonal_ito", C::ito, Noise::diagonal, {{"euler", 0.5}, {"milstein", 1.0}});
    gbm("gbm_diagonal_stratonovich", C::stratonovich, Noise::diagonal,
        {{"milstein", 1.0}, {"heun", 1.0}, {"midpoint", 1.0}, {"reversible_heun", 1.0}});
    gbm("gbm_scalar_ito", C::ito, Noise::scalar, {{"euler", 0.5}, {"milstein", 1.0}});
    gbm("gbm_scalar_stratonovich", C::stratonovich, Noise::scalar,
        {{"milstein", 1.0}, {"heun", 1.0}, {"midpoint", 1.0}, {"reversible_heun", 1.0}});
    {
        SdeCase c;
        c.name = "exp_additive";
        c.note =
            "dY = -theta Y dt + e^{-theta t} B dW, d = 2, m = 3; closed form in W_T, so the Levy-area errors "
            "of Stratonovich schemes cancel (order 2)";
        c.y0 = {1.0, -0.5};
        c.levy_area = true;
        c.make = [] {
            return std::make_unique<ts::ExpAdditive>(std::vector<double>{0.7, 1.3}, 3,
                                                     std::vector<double>{0.8, 0.3, -0.2, 0.1, 0.5, 0.7});
        };
        c.exact = exact_of<ts::ExpAdditive>();
        c.runs = {{"srk", 2.0}, {"euler", 1.0}, {"heun", 2.0}, {"midpoint", 2.0}, {"reversible_heun", 2.0}};
        cs.push_back(std::move(c));
    }
    auto nonlinear_additive = [&](const char* name, const char* note,
                                  std::function<std::unique_ptr<SDE>()> make) {
        SdeCase c;
        c.name = name;
        c.note = note;
        c.y0 = {0.5, -1.2};
        c.closed_form = false;
        c.levy_area = true;
        c.make = std::move(make);
        c.runs = {{"srk", 1.5}, {"euler", 1.0}, {"heun", 1.0}, {"midpoint", 1.0}, {"reversible_heun", 1.0}};
        cs.push_back(std::move(c));
    };
    nonlinear_additive(
        "sine_additive", "dY = sin(Y) dt + B / (1 + t) dW, d = m = 2; reference: srk at dt_ref", [] {
            return std::make_unique<ts::SineAdditive>(2, 2, std::vector<double>{0.6, 0.3, -0.2, 0.8});
        });
    nonlinear_additive(
        "double_well_additive",
        "dY = (Y - Y^3) dt + B / (1 + t) dW, d = m = 2; reference: srk at dt_ref; f' down to about "
        "-11 excites the parasitic mode of reversible_heun",
        [] {
            return std::make_unique<ts::DoubleWellAdditive>(2, 2, std::vector<double>{0.6, 0.3, -0.2, 0.8});
        });
    auto linear = [&](const char* name, C calc, std::vector<SdeCase::Run> runs) {
        SdeCase c;
        c.name = name;
        c.note =
            "dY = A Y dt + B1 Y dW1 + B2 Y dW2 with commuting 2x2 matrices: general noise that is "
            "commutative; "
            "closed form";
        c.y0 = {1.0, 0.5};
        c.make = [calc] {
            return std::make_unique<ts::CommutingLinear>(std::vector<double>{0.2, 0.1},
                                                         std::vector<double>{0.5, 0.2},
                                                         std::vector<double>{0.3, -0.25}, calc);
        };
        c.exact = exact_of<ts::CommutingLinear>();
        c.runs = std::move(runs);
        cs.push_back(std::move(c));
    };
    linear("commuting_linear_ito", C::ito, {{"euler", 0.5}});
    linear("commuting_linear_stratonovich", C::stratonovich,
           {{"heun", 1.0}, {"midpoint", 1.0}, {"reversible_heun", 1.0}});
    return cs;
}

// Least squares slope of log err on log dt over the finite errors of [first, n), with its standard error.
void fit(const RunResult& r, std::size_t first, double& slope, double& se, int* points = nullptr) {
    std::vector<double> x, y;
    for (std::size_t i = first; i < r.dts.size(); ++i)
        if (std::isfinite(r.errors[i]) && r.errors[i] > 0) {
            x.push_back(std::log(r.dts[i]));
            y.push_back(std::log(r.errors[i]));
        }
    if (points) *points = static_cast<int>(x.size());
    slope = se = NAN;
    if (x.size() < 2) return;
    const double n = static_cast<double>(x.size());
    double mx = 0, my = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        mx += x[i] / n;
        my += y[i] / n;
    }
    double sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
    }
    slope = sxy / sxx;
    double ss = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double e = y[i] - my - slope * (x[i] - mx);
        ss += e * e;
    }
    if (x.size() > 2) se = std::sqrt(ss / (n - 2) / sxx);
}

void fit(RunResult& r) {
    fit(r, 0, r.slope, r.slope_se, &r.fit_points);
    fit(r, r.dts.size() >= 4 ? r.dts.size() - 4 : 0, r.slope_fine, r.slope_fine_se);
}

Tensor solve_to_end(SDE& sde, const std::string& solver, const Tensor& y0, const BrownianPath& bm,
                    double dt) {
    auto s = make_solver(solver);
    SolveOptions opt;
    opt.solver = solver;
    opt.dt = dt;
    const double times[2] = {0.0, 1.0};
    Tensor out = integrate(sde, *s, Var(y0), times, bm, opt, false, nullptr).states.back().clone();
    reset_tape();
    return out;
}

double mean_abs_error(const Tensor& a, const Tensor& b) {
    double s = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) s += std::abs(a.flat(i) - b.flat(i));
    return s / static_cast<double>(a.numel());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// All runs of one SDE, on one Brownian path (seeded by the run seed and the SDE's index).
std::vector<RunResult> run_case(const SdeCase& c, std::size_t index, const Config& cfg, double& ref_seconds) {
    auto sde = c.make();
    const auto d = static_cast<std::int64_t>(c.y0.size());
    const std::int64_t m = sde->brownian_dim(d);
    BrownianOptions bo;
    bo.levy_area = c.levy_area;
    BrownianPath bm(0.0, 1.0, cfg.paths * m, cfg.seed * 1000003ULL + index, bo);
    Tensor y0 = Tensor::empty(Shape{cfg.paths, d}, DType::f64);
    for (std::int64_t b = 0; b < cfg.paths; ++b)
        for (std::int64_t i = 0; i < d; ++i) y0.set_flat(b * d + i, c.y0[static_cast<std::size_t>(i)]);

    const auto t_ref = std::chrono::steady_clock::now();
    Tensor reference;
    if (c.closed_form) {
        std::vector<double> w(static_cast<std::size_t>(bm.size()));
        bm.value(1.0, w);
        reference = c.exact(*sde, y0, Tensor::from_vector(w, Shape{cfg.paths, m}, DType::f64));
    } else {
        reference = solve_to_end(*sde, "srk", y0, bm, std::ldexp(1.0, -cfg.k_ref));
    }
    ref_seconds = seconds_since(t_ref);

    std::vector<RunResult> out;
    for (const auto& run : c.runs) {
        const auto t0 = std::chrono::steady_clock::now();
        auto solver = make_solver(run.solver);
        RunResult r;
        r.sde = c.name;
        r.solver = run.solver;
        r.noise = noise_name(sde->noise());
        r.calculus = calculus_name(sde->calculus());
        r.theory = solver->strong_order(sde->noise());
        r.expected = run.expected;
        for (int k = cfg.k_min; k <= cfg.k_max; ++k) {
            const double dt = std::ldexp(1.0, -k);
            r.dts.push_back(dt);
            r.errors.push_back(mean_abs_error(solve_to_end(*sde, run.solver, y0, bm, dt), reference));
        }
        fit(r);
        r.seconds = seconds_since(t0);
        out.push_back(std::move(r));
    }
    return out;
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

}  // namespace

int run(int argc, char** argv) {
    Config cfg;
    CLI::App app{
        "Strong convergence orders of the SDE solvers (sde/solvers.hpp) on SDEs with known solutions"};
    experiment::CommonArgs args;
    experiment::add_common_flags(app, args, "reports/results/sde_convergence");
    auto* o_paths = app.add_option("--paths", cfg.paths, "Brownian paths (quick 200, full 1000)")
                        ->check(CLI::Range(2, 1000000));
    auto* o_kmax = app.add_option("--k-max", cfg.k_max, "smallest step 2^-k_max (quick 8, full 11)")
                       ->check(CLI::Range(5, 20));
    auto* o_kref = app.add_option("--k-ref", cfg.k_ref, "reference step 2^-k_ref (quick 14, full 16)")
                       ->check(CLI::Range(5, 24));
    SDEUQ_PARSE(app, argc, argv);
    if (!args.quick) {
        if (!o_paths->count()) cfg.paths = 1000;
        if (!o_kmax->count()) cfg.k_max = 11;
        if (!o_kref->count()) cfg.k_ref = 16;
    }
    if (cfg.k_ref <= cfg.k_max)
        throw experiment::UsageError("--k-ref " + std::to_string(cfg.k_ref) + " must exceed --k-max " +
                                     std::to_string(cfg.k_max));
    cfg.seed = args.seed;
    // --threads is the number of workers, one SDE each at a time; the kernels run on 1 thread (each worker
    // has its own thread-local tape). Every SDE has its own Brownian seed, so the results do not depend on
    // the number of workers.
    if (args.threads > 64)
        throw experiment::UsageError("--threads " + std::to_string(args.threads) +
                                     ": at most 64 workers (one SDE each)");
    const int workers = args.threads > 0 ? args.threads : 1;
    experiment::apply_common(args);
    set_num_threads(1);

    const auto cases = make_cases();
    std::vector<std::vector<RunResult>> results(cases.size());
    std::vector<double> ref_seconds(cases.size(), 0.0);
    std::atomic<std::size_t> next{0};
    std::vector<std::string> errors(cases.size());
    const auto t_all = std::chrono::steady_clock::now();
    auto worker = [&] {
        for (std::size_t i = next++; i < cases.size(); i = next++) {
            try {
                results[i] = run_case(cases[i], i, cfg, ref_seconds[i]);
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < workers; ++t) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
    const double total_seconds = seconds_since(t_all);
    for (std::size_t i = 0; i < cases.size(); ++i)
        if (!errors[i].empty()) {
            std::fprintf(stderr, "sde_convergence: %s failed: %s\n", cases[i].name.c_str(),
                         errors[i].c_str());
            return 1;
        }

    json config = {
        {"program", "experiments/sde_convergence.cpp"},
        {"paths", cfg.paths},
        {"T", 1.0},
        {"dt", {{"form", "2^-k"}, {"k_min", cfg.k_min}, {"k_max", cfg.k_max}}},
        {"reference_dt", std::ldexp(1.0, -cfg.k_ref)},
        {"error", "mean over paths and components of |Y_T - reference|"},
        {"slope",
         "least squares of log error on log dt over the finite errors; slope_se its standard error; "
         "slope_fine: the same over the 4 smallest dt"},
    };
    json runs = json::array();
    std::vector<std::vector<std::string>> csv_rows;
    auto cell = [](double v) {
        return std::isfinite(v) ? experiment::num(v) : std::string(std::isnan(v) ? "nan" : "inf");
    };
    json timings = {{"total_seconds", total_seconds}, {"workers", workers}, {"cases", json::array()}};
    for (std::size_t i = 0; i < cases.size(); ++i) {
        json sde_timing = {
            {"sde", cases[i].name}, {"reference_seconds", ref_seconds[i]}, {"runs", json::array()}};
        for (const auto& r : results[i]) {
            json errs = json::array();
            for (double e : r.errors) errs.push_back(number_or_null(e));
            runs.push_back({{"sde", r.sde},
                            {"note", cases[i].note},
                            {"noise", r.noise},
                            {"calculus", r.calculus},
                            {"reference", cases[i].closed_form ? "closed form" : "srk at reference_dt"},
                            {"solver", r.solver},
                            {"theory_order", r.theory},
                            {"expected_order", r.expected},
                            {"dts", r.dts},
                            {"errors", errs},
                            {"slope", number_or_null(r.slope)},
                            {"slope_se", number_or_null(r.slope_se)},
                            {"fit_points", r.fit_points},
                            {"slope_fine", number_or_null(r.slope_fine)},
                            {"slope_fine_se", number_or_null(r.slope_fine_se)}});
            for (std::size_t k = 0; k < r.dts.size(); ++k)
                csv_rows.push_back({r.sde, r.noise, r.calculus, r.solver, cell(r.theory), cell(r.expected),
                                    cell(r.slope), cell(r.slope_se), cell(r.slope_fine), cell(r.dts[k]),
                                    cell(r.errors[k])});
            sde_timing["runs"].push_back({{"solver", r.solver}, {"seconds", r.seconds}});
            std::printf(
                "%-30s %-16s slope %6.3f +- %.3f  4 finest %6.3f +- %.3f  (theory %.1f, expected here "
                "%.1f)\n",
                r.sde.c_str(), r.solver.c_str(), r.slope, r.slope_se, r.slope_fine, r.slope_fine_se, r.theory,
                r.expected);
        }
        timings["cases"].push_back(sde_timing);
    }
    json results_json = {{"provenance", experiment::provenance("sde_convergence", args, config)},
                         {"runs", runs}};
    experiment::ResultSet result_set(args.out);
    result_set.json("results.json", results_json);
    result_set.csv("results.csv",
                   {"sde", "noise", "calculus", "solver", "theory_order", "expected_order", "slope",
                    "slope_se", "slope_fine", "dt", "error"},
                   csv_rows);
    json run = experiment::run_info(args);
    run["threads"] = workers;  // the workers (the kernels run on one thread each)
    run["timings"] = timings;
    result_set.json("run.json", run);
    result_set.commit();  // results.json, results.csv, run.json as one set
    std::printf("wrote %s/results.json, results.csv, run.json (%.1f s)\n", args.out.c_str(), total_seconds);
    return 0;
}

// Every error ends in one line naming its cause and exit status 1 or 2 (experiments/common.hpp).
int main(int argc, char** argv) { return sdeuq::experiment::run_main("sde_convergence", argc, argv, run); }
