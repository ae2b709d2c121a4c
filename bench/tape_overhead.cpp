// Tape overhead: nanoseconds per recorded node on a long chain of small ops (4 elements each), forward
// (op + node creation) and backward (one reverse sweep), with the arena reset between repetitions.
#include <cstdio>
#include <fmt/format.h>

#include "autodiff/ops.hpp"
#include "autodiff/parallel.hpp"
#include "bench/bench_util.hpp"

using namespace sdeuq;

int main(int argc, char** argv) {
    auto flags = bench::parse_flags(argc, argv, "bench_tape_overhead");
    ThreadsScope ts(1);
    const int chain = flags.quick ? 20000 : 100000;
    Parameter p("p", Tensor::full({4}, 0.5, DType::f32));
    Var out;
    std::size_t nodes = 0;
    auto forward = [&] {
        Var x = p.var();
        for (int i = 0; i < chain; i += 4) {
            x = x * 0.999;
            x = x + 0.001;
            x = tanh(x);
            x = x - 0.0001;
        }
        out = sum(x);
        nodes = current_tape().size();
    };
    // Forward alone.
    double t_fwd = bench::best_of(5, [&] {
        forward();
        reset_tape();
    });
    // Forward + backward; backward time is the difference.
    double t_both = bench::best_of(5, [&] {
        forward();
        backward(out);
        reset_tape();
    });
    const double ns_fwd = t_fwd / static_cast<double>(nodes) * 1e9;
    const double ns_bwd = (t_both - t_fwd) / static_cast<double>(nodes) * 1e9;
    const double ns = t_both / static_cast<double>(nodes) * 1e9;
    if (flags.json) {
        std::printf("%s\n", fmt::format(R"({{"ns_per_node": {:.1f}, "ns_forward": {:.1f}, "ns_backward": {:.1f}, "nodes": {}}})",
                                        ns, ns_fwd, ns_bwd, nodes).c_str());
    } else {
        std::printf("tape overhead: chain of %zu nodes of 4-element ops, 1 thread, best of 5\n", nodes);
        std::printf("  forward  %8.1f ns/node\n  backward %8.1f ns/node\n  total    %8.1f ns/node  "
                    "(target <= 300; PyTorch eager ~5000 ns/op)\n",
                    ns_fwd, ns_bwd, ns);
    }
}
