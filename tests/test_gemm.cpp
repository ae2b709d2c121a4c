// The packed GEMM against the plain triple loop, and bitwise reproducibility across thread counts.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "autodiff/kernels/conv.hpp"
#include "autodiff/kernels/gemm.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/parallel.hpp"
#include "autodiff/random.hpp"
#include "autodiff/tape.hpp"

namespace {

using sdeuq::kernels::gemm;
using sdeuq::kernels::gemm_reference;
using int64 = std::int64_t;

template <class T>
std::vector<T> random_vector(std::size_t size, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<T> dist(T(-1), T(1));
    std::vector<T> v(size);
    for (auto& x : v) x = dist(rng);
    return v;
}

// Operands for op(A) (m x k) and op(B) (k x n) stored with row strides larger than the minimum, so that
// a kernel which assumed contiguous rows would read the padding (filled with a large value).
template <class T>
struct Problem {
    bool ta, tb;
    int64 m, n, k;
    int64 lda, ldb, ldc;
    std::vector<T> a, b, c;

    Problem(bool ta_, bool tb_, int64 m_, int64 n_, int64 k_, int64 pad, std::uint32_t seed)
        : ta(ta_), tb(tb_), m(m_), n(n_), k(k_) {
        const int64 a_rows = ta ? k : m, a_cols = ta ? m : k;
        const int64 b_rows = tb ? n : k, b_cols = tb ? k : n;
        lda = a_cols + pad;
        ldb = b_cols + pad;
        ldc = n + pad;
        a = padded(a_rows, a_cols, lda, seed);
        b = padded(b_rows, b_cols, ldb, seed + 1);
        c = padded(m, n, ldc, seed + 2);
    }

    static std::vector<T> padded(int64 rows, int64 cols, int64 ld, std::uint32_t seed) {
        std::vector<T> v = random_vector<T>(static_cast<std::size_t>(std::max<int64>(rows * ld, 1)), seed);
        for (int64 i = 0; i < rows; ++i)
            for (int64 j = cols; j < ld; ++j) v[i * ld + j] = T(1e30);
        return v;
    }
};

template <class T>
void check_against_reference(bool ta, bool tb, int64 m, int64 n, int64 k, T alpha, T beta, int64 pad,
                             bool nan_c, bool with_bias = false) {
    Problem<T> p(ta, tb, m, n, k, pad, static_cast<std::uint32_t>(m * 1000003 + n * 1009 + k));
    const std::vector<T> bias_v = random_vector<T>(static_cast<std::size_t>(n), 4242);
    const T* bias = with_bias ? bias_v.data() : nullptr;
    if (nan_c)
        for (int64 i = 0; i < m; ++i)
            for (int64 j = 0; j < n; ++j) p.c[i * p.ldc + j] = std::numeric_limits<T>::quiet_NaN();
    std::vector<T> expect = p.c, got = p.c;
    gemm_reference<T>(ta, tb, m, n, k, alpha, p.a.data(), p.lda, p.b.data(), p.ldb, beta, expect.data(),
                      p.ldc, bias);
    gemm<T>(ta, tb, m, n, k, alpha, p.a.data(), p.lda, p.b.data(), p.ldb, beta, got.data(), p.ldc, bias);

    // Error bound relative to the magnitude of the terms summed, not of the result, so that
    // cancellation does not make the check flaky: |err| <= tol * (|alpha| * sum|a||b| + |beta c|).
    const T tol = std::is_same_v<T, float> ? T(1e-5) : T(1e-12);
    int bad = 0;
    for (int64 i = 0; i < m; ++i) {
        for (int64 j = 0; j < n; ++j) {
            T scale = 0;
            for (int64 q = 0; q < k; ++q) {
                const T av = ta ? p.a[q * p.lda + i] : p.a[i * p.lda + q];
                const T bv = tb ? p.b[j * p.ldb + q] : p.b[q * p.ldb + j];
                scale += std::abs(av * bv);
            }
            scale = std::abs(alpha) * scale + (beta == T(0) ? T(0) : std::abs(beta * p.c[i * p.ldc + j])) +
                    (bias ? std::abs(bias[j]) : T(0)) + T(1);
            const T e = expect[i * p.ldc + j], g = got[i * p.ldc + j];
            if (!(std::abs(e - g) <= tol * scale) && ++bad <= 3)
                FAIL_CHECK("mismatch at (" << i << ", " << j << "): reference " << e << ", gemm " << g);
        }
        // The padding of C must be untouched.
        for (int64 j = n; j < p.ldc; ++j)
            if (got[i * p.ldc + j] != p.c[i * p.ldc + j] && ++bad <= 3) FAIL_CHECK("gemm wrote C padding");
    }
    REQUIRE(bad == 0);
}

template <class T>
void sweep(bool with_bias = false) {
    const int64 sizes[] = {1, 7, 33, 129};
    struct Scalars {
        T alpha, beta;
        bool nan_c;
    };
    const Scalars scalars[] = {
        {T(1), T(0), true}, {T(-0.75), T(0), true}, {T(1.5), T(-0.5), false}, {T(0.5), T(1), false}};
    int case_index = 0;
    for (bool ta : {false, true})
        for (bool tb : {false, true})
            for (int64 m : sizes)
                for (int64 n : sizes)
                    for (int64 k : sizes) {
                        // Rotate the scalars and padding over the cases to keep the sweep quick.
                        const Scalars& s = scalars[case_index % 4];
                        const int64 pad = (case_index % 3) * 5;
                        ++case_index;
                        INFO("ta=" << ta << " tb=" << tb << " m=" << m << " n=" << n << " k=" << k
                                   << " alpha=" << s.alpha << " beta=" << s.beta << " pad=" << pad);
                        check_against_reference<T>(ta, tb, m, n, k, s.alpha, s.beta, pad, s.nan_c, with_bias);
                    }
}

// gemm with 1 and 2 threads must agree to the last bit.
template <class T>
void check_thread_invariance(bool ta, bool tb, int64 m, int64 n, int64 k, T beta, bool with_bias = false) {
    Problem<T> p(ta, tb, m, n, k, 3, 77);
    const std::vector<T> bias_v = random_vector<T>(static_cast<std::size_t>(n), 99);
    const T* bias = with_bias ? bias_v.data() : nullptr;
    std::vector<T> c1 = p.c, c2 = p.c;
    {
        sdeuq::ThreadsScope one(1);
        gemm<T>(ta, tb, m, n, k, T(0.9), p.a.data(), p.lda, p.b.data(), p.ldb, beta, c1.data(), p.ldc, bias);
    }
    {
        sdeuq::ThreadsScope two(2);
        gemm<T>(ta, tb, m, n, k, T(0.9), p.a.data(), p.lda, p.b.data(), p.ldb, beta, c2.data(), p.ldc, bias);
    }
    REQUIRE(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(T)) == 0);
}

// gemm with a bias gives the same bits as gemm followed by a separate add of the bias to every row.
template <class T>
void check_bias_is_gemm_then_add(bool ta, bool tb, int64 m, int64 n, int64 k, T beta) {
    Problem<T> p(ta, tb, m, n, k, 2, 5);
    const std::vector<T> bias = random_vector<T>(static_cast<std::size_t>(n), 6);
    std::vector<T> fused = p.c, split = p.c;
    gemm<T>(ta, tb, m, n, k, T(1.25), p.a.data(), p.lda, p.b.data(), p.ldb, beta, fused.data(), p.ldc, bias.data());
    gemm<T>(ta, tb, m, n, k, T(1.25), p.a.data(), p.lda, p.b.data(), p.ldb, beta, split.data(), p.ldc);
    for (int64 i = 0; i < m; ++i)
        for (int64 j = 0; j < n; ++j) split[i * p.ldc + j] = split[i * p.ldc + j] + bias[j];
    REQUIRE(std::memcmp(fused.data(), split.data(), fused.size() * sizeof(T)) == 0);
}

}  // namespace

TEST_CASE("gemm float matches the reference for all transposes and edge sizes", "[gemm]") {
    sweep<float>();
}

TEST_CASE("gemm double matches the reference for all transposes and edge sizes", "[gemm]") {
    sweep<double>();
}

TEST_CASE("gemm matches the reference across several cache blocks", "[gemm]") {
    // Sizes beyond KC, MC and NR multiples exercise the accumulate path over k blocks.
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            INFO("ta=" << ta << " tb=" << tb);
            check_against_reference<float>(ta, tb, 200, 70, 900, 1.25f, 0.5f, 2, false);
            check_against_reference<double>(ta, tb, 101, 130, 800, -1.0, 0.0, 1, true);
        }
}

TEST_CASE("gemm with k == 0 or empty output", "[gemm]") {
    std::vector<float> c = {1.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f, 4.0f};
    const float dummy = 0.0f;
    gemm<float>(false, false, 2, 2, 0, 1.0f, &dummy, 1, &dummy, 2, 0.0f, c.data(), 2);
    for (float x : c) REQUIRE(x == 0.0f);
    c = {1.0f, 2.0f, 3.0f, 4.0f};
    gemm<float>(false, false, 2, 2, 0, 1.0f, &dummy, 1, &dummy, 2, 2.0f, c.data(), 2);
    REQUIRE(c == std::vector<float>{2.0f, 4.0f, 6.0f, 8.0f});
    // m == 0 or n == 0: nothing is touched.
    gemm<float>(false, false, 0, 2, 3, 1.0f, &dummy, 3, &dummy, 2, 0.0f, c.data(), 2);
    gemm<float>(false, false, 2, 0, 3, 1.0f, &dummy, 3, &dummy, 0, 0.0f, c.data(), 2);
    REQUIRE(c == std::vector<float>{2.0f, 4.0f, 6.0f, 8.0f});
}

TEST_CASE("gemm is bitwise identical with 1 and 2 threads", "[gemm][threads]") {
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            INFO("ta=" << ta << " tb=" << tb);
            check_thread_invariance<float>(ta, tb, 300, 257, 129, 0.0f);
            check_thread_invariance<double>(ta, tb, 300, 257, 129, 0.5);
            // m > n splits rows instead of columns.
            check_thread_invariance<float>(ta, tb, 257, 100, 500, 1.0f);
        }
    check_thread_invariance<float>(false, false, 513, 513, 513, 0.0f);
    check_thread_invariance<double>(true, false, 513, 513, 513, 0.0);
}

TEST_CASE("gemm with a bias matches the reference for all transposes and edge sizes", "[gemm][bias]") {
    sweep<float>(true);
    sweep<double>(true);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            INFO("ta=" << ta << " tb=" << tb);
            // Several k blocks: the bias is added once, after the last one.
            check_against_reference<float>(ta, tb, 200, 70, 900, 1.25f, 0.5f, 2, false, true);
            check_against_reference<double>(ta, tb, 101, 130, 800, -1.0, 0.0, 1, true, true);
        }
}

TEST_CASE("gemm with a bias gives the bits of gemm then a separate add", "[gemm][bias]") {
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            INFO("ta=" << ta << " tb=" << tb);
            for (int threads : {1, 2}) {
                sdeuq::ThreadsScope scope(threads);
                check_bias_is_gemm_then_add<float>(ta, tb, 37, 53, 29, 0.0f);
                check_bias_is_gemm_then_add<float>(ta, tb, 129, 128, 128, 1.0f);
                check_bias_is_gemm_then_add<double>(ta, tb, 70, 45, 500, 0.5);
                check_bias_is_gemm_then_add<float>(ta, tb, 400, 390, 400, 0.0f);
            }
        }
    // k == 0: C = beta C + bias.
    std::vector<float> c = {1.0f, 2.0f, 3.0f, 4.0f};
    const float bias[] = {10.0f, 20.0f};
    const float dummy = 0.0f;
    gemm<float>(false, false, 2, 2, 0, 1.0f, &dummy, 1, &dummy, 2, 2.0f, c.data(), 2, bias);
    REQUIRE(c == std::vector<float>{12.0f, 24.0f, 16.0f, 28.0f});
}

TEST_CASE("gemm with a bias is bitwise identical with 1 and 2 threads", "[gemm][threads][bias]") {
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            INFO("ta=" << ta << " tb=" << tb);
            check_thread_invariance<float>(ta, tb, 128, 128, 128, 0.0f, true);
            check_thread_invariance<float>(ta, tb, 128, 128, 128, 1.0f, true);
            check_thread_invariance<double>(ta, tb, 300, 257, 129, 0.5, true);
            check_thread_invariance<float>(ta, tb, 257, 100, 500, 1.0f, true);
            // Large enough for the threads to share the packed B panel (rows of C split).
            check_thread_invariance<float>(ta, tb, 517, 400, 777, 0.0f, true);
        }
    check_thread_invariance<double>(false, true, 513, 513, 513, 1.0, true);
    // Small products just above the threading threshold (training-step and SDE shapes, edge sizes).
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            check_thread_invariance<float>(ta, tb, 64, 64, 64, 0.0f, true);
            check_thread_invariance<float>(ta, tb, 128, 64, 32, 0.0f);
            check_thread_invariance<float>(ta, tb, 64, 32, 128, 1.0f);
            check_thread_invariance<double>(ta, tb, 61, 70, 33, 0.0, true);
        }
    // Small B read in place (whole panels) with a packed partial last panel.
    check_thread_invariance<float>(false, false, 200, 250, 32, 0.0f, true);
    check_thread_invariance<float>(true, false, 200, 250, 32, 1.0f, true);
    check_thread_invariance<double>(false, false, 300, 100, 30, 0.0, true);
}

namespace {

std::vector<unsigned char> bytes_of(const sdeuq::Tensor& t) {
    const auto* p = static_cast<const unsigned char*>(t.raw());
    return std::vector<unsigned char>(p, p + t.nbytes());
}

// y = linear(x, w, &b) (or matmul + add), backward with a fixed cotangent; the bytes of y and of the
// gradients of x, w and b.
std::vector<std::vector<unsigned char>> run_linear(int threads, bool fused, const sdeuq::Tensor& x,
                                                   const sdeuq::Tensor& w, const sdeuq::Tensor& b) {
    using namespace sdeuq;
    ThreadsScope scope(threads);
    NestedTape tape;
    Var xv = leaf(x), wv = leaf(w), bv = leaf(b);
    Var y = fused ? linear(xv, wv, &bv) : add(matmul(x.rank() == 1 ? reshape(xv, Shape{1, x.dim(0)}) : xv, wv, false, true), bv);
    if (x.rank() == 1) y = reshape(y, Shape{w.dim(0)});
    Generator g(5, 6);
    backward(y, rand_uniform(y.shape(), g, y.dtype(), -1.0, 1.0));
    return {bytes_of(y.value()), bytes_of(xv.grad()), bytes_of(wv.grad()), bytes_of(bv.grad())};
}

}  // namespace

TEST_CASE("linear with a bias: one fused GEMM, the bits of matmul + add, the same with 1 and 2 threads",
          "[gemm][bias][linear]") {
    using namespace sdeuq;
    struct Case {
        Shape x, w;
        DType dt;
    };
    const Case cases[] = {{{128, 128}, {128, 128}, DType::f32}, {{37, 70}, {50, 70}, DType::f32},
                          {{3, 40, 33}, {65, 33}, DType::f32},  {{70}, {20, 70}, DType::f32},
                          {{129, 64}, {96, 64}, DType::f64},    {{300, 200}, {150, 200}, DType::f32}};
    for (const Case& c : cases) {
        INFO("x " << c.x.str() << " w " << c.w.str());
        Generator g(11, 12);
        const Tensor x = rand_uniform(c.x, g, c.dt, -1.0, 1.0);
        const Tensor w = rand_uniform(c.w, g, c.dt, -1.0, 1.0);
        const Tensor b = rand_uniform(Shape{c.w[0]}, g, c.dt, -1.0, 1.0);
        const auto fused1 = run_linear(1, true, x, w, b);
        const auto fused2 = run_linear(2, true, x, w, b);
        const auto split1 = run_linear(1, false, x, w, b);
        for (std::size_t i = 0; i < fused1.size(); ++i) {
            INFO("output " << i << " (y, dx, dw, db)");
            REQUIRE(fused1[i].size() == split1[i].size());
            CHECK(fused1[i] == fused2[i]);
            CHECK(fused1[i] == split1[i]);
        }
    }
}

// ---------------------------------------------------------------- implicit GEMM (conv2d's forward)
namespace {

sdeuq::kernels::ConvShape conv_shape(int64 c, int64 h, int64 w, int64 kh, int64 kw, int64 s, int64 p) {
    return {c, h, w, kh, kw, (h + 2 * p - kh) / s + 1, (w + 2 * p - kw) / s + 1, s, p, p};
}

template <class T>
void check_implicit_conv(const sdeuq::kernels::ConvShape& g, int64 ns, int64 m) {
    namespace k_ = sdeuq::kernels;
    const int64 xs = g.c * g.h * g.w, p = g.hw_out(), n = ns * p, k = g.ck(), nr = k_::gemm_nr<T>;
    const auto x = random_vector<T>(static_cast<std::size_t>(ns * xs), 7);
    const auto w = random_vector<T>(static_cast<std::size_t>(m * k), 8);
    std::vector<T> col(static_cast<std::size_t>(k * n));
    for (int64 s = 0; s < ns; ++s) k_::im2col(g, x.data() + s * xs, col.data() + s * p, n);
    const int64 panels = (n + nr - 1) / nr;
    std::vector<T> bp(static_cast<std::size_t>(k * panels * nr), T(-7));  // -7: not written
    k_::im2col_packed(g, x.data(), ns, nr, bp.data());
    int64 wrong = 0;
    for (int64 t = 0; t < panels; ++t)
        for (int64 kk = 0; kk < k; ++kk)
            for (int64 c = 0; c < nr; ++c) {
                const int64 j = t * nr + c;
                const T want = j < n ? col[kk * n + j] : T(0);
                wrong += bp[(t * k + kk) * nr + c] != want;
            }
    CHECK(wrong == 0);
    std::vector<T> c1(static_cast<std::size_t>(m * n)), c2(c1.size(), T(5));
    gemm<T>(false, false, m, n, k, T(1), w.data(), k, col.data(), n, T(0), c1.data(), n);
    k_::gemm_packed_b<T>(m, n, k, w.data(), k, bp.data(), c2.data(), n);
    CHECK(std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(T)) == 0);
}

}  // namespace

TEST_CASE("im2col_packed writes im2col's columns as packed panels; gemm_packed_b gives gemm's bits",
          "[gemm][conv]") {
    struct Case {
        const char* name;
        sdeuq::kernels::ConvShape g;
    };
    const Case cases[] = {
        {"k3 s1 p1 on 7x9", conv_shape(3, 7, 9, 3, 3, 1, 1)},
        {"k3 s1 p0, one channel, 28x28", conv_shape(1, 28, 28, 3, 3, 1, 0)},
        {"k4 s2 p1 on 13x13", conv_shape(5, 13, 13, 4, 4, 2, 1)},
        {"k4 s2 p1 on 26x26", conv_shape(4, 26, 26, 4, 4, 2, 1)},
        {"rect k3x2 s3 p2", conv_shape(2, 8, 11, 3, 2, 3, 2)},
        {"k3 s1 p1 6x6, CK 450 > KC", conv_shape(50, 6, 6, 3, 3, 1, 1)},
    };
    for (const Case& c : cases)
        for (int64 ns : {1, 3})
            for (int64 m : {7, 32}) {
                INFO(c.name << ", " << ns << " samples, " << m << " output channels");
                check_implicit_conv<float>(c.g, ns, m);
                check_implicit_conv<double>(c.g, ns, m);
            }
}
