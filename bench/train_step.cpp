// Training step of the SNGP tutorial's deterministic ResNet (frozen input Dense 2->128, 6 residual Dense
// 128->128 with ReLU and dropout 0.1, Dense 128->2), batch 128, Adam, softmax cross-entropy: forward,
// backward, optimizer step and arena reset, in microseconds per step with 1 and 2 threads. The PyTorch
// peer is bench/train_step_torch.py (run by scripts/run-benchmarks in the same script); when PyTorch is
// installed this program also runs it and prints the ratio.
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <memory>

#include "autodiff/parallel.hpp"
#include "bench/bench_util.hpp"
#include "nn/models.hpp"
#include "nn/optim.hpp"

using namespace sdeuq;

namespace {

double us_per_step(int threads, int steps) {
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
    auto step = [&] {
        opt.zero_grad();
        backward(cross_entropy(model.forward(Var(x)), y));
        opt.step();
        reset_tape();
    };
    for (int i = 0; i < 50; ++i) step();
    double best = 1e300;
    for (int b = 0; b < 5; ++b) {
        double t0 = bench::now_seconds();
        for (int i = 0; i < steps; ++i) step();
        best = std::min(best, (bench::now_seconds() - t0) / steps);
    }
    return best * 1e6;
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
    auto flags = bench::parse_flags(argc, argv, "bench_train_step");
    const int steps = flags.quick ? 100 : 400;
    const double t1 = us_per_step(1, steps), t2 = us_per_step(2, steps);
    const double torch = torch_peer(flags.quick);
    if (flags.json) {
        std::printf("%s\n", fmt::format(R"({{"us_per_step_1t": {:.2f}, "us_per_step_2t": {:.2f}, "torch_us_per_step": {}}})",
                                        t1, t2, torch > 0 ? fmt::format("{:.2f}", torch) : "null").c_str());
        return 0;
    }
    std::printf("train step, SNGP tutorial ResNet, batch 128, Adam (best of 5 blocks of %d steps)\n", steps);
    std::printf("  sdeuq 1 thread   %9.1f us/step\n  sdeuq 2 threads  %9.1f us/step\n", t1, t2);
    if (torch > 0)
        std::printf("  PyTorch (best)   %9.1f us/step   ratio PyTorch/sdeuq %.2fx  (target: sdeuq <= 500 us)\n", torch,
                    torch / std::min(t1, t2));
    else
        std::printf("  PyTorch peer not available (apt-get install python3-torch)\n");
}
