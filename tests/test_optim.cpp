// Optimizers against PyTorch 1.13 reference values, schedules and gradient clipping.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <numbers>

#include "autodiff/ops.hpp"
#include "nn/optim.hpp"

using namespace sdeuq;
using namespace sdeuq::nn;

namespace {

// The fixed problem of the reference script below: mse_loss(x w^T + b, y), 5 steps.
std::vector<double> run_reference_problem(
    const std::function<std::unique_ptr<Optimizer>(std::vector<Parameter*>)>& make, DType dt = DType::f64) {
    Tensor x =
        Tensor::from_vector({0.5, -1.0, 2.0, 1.5, 0.25, -0.5, -1.0, 1.0, 0.75, 0.3, -0.2, 0.1}, {4, 3}, dt);
    Tensor y = Tensor::from_vector({1.0, -1.0, 0.5, 2.0, -0.25, 0.0, 1.0, 1.0}, {4, 2}, dt);
    Parameter w("w", Tensor::from_vector({0.1, -0.2, 0.3, 0.4, 0.5, -0.6}, {2, 3}, dt));
    Parameter b("b", Tensor::from_vector({0.05, -0.05}, {2}, dt));
    auto opt = make({&w, &b});
    for (int s = 0; s < 5; ++s) {
        opt->zero_grad();
        Var bv = b.var();
        backward(mse_loss(linear(Var(x), w.var(), &bv), Var(y)));
        opt->step();
        reset_tape();
    }
    std::vector<double> out = w.value().to_vector();
    for (double v : b.value().to_vector()) out.push_back(v);
    return out;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double rtol) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
        CHECK(std::abs(got[i] - want[i]) <= rtol * std::max(1.0, std::abs(want[i])));
    }
}

}  // namespace

// Reference values from /usr/bin/python3 with torch 1.13 (float64):
//   x = [[0.5,-1,2],[1.5,0.25,-0.5],[-1,1,0.75],[0.3,-0.2,0.1]]; y = [[1,-1],[0.5,2],[-0.25,0],[1,1]]
//   w0 = [[0.1,-0.2,0.3],[0.4,0.5,-0.6]]; b0 = [0.05,-0.05]
//   for 5 steps: opt.zero_grad(); F.mse_loss(x @ w.T + b, y).backward(); opt.step()
//   print(w.flatten().tolist() + b.tolist())
// with Adam(lr=0.1, weight_decay=0.01), AdamW(lr=0.1, weight_decay=0.1),
// SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), SGD(lr=0.1, momentum=0.8, dampening=0.3).
TEST_CASE("Adam matches torch.optim.Adam with L2 weight decay over 5 steps", "[optim]") {
    auto got = run_reference_problem(
        [](auto p) { return std::make_unique<Adam>(p, AdamOptions{.lr = 0.1, .weight_decay = 0.01}); });
    check_close(got,
                {0.40669182647043073, -0.4731978920164647, -0.004391238161302574, 0.849170717203373,
                 0.6854797625344807, -0.39968665698904055, 0.4936089628394522, 0.4127462323454115},
                1e-12);
}

TEST_CASE("AdamW matches torch.optim.AdamW (decoupled weight decay) over 5 steps", "[optim]") {
    auto got = run_reference_problem(
        [](auto p) { return std::make_unique<AdamW>(p, AdamOptions{.lr = 0.1, .weight_decay = 0.1}); });
    check_close(got,
                {0.4026540251241096, -0.4749436320689593, -0.0025066936971191098, 0.8263195903583364,
                 0.6744702752826254, -0.40184377425747786, 0.4842117017816443, 0.40647104507325943},
                1e-12);
}

TEST_CASE("SGD with Nesterov momentum and weight decay matches torch.optim.SGD", "[optim]") {
    auto got = run_reference_problem([](auto p) {
        return std::make_unique<SGD>(
            p, SGDOptions{.lr = 0.1, .momentum = 0.9, .nesterov = true, .weight_decay = 0.01});
    });
    check_close(got,
                {0.40435039675117534, -0.289082846733103, 0.18705030829275088, 0.7917683157151943,
                 0.5447521348786066, -0.5152559675836504, 0.3587669104377811, 0.6831666986764633},
                1e-12);
}

TEST_CASE("SGD with momentum and dampening matches torch.optim.SGD", "[optim]") {
    auto got = run_reference_problem([](auto p) {
        return std::make_unique<SGD>(p, SGDOptions{.lr = 0.1, .momentum = 0.8, .dampening = 0.3});
    });
    check_close(got,
                {0.32737126171899117, -0.2653604535565369, 0.25126032194863895, 0.7023700391810243,
                 0.5057066952624262, -0.47568034483730376, 0.2703381193013012, 0.4898278921623121},
                1e-12);
}

TEST_CASE("Adam in float32 agrees with the float64 run to float32 precision", "[optim]") {
    auto make = [](auto p) {
        return std::make_unique<Adam>(p, AdamOptions{.lr = 0.1, .weight_decay = 0.01});
    };
    check_close(run_reference_problem(make, DType::f32), run_reference_problem(make, DType::f64), 2e-5);
}

TEST_CASE("optimizers skip non-trainable parameters and count steps", "[optim]") {
    Parameter a("a", Tensor::full({3}, 1.0, DType::f64));
    Parameter frozen("frozen", Tensor::full({3}, 1.0, DType::f64), false);
    a.grad().fill(1.0);
    frozen.grad().fill(1.0);
    SGD opt({&a, &frozen}, SGDOptions{.lr = 0.5});
    opt.step();
    CHECK(a.value().flat(0) == 0.5);
    CHECK(frozen.value().flat(0) == 1.0);
    CHECK(opt.step_count() == 1);
    CHECK(opt.named_state().empty());  // plain SGD keeps no state
    Adam adam({&a});
    auto st = adam.named_state();
    REQUIRE(st.size() == 2);
    CHECK(st[0].first == "0.exp_avg");
    CHECK(st[1].first == "0.exp_avg_sq");
}

TEST_CASE("learning-rate schedules follow their formulas", "[optim][schedule]") {
    MultiStepLR ms(0.1, {30, 10}, 0.5);
    CHECK(ms(0) == Approx(0.1));
    CHECK(ms(9) == Approx(0.1));
    CHECK(ms(10) == Approx(0.05));
    CHECK(ms(29) == Approx(0.05));
    CHECK(ms(30) == Approx(0.025));

    WarmupCosineLR wc(1.0, 10, 110, 0.1);
    CHECK(wc(0) == Approx(0.0));
    CHECK(wc(5) == Approx(0.5));
    CHECK(wc(10) == Approx(1.0));
    CHECK(wc(60) == Approx(0.1 + 0.45 * (1 + std::cos(std::numbers::pi * 0.5))));
    CHECK(wc(110) == Approx(0.1));
    CHECK(wc(1000) == Approx(0.1));

    ExponentialLR ex(0.2, 0.9);
    CHECK(ex(3) == Approx(0.2 * 0.729));

    Parameter p("p", Tensor::zeros({1}, DType::f64));
    SGD opt({&p});
    ex.apply(opt, 2);
    CHECK(opt.lr() == Approx(0.2 * 0.81));
}

TEST_CASE("clip_grad_norm returns the global norm and rescales only above max_norm", "[optim][clip]") {
    Parameter a("a", Tensor::zeros({2}, DType::f64)), b("b", Tensor::zeros({1}, DType::f32));
    a.grad().set_flat(0, 3.0);
    a.grad().set_flat(1, 0.0);
    b.grad().set_flat(0, 4.0);
    std::vector<Parameter*> ps = {&a, &b};
    CHECK(clip_grad_norm(ps, 10.0) == Approx(5.0));
    CHECK(a.grad().flat(0) == 3.0);  // unchanged below the threshold
    CHECK(clip_grad_norm(ps, 1.0) == Approx(5.0));
    CHECK(a.grad().flat(0) == Approx(3.0 / (5.0 + 1e-6)));
    CHECK(b.grad().flat(0) == Approx(4.0 / (5.0 + 1e-6)));
    CHECK(grad_norm(ps) == Approx(1.0).epsilon(1e-6));
}
