// The memory-efficient gradient estimators of sde/adjoint.hpp: the stochastic adjoint against finite
// differences and backprop on the same Brownian path, the reversible Heun adjoint against backprop to
// round-off, their memory against the number of steps, and their errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <sstream>
#include <thread>

#include "autodiff/random.hpp"
#include "nn/layers.hpp"
#include "sde/adjoint.hpp"
#include "sde/module_sde.hpp"
#include "tests/sde_convergence_util.hpp"

using namespace sdeuq;
using namespace sdeuq::sde;
using namespace sdeuq::sde::test_util;

namespace {

Tensor rnd(const Shape& s, std::uint64_t stream, double scale = 1.0) {
    Generator g(11, stream);
    Tensor t = randn(s, g, DType::f64);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.set_flat(i, scale * t.flat(i));
    return t;
}

// A tiny neural SDE: drift tanh(W_f y + b_f), diffusion sigmoid(W_g y + b_g) (diagonal or scalar noise:
// [batch, d] either way) or, for additive noise, a constant matrix G [d, m] scaled by (1 + t / 2).
class TinyNeuralSDE : public SDE {
public:
    // register_bg false: the diffusion's bias bg is used but not registered (the mistake a hand-written
    // SDE can still make; ModuleSDE cannot).
    TinyNeuralSDE(std::int64_t d, Noise noise, std::int64_t m = 2, bool register_bg = true)
        : noise_(noise),
          m_(m),
          wf_("wf", rnd({d, d}, 1, 0.5)),
          bf_("bf", rnd({d}, 2, 0.3)),
          wg_("wg", rnd({d, d}, 3, 0.5)),
          bg_("bg", rnd({d}, 4, 0.3)),
          ga_("ga", rnd({d, m}, 5, 0.4)) {
        add_parameter(wf_);
        add_parameter(bf_);
        if (noise_ == Noise::additive) {
            add_parameter(ga_);
        } else {
            add_parameter(wg_);
            if (register_bg) add_parameter(bg_);
        }
    }
    Noise noise() const override { return noise_; }
    Calculus calculus() const override { return Calculus::stratonovich; }
    std::int64_t brownian_dim(std::int64_t d) const override {
        if (noise_ == Noise::additive || noise_ == Noise::general) return m_;
        return SDE::brownian_dim(d);
    }
    Var f(double, const Var& y) override {
        Var b = bf_.var();
        return tanh(linear(y, wf_.var(), &b));
    }
    Var g(double t, const Var& y) override {
        if (noise_ == Noise::additive) return ga_.var() * (1.0 + 0.5 * t);
        Var b = bg_.var();
        Var s = sigmoid(linear(y, wg_.var(), &b));
        if (noise_ == Noise::general)
            return broadcast_to(reshape(s, Shape{y.dim(0), y.dim(1), 1}), Shape{y.dim(0), y.dim(1), m_});
        return s;
    }
    Var g_prod(double t, const Var& y, const Var& dw) override {
        return diffusion_product(noise_, g(t, y), dw);
    }

private:
    Noise noise_;
    std::int64_t m_;
    Parameter wf_, bf_, wg_, bg_, ga_;
};

struct Problem {
    std::int64_t batch = 3, d = 3;
    std::vector<double> ts{0.0, 0.5, 1.0};
    Tensor y0 = rnd({3, 3}, 20);
    Tensor w = rnd({3, 3, 3}, 21);  // loss weights on every output
};

// L = sum(w * ys) and its gradient (y0 first, then the parameters, flattened), by the chosen estimator.
std::vector<double> gradient(SDE& sde, const Problem& pb, const BrownianPath& bm, const SolveOptions& opt,
                             double* loss = nullptr) {
    for (Parameter* p : sde.parameters()) p->zero_grad();
    Var y0 = leaf(pb.y0);
    Var ys = sdeint(sde, y0, pb.ts, bm, opt);
    Var l = sum(ys * Var(pb.w));
    backward(l);
    std::vector<double> g = y0.grad().to_vector();
    for (Parameter* p : sde.parameters()) {
        auto v = p->grad().to_vector();
        g.insert(g.end(), v.begin(), v.end());
    }
    if (loss) *loss = l.item();
    reset_tape();
    return g;
}

double loss_value(SDE& sde, const Problem& pb, const Tensor& y0, const BrownianPath& bm,
                  const SolveOptions& opt) {
    NoGradScope ng;
    SolveOptions o = opt;
    o.estimator = "backprop";
    double l = sum(sdeint(sde, Var(y0), pb.ts, bm, o) * Var(pb.w)).item();
    reset_tape();
    return l;
}

// Central differences of the loss in every coordinate of y0 and of the parameters.
std::vector<double> finite_differences(SDE& sde, const Problem& pb, const BrownianPath& bm,
                                       const SolveOptions& opt) {
    const double eps = 1e-6;
    std::vector<double> g;
    Tensor y0 = pb.y0.clone();
    for (std::int64_t i = 0; i < y0.numel(); ++i) {
        const double v = y0.flat(i);
        y0.set_flat(i, v + eps);
        const double lp = loss_value(sde, pb, y0, bm, opt);
        y0.set_flat(i, v - eps);
        const double lm = loss_value(sde, pb, y0, bm, opt);
        y0.set_flat(i, v);
        g.push_back((lp - lm) / (2 * eps));
    }
    for (Parameter* p : sde.parameters()) {
        for (std::int64_t i = 0; i < p->value().numel(); ++i) {
            const double v = p->value().flat(i);
            p->value().set_flat(i, v + eps);
            const double lp = loss_value(sde, pb, pb.y0, bm, opt);
            p->value().set_flat(i, v - eps);
            const double lm = loss_value(sde, pb, pb.y0, bm, opt);
            p->value().set_flat(i, v);
            g.push_back((lp - lm) / (2 * eps));
        }
    }
    return g;
}

BrownianPath make_path(const Problem& pb, SDE& sde, double dt, std::uint64_t seed = 7) {
    return BrownianPath(0.0, 1.0, pb.batch * sde.brownian_dim(pb.d), seed, BrownianOptions{dt, 0.0, false});
}

}  // namespace

TEST_CASE("the fixed step grid of the adjoint estimators is integrate()'s grid", "[adjoint]") {
    TinyNeuralSDE sde(3, Noise::diagonal);
    Problem pb;
    for (double dt : {0.1, 0.03, 1e-3, 0.3}) {
        for (auto ts : {std::vector<double>{0.0, 1.0}, std::vector<double>{0.0, 0.25, 0.55, 1.0},
                        std::vector<double>{0.1, 0.2, 0.9}}) {
            BrownianPath bm = make_path(pb, sde, 0.0);
            SolveOptions opt;
            opt.solver = "midpoint";
            opt.dt = dt;
            auto solver = make_solver("midpoint");
            ForwardResult r = integrate(sde, *solver, Var(pb.y0), ts, bm, opt, false, nullptr);
            sde::detail::StepGrid g = sde::detail::fixed_step_grid(ts, dt);
            INFO("dt = " << dt << ", " << ts.size() << " outputs");
            CHECK(g.times == r.step_times);
            reset_tape();
        }
    }
}

TEST_CASE(
    "stochastic adjoint gradients match finite differences and backprop on the same path (diagonal "
    "noise, dt = 1e-3)",
    "[adjoint]") {
    register_adjoint_estimators();
    Problem pb;
    TinyNeuralSDE sde(pb.d, Noise::diagonal);
    SolveOptions opt;
    opt.solver = "midpoint";
    opt.dt = 1e-3;
    BrownianPath bm = make_path(pb, sde, opt.dt);
    opt.estimator = "backprop";
    double l_bp = 0, l_adj = 0;
    auto g_bp = gradient(sde, pb, bm, opt, &l_bp);
    opt.estimator = "adjoint";
    auto g_adj = gradient(sde, pb, bm, opt, &l_adj);
    CHECK(l_adj == Approx(l_bp).epsilon(1e-12));  // same forward solve
    const double e_bp = rel_error(g_adj, g_bp);
    SolveOptions heun = opt;
    heun.adjoint_solver = "heun";
    const double e_heun = rel_error(gradient(sde, pb, bm, heun), g_bp);
    // Finite differences on the same path (fewer steps to keep it fast: the FD loss is solved 2 x 28 times).
    SolveOptions coarse = opt;
    coarse.dt = 1e-2;
    BrownianPath bm_c = make_path(pb, sde, coarse.dt);
    auto g_fd = finite_differences(sde, pb, bm_c, coarse);
    coarse.estimator = "backprop";
    const double e_bp_fd = rel_error(gradient(sde, pb, bm_c, coarse), g_fd);
    coarse.estimator = "adjoint";
    const double e_adj_fd = rel_error(gradient(sde, pb, bm_c, coarse), g_fd);
    WARN(
        fmt::format("adjoint vs backprop (dt 1e-3): midpoint {:.2e}, heun {:.2e}; vs finite differences "
                    "(dt 1e-2): adjoint {:.2e}, backprop {:.2e}",
                    e_bp, e_heun, e_adj_fd, e_bp_fd));
    CHECK(e_bp < 1e-2);
    CHECK(e_heun < 1e-2);
    CHECK(e_bp_fd < 1e-6);
    CHECK(e_adj_fd < 5e-2);
}

TEST_CASE("stochastic adjoint gradients match backprop for additive and scalar noise", "[adjoint]") {
    register_adjoint_estimators();
    for (Noise noise : {Noise::additive, Noise::scalar}) {
        Problem pb;
        TinyNeuralSDE sde(pb.d, noise);
        SolveOptions opt;
        opt.solver = "midpoint";
        opt.dt = 1e-3;
        BrownianPath bm = make_path(pb, sde, opt.dt, 9);
        opt.estimator = "backprop";
        auto g_bp = gradient(sde, pb, bm, opt);
        opt.estimator = "adjoint";
        const double e = rel_error(gradient(sde, pb, bm, opt), g_bp);
        INFO(noise_name(noise) << " noise: relative error " << e);
        CHECK(e < 1e-2);
    }
}

TEST_CASE("reversible Heun's algebraic adjoint equals backprop through the solver to round-off",
          "[adjoint]") {
    register_adjoint_estimators();
    for (Noise noise : {Noise::diagonal, Noise::additive, Noise::scalar, Noise::general}) {
        Problem pb;
        TinyNeuralSDE sde(pb.d, noise);
        SolveOptions opt;
        opt.solver = "reversible_heun";
        opt.dt = 1e-2;
        BrownianPath bm = make_path(pb, sde, 0.0, 13);
        opt.estimator = "backprop";
        double l_bp = 0, l_rh = 0;
        auto g_bp = gradient(sde, pb, bm, opt, &l_bp);
        opt.estimator = "reversible_heun";
        auto g_rh = gradient(sde, pb, bm, opt, &l_rh);
        const double e = rel_error(g_rh, g_bp);
        INFO(noise_name(noise) << " noise: relative error " << e);
        CHECK(l_rh == Approx(l_bp).epsilon(1e-13));
        CHECK(e < 1e-8);
    }
    // Output times off the step grid (the steps before them are shortened).
    Problem pb;
    pb.ts = {0.0, 0.333, 0.7071};
    TinyNeuralSDE sde(pb.d, Noise::diagonal);
    SolveOptions opt;
    opt.solver = "reversible_heun";
    opt.dt = 0.01;
    BrownianPath bm = make_path(pb, sde, 0.0, 14);
    opt.estimator = "backprop";
    auto g_bp = gradient(sde, pb, bm, opt);
    opt.estimator = "reversible_heun";
    CHECK(rel_error(gradient(sde, pb, bm, opt), g_bp) < 1e-8);
}

namespace {
// Bytes reserved by the root arena and the first nested one (where the per-step scopes live).
std::size_t reserved_bytes() {
    std::size_t total = current_tape().arena().bytes_reserved();
    NestedTape scope;
    total += scope.tape().arena().bytes_reserved();
    return total;
}

// Run in a fresh thread, whose tapes (thread-local) start empty, so that earlier tests do not count.
// Bytes reserved by the arenas (root and nested) after one gradient, or, with in_use, the bytes the root
// tape's arena holds at that point (its high-water mark: nothing is freed before reset_tape).
std::size_t reserved_after_backward(const std::string& estimator, const std::string& solver, double dt,
                                    bool in_use = false) {
    std::size_t bytes = 0;
    std::thread worker([&] {
        Problem pb;
        TinyNeuralSDE sde(pb.d, Noise::diagonal);
        SolveOptions opt;
        opt.solver = solver;
        opt.estimator = estimator;
        opt.dt = dt;
        BrownianPath bm = make_path(pb, sde, dt);
        if (in_use) {
            Var ys = sdeint(sde, leaf(pb.y0), pb.ts, bm, opt);
            backward(sum(ys * Var(pb.w)));
            bytes = current_tape().arena().bytes_in_use();
            reset_tape();
        } else {
            gradient(sde, pb, bm, opt);
            bytes = reserved_bytes();
        }
    });
    worker.join();
    return bytes;
}
}  // namespace

TEST_CASE("adjoint and reversible Heun memory does not grow with the number of steps (64 vs 1024)",
          "[adjoint]") {
    register_adjoint_estimators();
    for (auto [est, solver] :
         {std::pair{"adjoint", "midpoint"}, std::pair{"reversible_heun", "reversible_heun"}}) {
        const std::size_t small = reserved_after_backward(est, solver, 1.0 / 64);
        const std::size_t large = reserved_after_backward(est, solver, 1.0 / 1024);
        INFO(est << ": " << small << " bytes reserved after 64 steps, " << large << " after 1024");
        CHECK(static_cast<double>(large) < 1.1 * static_cast<double>(small));
    }
    // Backprop, for contrast, grows with the steps (counted in bytes used: the reserved chunks are coarse).
    const std::size_t bp_small = reserved_after_backward("backprop", "midpoint", 1.0 / 64, true);
    const std::size_t bp_large = reserved_after_backward("backprop", "midpoint", 1.0 / 1024, true);
    INFO("backprop: " << bp_small << " bytes in use after 64 steps, " << bp_large << " after 1024");
    CHECK(bp_large > 8 * bp_small);
}

TEST_CASE("stochastic adjoint after an adaptive forward solve retraces its accepted steps", "[adjoint]") {
    register_adjoint_estimators();
    Problem pb;
    TinyNeuralSDE sde(pb.d, Noise::diagonal);
    SolveOptions opt;
    opt.solver = "midpoint";
    opt.adaptive = true;
    opt.dt = 1e-2;
    opt.rtol = opt.atol = 1e-4;
    BrownianPath bm = make_path(pb, sde, 0.0, 21);
    opt.estimator = "backprop";
    auto g_bp = gradient(sde, pb, bm, opt);
    opt.estimator = "adjoint";
    auto g_adj = gradient(sde, pb, bm, opt);
    const double e = rel_error(g_adj, g_bp);
    WARN(fmt::format("adaptive (rtol = atol = 1e-4): adjoint vs backprop relative error {:.2e}", e));
    CHECK(e < 1e-2);
}

TEST_CASE("the adjoint SDE solved backwards by integrate(): gradient error vs backprop falls at order ~1 "
          "in dt for the midpoint, heun, reversible_heun and milstein backward solvers (6 step sizes)",
          "[adjoint]") {
    Problem pb;
    TinyNeuralSDE sde(pb.d, Noise::diagonal);
    BrownianPath bm = make_path(pb, sde, 0.0, 31);  // exact increments at every resolution: one path
    const std::vector<double> dts{1.0 / 8, 1.0 / 16, 1.0 / 32, 1.0 / 64, 1.0 / 128, 1.0 / 256};
    for (const char* back : {"midpoint", "heun", "reversible_heun", "milstein"}) {
        std::vector<double> errs;
        for (double dt : dts) {
            SolveOptions opt;
            opt.solver = "midpoint";
            opt.dt = dt;
            opt.estimator = "backprop";
            auto g_bp = gradient(sde, pb, bm, opt);
            opt.estimator = "adjoint";
            opt.adjoint_solver = back;
            errs.push_back(rel_error(gradient(sde, pb, bm, opt), g_bp));
        }
        const double p = fit_log_slope(dts, errs).slope;
        WARN(fmt::format("adjoint_solver {}: relative error vs backprop {:.2e} at dt = 1/8 .. 1/256, "
                         "slope {:.2f}",
                         back, fmt::join(errs, " "), p));
        CHECK(p > 0.8);
        CHECK(errs.back() < errs.front());
    }
}

TEST_CASE("the adjoint with adaptive backward steps: its gradient error falls with the tolerance",
          "[adjoint]") {
    // The reference is backprop at a fine step (the pathwise gradient of the continuous solution up to
    // ~1e-4): with adaptive backward steps the adjoint no longer retraces the forward's steps, so it
    // approximates that gradient, not the one of the forward's discretisation.
    Problem pb;
    TinyNeuralSDE sde(pb.d, Noise::diagonal);
    SolveOptions opt;
    opt.solver = "midpoint";
    opt.dt = 1.0 / 4096;
    BrownianPath bm = make_path(pb, sde, 0.0, 33);
    opt.estimator = "backprop";
    auto g_ref = gradient(sde, pb, bm, opt);
    opt.estimator = "adjoint";
    opt.adjoint_adaptive = true;
    std::vector<double> errs;
    for (double tol : {1e-2, 1e-3, 1e-4}) {
        opt.adjoint_rtol = opt.adjoint_atol = tol;
        errs.push_back(rel_error(gradient(sde, pb, bm, opt), g_ref));
    }
    WARN(fmt::format("adaptive backward (forward dt = 1/4096), rtol = atol = 1e-2, 1e-3, 1e-4: relative "
                     "error vs backprop {:.2e}",
                     fmt::join(errs, " ")));
    CHECK(errs[2] < errs[0] / 4);
    CHECK(errs[2] < 2e-3);
    opt.adjoint_solver = "heun";
    CHECK(rel_error(gradient(sde, pb, bm, opt), g_ref) < 2e-3);
}

TEST_CASE("integrate() solves backwards in time only under an IntegrateControl; there it retraces a "
          "Stratonovich path to its start",
          "[adjoint]") {
    Problem pb;
    TinyNeuralSDE sde(pb.d, Noise::diagonal);
    BrownianPath bm = make_path(pb, sde, 0.0, 35);
    SolveOptions opt;
    opt.dt = 1.0 / 64;
    auto solver = make_solver(SolverKind::midpoint);
    const std::vector<double> back_ts{1.0, 0.0};
    CHECK_THROWS_WITH(integrate(sde, *solver, Var(pb.y0), back_ts, bm, opt, false, nullptr),
                      Catch::Contains("strictly increasing"));
    // Forward from 0 to 1, then backwards from y(1) on the same path: y(0) again up to the discretisation
    // (the Stratonovich flow of an SDE is invertible along its path).
    struct Hooks final : IntegrateControl {
        std::vector<double> seen;
        bool at_time(std::size_t, double t, std::ptrdiff_t, Tensor&) override {
            seen.push_back(t);
            return false;
        }
    };
    std::vector<double> errs;
    for (double dt : {1.0 / 32, 1.0 / 64, 1.0 / 128}) {
        opt.dt = dt;
        ForwardResult fwd = integrate(sde, *solver, Var(pb.y0), std::vector<double>{0.0, 1.0}, bm, opt, false,
                                      nullptr);
        Hooks hooks;
        ForwardResult bwd = integrate(sde, *solver, Var(fwd.final_state), back_ts, bm, opt, false, nullptr,
                                      nullptr, &hooks);
        REQUIRE(hooks.seen.size() == static_cast<std::size_t>(std::lround(1.0 / dt)) + 1);
        CHECK(hooks.seen.front() == 1.0);
        CHECK(hooks.seen.back() == 0.0);
        double e = 0;
        for (std::int64_t i = 0; i < pb.y0.numel(); ++i)
            e = std::max(e, std::abs(bwd.final_state.flat(i) - pb.y0.flat(i)));
        errs.push_back(e);
        reset_tape();
    }
    WARN(fmt::format("forward then backward on one path: max |y0 - y0'| = {:.2e} {:.2e} {:.2e} at dt = 1/32, "
                     "1/64, 1/128", errs[0], errs[1], errs[2]));
    CHECK(errs[2] < errs[0] / 2);
    CHECK(errs[2] < 1e-2);
}

TEST_CASE("the adjoint estimators reject what they cannot do, naming themselves", "[adjoint]") {
    register_adjoint_estimators();
    Problem pb;
    TinyNeuralSDE general(pb.d, Noise::general);
    BrownianPath bm = make_path(pb, general, 0.0);
    SolveOptions opt;
    opt.solver = "midpoint";
    opt.estimator = "adjoint";
    Var y0 = leaf(pb.y0);
    CHECK_THROWS_WITH(sdeint(general, y0, pb.ts, bm, opt),
                      Catch::Contains("adjoint estimator") && Catch::Contains("general noise"));
    TinyNeuralSDE diag(pb.d, Noise::diagonal);
    BrownianPath bm_d = make_path(pb, diag, 0.0);
    opt.adjoint_solver = "euler";
    CHECK_THROWS_WITH(sdeint(diag, y0, pb.ts, bm_d, opt),
                      Catch::Contains("adjoint estimator") && Catch::Contains("euler"));
    // srk needs a state-independent diffusion, which the adjoint SDE never has (its a_theta part depends
    // on a); milstein supports no additive noise.
    opt.adjoint_solver = "srk";
    CHECK_THROWS_WITH(sdeint(diag, y0, pb.ts, bm_d, opt),
                      Catch::Contains("adjoint_solver") && Catch::Contains("'srk'"));
    {
        TinyNeuralSDE additive(pb.d, Noise::additive);
        BrownianPath bm_a = make_path(pb, additive, 0.0);
        opt.adjoint_solver = "milstein";
        CHECK_THROWS_WITH(sdeint(additive, y0, pb.ts, bm_a, opt),
                          Catch::Contains("adjoint_solver") && Catch::Contains("'milstein'") &&
                              Catch::Contains("additive"));
    }
    opt.adjoint_solver.clear();
    opt.estimator = "reversible_heun";
    opt.adaptive = true;
    CHECK_THROWS_WITH(sdeint(diag, y0, pb.ts, bm_d, opt),
                      Catch::Contains("reversible_heun estimator") && Catch::Contains("adaptive"));
    // (Ito SDEs with diagonal or scalar noise are supported through their Stratonovich form:
    // tests/test_ito_adjoint.cpp.)
    // Typed solver options: an explicit euler is not "unset" for reversible Heun, and a typo fails at once.
    opt.estimator = "reversible_heun";
    opt.adaptive = false;
    opt.solver = "euler";
    CHECK_THROWS_WITH(sdeint(diag, y0, pb.ts, bm_d, opt),
                      Catch::Contains("reversible_heun estimator") && Catch::Contains("'euler'"));
    CHECK_THROWS_WITH(opt.solver = "midpiont", Catch::Contains("midpiont") && Catch::Contains("midpoint"));
    opt.solver = SolverKind::reversible_heun;
    CHECK(opt.solver == "reversible_heun");
    CHECK(SolveOptions{}.solver.empty());
    // One validator (integrate()'s) for every estimator: reversible Heun's forward checks the path too.
    BrownianPath wrong(0.0, 1.0, 2, 1);
    opt.estimator = "reversible_heun";
    opt.solver = "reversible_heun";
    CHECK_THROWS_WITH(sdeint(diag, y0, pb.ts, wrong, opt),
                      Catch::Contains("Brownian path has 2 coordinates") &&
                          Catch::Contains("reversible_heun"));
    CHECK(estimator_names().size() >= 3);
    reset_tape();
}


TEST_CASE("the docs/estimators.md example estimator gives backprop's gradients", "[adjoint][docs]") {
    Problem pb;
    TinyNeuralSDE sde(pb.d, Noise::diagonal);
    SolveOptions opt;
    opt.solver = "heun";
    opt.dt = 1e-2;
    BrownianPath bm = make_path(pb, sde, opt.dt);
    auto g_bp = gradient(sde, pb, bm, opt);
    opt.estimator = "recompute";
    CHECK(rel_error(gradient(sde, pb, bm, opt), g_bp) < 1e-13);
}

namespace {
std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}
}  // namespace

TEST_CASE("docs/estimators.md shows the example estimator's code verbatim", "[adjoint][docs]") {
    const std::string src = read_text(std::string(SDEUQ_SOURCE_DIR) + "/sde/estimators/recompute.cpp");
    const std::string doc = read_text(std::string(SDEUQ_SOURCE_DIR) + "/docs/estimators.md");
    const std::string begin = "// BEGIN estimators.md example\n", end = "// END estimators.md example";
    const auto b = src.find(begin), e = src.find(end, b + 1);
    REQUIRE(b != std::string::npos);
    REQUIRE(e != std::string::npos);
    const std::string code = src.substr(b + begin.size(), e - b - begin.size());
    INFO(
        "the code between the BEGIN/END markers of tests/test_adjoint.cpp must appear in docs/estimators.md");
    CHECK(doc.find(code) != std::string::npos);
}

namespace {

// A ModuleSDE of two small float64 MLPs (tanh drift, sigmoid diffusion), optionally seeing t.
ModuleSDE module_sde(std::int64_t d, Noise noise, bool time_input, std::int64_t m = 1) {
    Generator gen(5, 1);
    const std::int64_t in = d + (time_input ? 1 : 0);
    const std::int64_t gout = noise == Noise::general ? d * m : d;
    nn::LinearOptions lo{.dtype = DType::f64};
    auto f = std::make_shared<nn::Sequential>();
    f->emplace<nn::Linear>(in, 8, gen, lo);
    f->emplace<nn::Activation>(nn::Act::tanh);
    f->emplace<nn::Linear>(8, d, gen, lo);
    auto g = std::make_shared<nn::Sequential>();
    g->emplace<nn::Linear>(in, gout, gen, lo);
    g->emplace<nn::Activation>(nn::Act::sigmoid);
    return ModuleSDE(f, g, ModuleSDEOptions{noise, Calculus::stratonovich, time_input, m});
}

// The tiny neural SDE with its diffusion's bias used but not registered (the mistake ModuleSDE rules out).
class ForgetfulSDE : public TinyNeuralSDE {
public:
    ForgetfulSDE() : TinyNeuralSDE(3, Noise::diagonal, 2, false) {}
};

}  // namespace

TEST_CASE("ModuleSDE: parameters() are its modules'; adjoint and reversible Heun gradients match backprop",
          "[adjoint][module_sde]") {
    register_adjoint_estimators();
    for (auto [noise, time_input] : {std::pair{Noise::diagonal, false}, std::pair{Noise::diagonal, true},
                                     std::pair{Noise::general, true}}) {
        Problem pb;
        ModuleSDE sde = module_sde(pb.d, noise, time_input, 2);
        std::vector<Parameter*> expect = sde.drift().parameters(true);
        for (Parameter* p : sde.diffusion().parameters(true)) expect.push_back(p);
        CHECK(sde.parameters() == expect);
        BrownianPath bm = make_path(pb, sde, 0.0, 21);
        SolveOptions opt;
        opt.dt = 1e-3;
        opt.solver = "midpoint";
        opt.estimator = "backprop";
        auto g_bp = gradient(sde, pb, bm, opt);
        if (noise != Noise::general) {
            opt.estimator = "adjoint";
            const double e = rel_error(gradient(sde, pb, bm, opt), g_bp);
            INFO(noise_name(noise) << " noise, time input " << time_input << ": adjoint rel. error " << e);
            CHECK(e < 1e-2);
        }
        opt.dt = 1e-2;
        opt.solver = "reversible_heun";
        opt.estimator = "backprop";
        auto g_bp_rh = gradient(sde, pb, bm, opt);
        opt.estimator = "reversible_heun";
        CHECK(rel_error(gradient(sde, pb, bm, opt), g_bp_rh) < 1e-10);
    }
}

TEST_CASE("a parameter that f or g use but the SDE did not register: the adjoint and reversible Heun name it",
          "[adjoint][module_sde]") {
    register_adjoint_estimators();
    Problem pb;
    ForgetfulSDE sde;
    BrownianPath bm = make_path(pb, sde, 0.0, 22);
    for (const char* est : {"adjoint", "reversible_heun"}) {
        SolveOptions opt;
        opt.dt = 0.05;
        opt.solver = std::string(est) == "adjoint" ? "midpoint" : "reversible_heun";
        opt.estimator = est;
        Var ys = sdeint(sde, leaf(pb.y0), pb.ts, bm, opt);
        CHECK_THROWS_WITH(backward(sum(ys)), Catch::Contains(est) && Catch::Contains("'bg'") &&
                                                 Catch::Contains("parameters()"));
        reset_tape();
    }
    // Backprop needs no list: the same SDE's gradient reaches bg.
    SolveOptions opt;
    opt.dt = 0.05;
    opt.solver = "midpoint";
    Var ys = sdeint(sde, leaf(pb.y0), pb.ts, bm, opt);
    backward(sum(ys));
    reset_tape();
}
