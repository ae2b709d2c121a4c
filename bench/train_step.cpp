// Training step of the SNGP tutorial's deterministic ResNet (frozen input Dense 2->128, 6 residual Dense
// 128->128 with ReLU and dropout 0.1, Dense 128->2), batch 128, Adam, softmax cross-entropy: forward,
// backward, optimizer step and arena reset, in microseconds per step with 1 and 2 threads, and split by phase. The PyTorch
// peer is bench/train_step_torch.py (run by scripts/run-benchmarks in the same script); when PyTorch is
// installed this program also runs it and prints the ratio.
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <memory>

#include "autodiff/parallel.hpp"
#include "autodiff/profile.hpp"
#include "bench/bench_util.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"

using namespace sdeuq;

namespace {

// Microseconds per step, in total and by phase (zero_grad, forward incl. loss, backward, optimizer step
// and tape reset), from the fastest of 5 blocks of `steps` steps.
struct StepTime {
    double total = 0, zero = 0, forward = 0, backward = 0, update = 0;
};

StepTime us_per_step(int threads, int steps, bool profile = false) {
    ThreadsScope ts(threads);
    Generator gen(0, 1);
    nn::ResNetConfig cfg;
    nn::ResNetClassifier model(cfg, gen);
    nn::Adam opt(model.trainable_parameters(), {.lr = 1e-4});
    Generator data_gen(1, 2);
    Tensor x = randn({128, 2}, data_gen);
    std::vector<std::int32_t> y(128);
    for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<std::int32_t>(data_gen() & 1u);
    model.train();
    StepTime acc;
    auto step = [&] {
        const double t0 = bench::now_seconds();
        opt.zero_grad();
        const double t1 = bench::now_seconds();
        Var loss = cross_entropy(model.forward(Var(x)), y);
        const double t2 = bench::now_seconds();
        backward(loss);
        const double t3 = bench::now_seconds();
        opt.step();
        reset_tape();
        const double t4 = bench::now_seconds();
        acc.zero += t1 - t0;
        acc.forward += t2 - t1;
        acc.backward += t3 - t2;
        acc.update += t4 - t3;
    };
    for (int i = 0; i < 50; ++i) step();
    if (profile) {
        ProfileScope prof;
        for (int i = 0; i < steps; ++i) step();
        std::printf("%s", profile_table(fmt::format("{} threads, {} steps, totals in us", threads, steps)).c_str());
        return {};
    }
    StepTime best{1e300};
    for (int b = 0; b < 5; ++b) {
        acc = {};
        const double t0 = bench::now_seconds();
        for (int i = 0; i < steps; ++i) step();
        const double total = bench::now_seconds() - t0;
        if (total < best.total) best = {total, acc.zero, acc.forward, acc.backward, acc.update};
    }
    const double k = 1e6 / steps;
    return {best.total * k, best.zero * k, best.forward * k, best.backward * k, best.update * k};
}

// The PyTorch peer's best microseconds per step, or a negative value when it cannot run.
double torch_peer(bool quick) {
    std::string cmd = std::string("/usr/bin/python3 ") + SDEUQ_SOURCE_DIR + "/bench/train_step_torch.py --json" +
                      (quick ? " --quick" : "") + " 2>/dev/null";
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return -1;
    char buf[4096] = {};
    std::string out;
    while (fgets(buf, sizeof buf, p)) out += buf;
    if (pclose(p) != 0) return -1;
    auto k = out.find("\"torch_us_per_step\": ");
    if (k == std::string::npos) return -1;
    return std::atof(out.c_str() + k + 21);
}

}  // namespace

int main(int argc, char** argv) {
    auto flags = bench::parse_flags(argc, argv, "bench_train_step", true);
    const int steps = flags.quick ? 100 : 400;
    if (flags.profile) {  // where a step's time goes, op by op (not a timing run)
        us_per_step(1, steps, true);
        us_per_step(2, steps, true);
        return 0;
    }
    const StepTime s1 = us_per_step(1, steps), s2 = us_per_step(2, steps);
    const double t1 = s1.total, t2 = s2.total;
    const double torch = torch_peer(flags.quick);
    auto phases = [](const StepTime& s) {
        return fmt::format(R"({{"zero_grad": {:.2f}, "forward": {:.2f}, "backward": {:.2f}, "optimizer": {:.2f}}})",
                           s.zero, s.forward, s.backward, s.update);
    };
    if (flags.json) {
        std::printf("%s\n", fmt::format(R"({{"us_per_step_1t": {:.2f}, "us_per_step_2t": {:.2f}, "torch_us_per_step": {}, )"
                                        R"("phases_1t": {}, "phases_2t": {}}})",
                                        t1, t2, torch > 0 ? fmt::format("{:.2f}", torch) : "null", phases(s1),
                                        phases(s2)).c_str());
        return 0;
    }
    std::printf("train step, SNGP tutorial ResNet, batch 128, Adam (best of 5 blocks of %d steps)\n", steps);
    std::printf("                   us/step   zero_grad   forward  backward  Adam+reset\n");
    for (auto [name, s] : {std::pair{"sdeuq 1 thread ", s1}, std::pair{"sdeuq 2 threads", s2}})
        std::printf("  %s %9.1f %11.1f %9.1f %9.1f %11.1f\n", name, s.total, s.zero, s.forward, s.backward, s.update);
    if (torch > 0)
        std::printf("  PyTorch (best)   %9.1f us/step   ratio PyTorch/sdeuq %.2fx  (target: sdeuq <= 500 us)\n", torch,
                    torch / std::min(t1, t2));
    else
        std::printf("  PyTorch peer not available (apt-get install python3-torch)\n");
}
