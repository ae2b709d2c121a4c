// Packed, cache-blocked GEMM with a register-blocked FMA micro-kernel.
//
// Loop nest (per thread, over the part of C it owns):
//   jc: columns in blocks of NC  -> a kc x nc panel of op(B) is packed (lives in L2/L3); small
//                                   untransposed B is read in place instead (whole NR panels)
//   pc: depth in blocks of KC    -> the order of the k-sum is fixed by this loop alone
//   ic: rows in blocks of MC     -> an mc x kc block of transposed A is packed (lives in L2); untransposed
//                                   A, and transposed A small enough for L2, are read in place
//   jr: NR-wide micro-panels of B (one stays in L1 while the ir loop streams A through it)
//   ir: MR-tall micro-panels of A -> micro-kernel computes an MR x NR tile in registers (an R-row
//                                   variant for the last R < MR rows)
//
// Two threads split the larger output dimension into two halves aligned to whole tiles; each packs only
// its own B panel (so at large n each thread's panel fits its own L2) and nothing is packed twice when
// A is read in place.
//
// Determinism: every element of C is owned by exactly one thread and its value is produced by the same
// sequence of operations whatever the partition: the k-sum runs over the same KC blocks from p = 0, each
// block is a chain of FMAs in one SIMD lane (lanes never mix; packed or in-place operands hold the same
// values), and the epilogue (alpha, beta, bias) is the same mul/add sequence in the vector and the
// edge-tile path. Hence 1 and 2 threads give bitwise identical C.
#include "autodiff/kernels/gemm.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>

#include "autodiff/parallel.hpp"

#if SDEUQ_SIMD
#include <immintrin.h>
#include <xsimd/xsimd.hpp>
#endif

namespace sdeuq::kernels {

namespace {

using int64 = std::int64_t;

// Blocking for Zen 4 (32 KiB L1d, 1 MiB L2 per core, 32 MiB shared L3), in bytes the same for float
// and double. The B micro-panel (KC * NR * sizeof(T) = 24 KiB) stays in L1 while the ir loop streams
// A slices past it; a long KC amortises the C-tile load/store of each micro-kernel call. The A block
// (MC x KC, 144 KiB) stays in L2 across the jr loop, and the B panel (KC x NC, 3 MiB) in L3. KC and MC
// were picked by measurement (KC 256..512, MC 72..288 were within noise of each other at n >= 256).
template <class T>
struct Blocking;

template <>
struct Blocking<float> {
    static constexpr int mr = 6;
    static constexpr int nr = 16;
    static constexpr int64 kc = gemm_kc;
    static constexpr int64 mc = 96;
    static constexpr int64 nc = 2048;
};

template <>
struct Blocking<double> {
    static constexpr int mr = 6;
    static constexpr int nr = 8;
    static constexpr int64 kc = gemm_kc;
    static constexpr int64 mc = 96;
    static constexpr int64 nc = 1024;
};

// Below this many multiply-adds the second thread costs more than it saves: the hand-off costs about
// 1 us, and with in-place operands the halves of a small product pack little or nothing twice (measured:
// 64^3 takes 4.8 us on one thread, 2.8 us on two).
constexpr int64 parallel_min_madds = int64(64) * 64 * 32;

// A 64-byte aligned scratch buffer that only grows; one per thread and type, so a steady-state training
// step performs no heap allocation in GEMM.
template <class T>
class PackBuffer {
public:
    PackBuffer() = default;
    PackBuffer(const PackBuffer&) = delete;
    PackBuffer& operator=(const PackBuffer&) = delete;
    ~PackBuffer() { release(); }

    T* get(std::size_t count) {
        if (count > capacity_) {
            release();
            data_ = static_cast<T*>(::operator new(count * sizeof(T), std::align_val_t(64)));
            capacity_ = count;
        }
        return data_;
    }

private:
    void release() {
        if (data_) ::operator delete(data_, std::align_val_t(64));
        data_ = nullptr;
        capacity_ = 0;
    }
    T* data_ = nullptr;
    std::size_t capacity_ = 0;
};

template <class T>
T* a_buffer(std::size_t count) {
    thread_local PackBuffer<T> buf;
    return buf.get(count);
}

template <class T>
T* b_buffer(std::size_t count) {
    thread_local PackBuffer<T> buf;
    return buf.get(count);
}

// Packs rows [i0, i0 + mc) x depth [p0, p0 + kc) of op(A) into MR-row micro-panels, each stored
// k-major (MR consecutive values per k); rows past mc are zero so the kernel never branches on edges.
template <class T>
void pack_a(bool trans, const T* a, int64 lda, int64 i0, int64 mc, int64 p0, int64 kc, T* dst) {
    constexpr int mr = Blocking<T>::mr;
    for (int64 ir = 0; ir < mc; ir += mr) {
        const int64 rows = std::min<int64>(mr, mc - ir);
        T* d = dst + ir * kc;
        if (!trans) {
            // op(A)[i][p] = a[i * lda + p]: read the MR rows side by side.
            const T* src = a + (i0 + ir) * lda + p0;
            if (rows == mr) {
                for (int64 p = 0; p < kc; ++p)
                    for (int r = 0; r < mr; ++r) d[p * mr + r] = src[r * lda + p];
            } else {
                for (int64 p = 0; p < kc; ++p) {
                    for (int r = 0; r < rows; ++r) d[p * mr + r] = src[r * lda + p];
                    for (int r = static_cast<int>(rows); r < mr; ++r) d[p * mr + r] = T(0);
                }
            }
        } else {
            // op(A)[i][p] = a[p * lda + i]: MR contiguous values per k.
            const T* src = a + p0 * lda + i0 + ir;
            if (rows == mr) {
                for (int64 p = 0; p < kc; ++p) std::memcpy(d + p * mr, src + p * lda, mr * sizeof(T));
            } else {
                for (int64 p = 0; p < kc; ++p) {
                    const T* s = src + p * lda;
                    for (int r = 0; r < rows; ++r) d[p * mr + r] = s[r];
                    for (int r = static_cast<int>(rows); r < mr; ++r) d[p * mr + r] = T(0);
                }
            }
        }
    }
}

#if SDEUQ_SIMD
// Transposed-B packing of one full NR-column panel by in-register transposes (8x8 floats, 4x4 doubles):
// src holds the NR panel columns as rows with stride ldb; writes d[p * NR + c] for p below the returned
// count (a multiple of the transpose size), the caller finishes the rest.
inline int64 pack_b_trans_full(const float* src, int64 ldb, int64 kc, float* d) {
    constexpr int nr = Blocking<float>::nr;
    const int64 kfull = kc / 8 * 8;
    for (int64 p = 0; p < kfull; p += 8) {
        for (int c0 = 0; c0 < nr; c0 += 8) {
            const float* s = src + c0 * ldb + p;
            const __m256 r0 = _mm256_loadu_ps(s), r1 = _mm256_loadu_ps(s + ldb);
            const __m256 r2 = _mm256_loadu_ps(s + 2 * ldb), r3 = _mm256_loadu_ps(s + 3 * ldb);
            const __m256 r4 = _mm256_loadu_ps(s + 4 * ldb), r5 = _mm256_loadu_ps(s + 5 * ldb);
            const __m256 r6 = _mm256_loadu_ps(s + 6 * ldb), r7 = _mm256_loadu_ps(s + 7 * ldb);
            const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float* o = d + p * nr + c0;
            _mm256_store_ps(o + 0 * nr, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_store_ps(o + 1 * nr, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_store_ps(o + 2 * nr, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_store_ps(o + 3 * nr, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_store_ps(o + 4 * nr, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_store_ps(o + 5 * nr, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_store_ps(o + 6 * nr, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_store_ps(o + 7 * nr, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    return kfull;
}

inline int64 pack_b_trans_full(const double* src, int64 ldb, int64 kc, double* d) {
    constexpr int nr = Blocking<double>::nr;
    const int64 kfull = kc / 4 * 4;
    for (int64 p = 0; p < kfull; p += 4) {
        for (int c0 = 0; c0 < nr; c0 += 4) {
            const double* s = src + c0 * ldb + p;
            const __m256d r0 = _mm256_loadu_pd(s), r1 = _mm256_loadu_pd(s + ldb);
            const __m256d r2 = _mm256_loadu_pd(s + 2 * ldb), r3 = _mm256_loadu_pd(s + 3 * ldb);
            const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
            const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
            double* o = d + p * nr + c0;
            _mm256_store_pd(o + 0 * nr, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_store_pd(o + 1 * nr, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_store_pd(o + 2 * nr, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_store_pd(o + 3 * nr, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
    }
    return kfull;
}
#endif

// Packs depth [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into NR-column micro-panels, each stored
// k-major (NR consecutive values per k), zero-padded past nc.
template <class T>
void pack_b(bool trans, const T* b, int64 ldb, int64 p0, int64 kc, int64 j0, int64 nc, T* dst) {
    constexpr int nr = Blocking<T>::nr;
    for (int64 jr = 0; jr < nc; jr += nr) {
        const int64 cols = std::min<int64>(nr, nc - jr);
        T* d = dst + jr * kc;
        if (!trans) {
            // op(B)[p][j] = b[p * ldb + j]: NR contiguous values per k.
            const T* src = b + p0 * ldb + j0 + jr;
            if (cols == nr) {
                for (int64 p = 0; p < kc; ++p) std::memcpy(d + p * nr, src + p * ldb, nr * sizeof(T));
            } else {
                for (int64 p = 0; p < kc; ++p) {
                    const T* s = src + p * ldb;
                    for (int c = 0; c < cols; ++c) d[p * nr + c] = s[c];
                    for (int c = static_cast<int>(cols); c < nr; ++c) d[p * nr + c] = T(0);
                }
            }
        } else {
            // op(B)[p][j] = b[j * ldb + p]: read the NR rows of b side by side, a few k at a time so
            // that each source row is touched in cache-line-sized runs.
            const T* src = b + (j0 + jr) * ldb + p0;
            int64 done = 0;
#if SDEUQ_SIMD
            if (cols == nr) done = pack_b_trans_full(src, ldb, kc, d);
#endif
            constexpr int64 kstep = 8;
            for (int64 pb = done; pb < kc; pb += kstep) {
                const int64 pe = std::min<int64>(kc, pb + kstep);
                for (int c = 0; c < cols; ++c) {
                    const T* s = src + c * ldb;
                    for (int64 p = pb; p < pe; ++p) d[p * nr + c] = s[p];
                }
                for (int c = static_cast<int>(cols); c < nr; ++c)
                    for (int64 p = pb; p < pe; ++p) d[p * nr + c] = T(0);
            }
        }
    }
}

// How the micro-kernel combines its tile with C. The first KC block applies beta (or ignores C when
// beta == 0, so NaN in C does not propagate); later blocks accumulate. The bias, when given, is added
// by the last KC block only, after the tile has been combined with C.
enum class Update { overwrite, scale, accumulate };

// Scalar epilogue on an MR x NR tile (edge tiles, and the whole epilogue of the scalar build). Uses the
// same separate multiply and adds, in the same order, as the vector epilogue, so edge and interior
// elements round alike.
template <class T>
inline void update_tile(const T* tile, int nr, int rows, int cols, T alpha, T beta, Update mode, const T* bias,
                        T* c, int64 ldc) {
    for (int r = 0; r < rows; ++r) {
        T* cr = c + r * ldc;
        const T* t = tile + r * nr;
        for (int j = 0; j < cols; ++j) {
            T v = alpha * t[j];
            if (mode == Update::scale)
                v = v + beta * cr[j];
            else if (mode == Update::accumulate)
                v = v + cr[j];
            if (bias) v = v + bias[j];
            cr[j] = v;
        }
    }
}

// Where the micro-kernel reads its MR x kc slice of op(A):
//   packed: a packed micro-panel (MR values per k);
//   rows:   untransposed A in place, MR rows side by side (saves the packing pass, which dominates small
//           GEMMs); rows past the edge of the slice alias its last row, their results are never written;
//   cols:   transposed A in place, MR contiguous values per k at stride lda (full tiles only; used when
//           A is small enough to stay in L2, so the strided reads cost nothing and packing would).
enum class AForm { packed, rows, cols };

template <class T, AForm form>
class ASlice {
public:
    static constexpr int mr = Blocking<T>::mr;
    ASlice(const T* a, int64 lda, int rows) {
        if constexpr (form == AForm::rows) {
            for (int r = 0; r < mr; ++r) rows_[r] = a + std::min(r, rows - 1) * lda;
        } else {
            (void)rows;
            rows_[0] = a;
            step_ = form == AForm::packed ? mr : lda;
        }
    }
    // op(A)[r][p] of the slice; in the packed and cols forms p is implicit (advance() steps one k).
    T at(int r, int64 p) const {
        if constexpr (form == AForm::rows) {
            return rows_[r][p];
        } else {
            (void)p;
            return rows_[0][r];
        }
    }
    void advance() {
        if constexpr (form != AForm::rows) rows_[0] += step_;
    }

private:
    const T* rows_[form == AForm::rows ? mr : 1];
    int64 step_ = 0;
};

#if SDEUQ_SIMD

using simd_arch = xsimd::fma3<xsimd::avx2>;

// MR x NR tile = 6 rows x 2 vectors: 12 accumulators + 2 B vectors + 1 broadcast fit the 16 ymm
// registers; per k it does 12 FMAs against 8 loads, which keeps both FMA pipes of Zen 4 busy. R (the
// rows written, 1..MR) is a template parameter so that an edge tile of R < MR rows costs R/MR of a
// full one. b steps by ldb per k: NR for a packed panel, the row stride of B when read in place.
template <class T, AForm form, int R>
void micro_kernel(int64 kc, const T* a, int64 lda, const T* __restrict b, int64 ldb, T* __restrict c, int64 ldc,
                  int cols, T alpha, T beta, Update mode, const T* bias) {
    using batch = xsimd::batch<T, simd_arch>;
    constexpr int mr = Blocking<T>::mr;
    constexpr int nr = Blocking<T>::nr;
    constexpr int w = static_cast<int>(batch::size);
    static_assert(nr == 2 * w, "micro-kernel expects NR = two vectors");
    static_assert(R >= 1 && R <= mr);

    // The C tile is needed only after the k loop; start fetching it now so the epilogue does not stall
    // (not worth it for a short loop, where C was just written and is still in L1).
    if (kc >= 128)
        for (int r = 0; r < R; ++r) {
            __builtin_prefetch(c + r * ldc, 1);
            __builtin_prefetch(c + r * ldc + nr - 1, 1);
        }
    ASlice<T, form> as(a, lda, R);
    batch c00(T(0)), c01(T(0)), c10(T(0)), c11(T(0)), c20(T(0)), c21(T(0));
    batch c30(T(0)), c31(T(0)), c40(T(0)), c41(T(0)), c50(T(0)), c51(T(0));
    // Unrolled so that loop overhead does not compete with the loads for issue slots.
#pragma GCC unroll 4
    for (int64 p = 0; p < kc; ++p) {
        const batch b0 = batch::load_unaligned(b);
        const batch b1 = batch::load_unaligned(b + w);
        batch av(as.at(0, p));
        c00 = xsimd::fma(av, b0, c00);
        c01 = xsimd::fma(av, b1, c01);
        if constexpr (R > 1) {
            av = batch(as.at(1, p));
            c10 = xsimd::fma(av, b0, c10);
            c11 = xsimd::fma(av, b1, c11);
        }
        if constexpr (R > 2) {
            av = batch(as.at(2, p));
            c20 = xsimd::fma(av, b0, c20);
            c21 = xsimd::fma(av, b1, c21);
        }
        if constexpr (R > 3) {
            av = batch(as.at(3, p));
            c30 = xsimd::fma(av, b0, c30);
            c31 = xsimd::fma(av, b1, c31);
        }
        if constexpr (R > 4) {
            av = batch(as.at(4, p));
            c40 = xsimd::fma(av, b0, c40);
            c41 = xsimd::fma(av, b1, c41);
        }
        if constexpr (R > 5) {
            av = batch(as.at(5, p));
            c50 = xsimd::fma(av, b0, c50);
            c51 = xsimd::fma(av, b1, c51);
        }
        as.advance();
        b += ldb;
    }
    const batch acc[mr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};

    if (cols == nr) {
        const batch va(alpha);
        const batch vb(beta);
        batch bias0(T(0)), bias1(T(0));
        if (bias) {
            bias0 = batch::load_unaligned(bias);
            bias1 = batch::load_unaligned(bias + w);
        }
        for (int r = 0; r < R; ++r) {
            T* cr = c + r * ldc;
            for (int v = 0; v < 2; ++v) {
                const batch t = alpha == T(1) ? acc[r][v] : va * acc[r][v];  // 1 * x == x exactly
                batch out;
                if (mode == Update::overwrite)
                    out = t;
                else if (mode == Update::scale)
                    out = t + vb * batch::load_unaligned(cr + v * w);
                else
                    out = t + batch::load_unaligned(cr + v * w);
                if (bias) out = out + (v == 0 ? bias0 : bias1);
                out.store_unaligned(cr + v * w);
            }
        }
        return;
    }
    alignas(64) T tile[mr * nr];
    for (int r = 0; r < R; ++r) {
        acc[r][0].store_aligned(tile + r * nr);
        acc[r][1].store_aligned(tile + r * nr + w);
    }
    update_tile(tile, nr, R, cols, alpha, beta, mode, bias, c, ldc);
}

#else  // scalar build: same blocking and packing, plain multiply-add (no FMA on the scalar target)

template <class T, AForm form, int R>
void micro_kernel(int64 kc, const T* a, int64 lda, const T* __restrict b, int64 ldb, T* __restrict c, int64 ldc,
                  int cols, T alpha, T beta, Update mode, const T* bias) {
    constexpr int mr = Blocking<T>::mr;
    constexpr int nr = Blocking<T>::nr;
    ASlice<T, form> as(a, lda, R);
    T tile[mr * nr] = {};
    for (int64 p = 0; p < kc; ++p) {
        for (int r = 0; r < R; ++r) {
            const T ar = as.at(r, p);
            for (int j = 0; j < cols; ++j) tile[r * nr + j] += ar * b[j];
        }
        as.advance();
        b += ldb;
    }
    update_tile(tile, nr, R, cols, alpha, beta, mode, bias, c, ldc);
}

#endif

// The micro-kernel for a tile of `rows` rows.
template <class T, AForm form>
inline void run_kernel(int rows, int64 kc, const T* a, int64 lda, const T* b, int64 ldb, T* c, int64 ldc, int cols,
                       T alpha, T beta, Update mode, const T* bias) {
    static_assert(Blocking<T>::mr == 6);
    switch (rows) {
        case 6: return micro_kernel<T, form, 6>(kc, a, lda, b, ldb, c, ldc, cols, alpha, beta, mode, bias);
        case 5: return micro_kernel<T, form, 5>(kc, a, lda, b, ldb, c, ldc, cols, alpha, beta, mode, bias);
        case 4: return micro_kernel<T, form, 4>(kc, a, lda, b, ldb, c, ldc, cols, alpha, beta, mode, bias);
        case 3: return micro_kernel<T, form, 3>(kc, a, lda, b, ldb, c, ldc, cols, alpha, beta, mode, bias);
        case 2: return micro_kernel<T, form, 2>(kc, a, lda, b, ldb, c, ldc, cols, alpha, beta, mode, bias);
        default: return micro_kernel<T, form, 1>(kc, a, lda, b, ldb, c, ldc, cols, alpha, beta, mode, bias);
    }
}

template <class T>
struct Problem {
    bool ta, tb;
    int64 m, n, k;
    T alpha;
    const T* a;
    int64 lda;
    const T* b;
    int64 ldb;
    T beta;
    T* c;
    int64 ldc;
    const T* bias;
};

// Transposed A is read in place (AForm::cols) when all of it stays in L2 across the jr loop; beyond
// that the packed micro-panels are worth their pass. Untransposed A is always read in place.
template <class T>
AForm a_form(const Problem<T>& g) {
    if (!g.ta) return AForm::rows;
    return g.m * g.k * static_cast<int64>(sizeof(T)) <= 256 * 1024 ? AForm::cols : AForm::packed;
}

// Untransposed B is read in place (NR contiguous values per k at stride ldb) when all of it spans at
// most 32 KiB, so it stays in L1 across the ir loop without set conflicts: the packing pass is a
// sizeable part of such small products. Only whole NR-column panels are read in place; a partial
// last panel is packed (zero-padded).
template <class T>
bool b_direct(const Problem<T>& g) {
    return !g.tb && g.k * g.ldb * static_cast<int64>(sizeof(T)) <= 32 * 1024;
}

template <class T>
int64 kc_max(const Problem<T>& g) {
    return std::min<int64>(Blocking<T>::kc, g.k);
}

// Rows [i0, i1) x columns [jc, jc + nc) of C at depth [pc, pc + kc). Column panels below `direct_cols`
// (relative to jc) are read from B in place, the others from bbuf (packed, panel jr at bbuf + jr * kc).
// abuf holds at least MC x KC values when op(A) is transposed.
template <class T>
void compute_panel(const Problem<T>& g, int64 i0, int64 i1, int64 jc, int64 nc, int64 pc, int64 kc,
                   int64 direct_cols, const T* bbuf, T* abuf) {
    using B = Blocking<T>;
    constexpr int mr = B::mr;
    constexpr int nr = B::nr;
    Update mode = Update::accumulate;
    if (pc == 0) mode = g.beta == T(0) ? Update::overwrite : Update::scale;
    const T* bias = g.bias && pc + kc >= g.k ? g.bias : nullptr;
    const AForm form = a_form(g);
    for (int64 ic = i0; ic < i1; ic += B::mc) {
        const int64 mc = std::min<int64>(B::mc, i1 - ic);
        const int64 full = mc / mr * mr;
        if (form == AForm::packed)
            pack_a(g.ta, g.a, g.lda, ic, mc, pc, kc, abuf);
        else if (form == AForm::cols && full < mc)
            pack_a(g.ta, g.a, g.lda, ic + full, mc - full, pc, kc, abuf);  // the edge micro-panel only
        for (int64 jr = 0; jr < nc; jr += nr) {
            const int cols = static_cast<int>(std::min<int64>(nr, nc - jr));
            const bool direct = jr < direct_cols;
            const T* bp = direct ? g.b + pc * g.ldb + jc + jr : bbuf + jr * kc;
            const int64 bstride = direct ? g.ldb : nr;
            const T* bj = bias ? bias + jc + jr : nullptr;
            for (int64 ir = 0; ir < mc; ir += mr) {
                const int rows = static_cast<int>(std::min<int64>(mr, mc - ir));
                T* ct = g.c + (ic + ir) * g.ldc + jc + jr;
                if (form == AForm::rows)
                    run_kernel<T, AForm::rows>(rows, kc, g.a + (ic + ir) * g.lda + pc, g.lda, bp, bstride, ct, g.ldc,
                                               cols, g.alpha, g.beta, mode, bj);
                else if (form == AForm::cols && rows == mr)
                    run_kernel<T, AForm::cols>(rows, kc, g.a + pc * g.lda + ic + ir, g.lda, bp, bstride, ct, g.ldc,
                                               cols, g.alpha, g.beta, mode, bj);
                else
                    run_kernel<T, AForm::packed>(rows, kc, abuf + (form == AForm::packed ? ir * kc : 0), 0, bp,
                                                 bstride, ct, g.ldc, cols, g.alpha, g.beta, mode, bj);
            }
        }
    }
}

template <class T>
T* a_buffer_for(const Problem<T>& g) {
    using B = Blocking<T>;
    if (!g.ta) return nullptr;
    const int64 mc_max = std::min<int64>(B::mc, (g.m + B::mr - 1) / B::mr * B::mr);
    return a_buffer<T>(static_cast<std::size_t>(mc_max * kc_max(g)));
}

// C[i0:i1, j0:j1] of the full product; single-threaded, packs its own B panels.
template <class T>
void gemm_block(const Problem<T>& g, int64 i0, int64 i1, int64 j0, int64 j1) {
    using B = Blocking<T>;
    constexpr int nr = B::nr;
    const int64 nc_max = std::min<int64>(B::nc, (j1 - j0 + nr - 1) / nr * nr);
    const bool direct = b_direct(g);
    T* abuf = a_buffer_for(g);
    T* bbuf = nullptr;
    for (int64 jc = j0; jc < j1; jc += B::nc) {
        const int64 nc = std::min<int64>(B::nc, j1 - jc);
        const int64 direct_cols = direct ? nc / nr * nr : 0;
        for (int64 pc = 0; pc < g.k; pc += B::kc) {
            const int64 kc = std::min<int64>(B::kc, g.k - pc);
            if (direct_cols < nc) {
                if (!bbuf) bbuf = b_buffer<T>(static_cast<std::size_t>(nc_max * kc_max(g)));
                pack_b(g.tb, g.b, g.ldb, pc, kc, jc + direct_cols, nc - direct_cols, bbuf + direct_cols * kc);
            }
            compute_panel(g, i0, i1, jc, nc, pc, kc, direct_cols, bbuf, abuf);
        }
    }
}

// C = beta * C (+ bias) when there is no product (k == 0 or alpha == 0); beta == 0 does not read C.
template <class T>
void scale_c(int64 m, int64 n, T beta, T* c, int64 ldc, const T* bias) {
    for (int64 i = 0; i < m; ++i) {
        T* ci = c + i * ldc;
        if (beta == T(0))
            std::fill(ci, ci + n, T(0));
        else if (beta != T(1))
            for (int64 j = 0; j < n; ++j) ci[j] *= beta;
        if (bias)
            for (int64 j = 0; j < n; ++j) ci[j] = ci[j] + bias[j];
    }
}

}  // namespace

template <class T>
void gemm_packed_b(std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda, const T* bp,
                   T* c, std::int64_t ldc) {
    using B = Blocking<T>;
    constexpr int mr = B::mr;
    constexpr int nr = B::nr;
    static_assert(nr == gemm_nr<T>);
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        scale_c<T>(m, n, T(0), c, ldc, nullptr);
        return;
    }
    // As gemm_block with the whole of B packed: the KC loop outside, the B micro-panel in L1 while the
    // rows of A stream past it.
    for (int64 pc = 0; pc < k; pc += B::kc) {
        const int64 kc = std::min<int64>(B::kc, k - pc);
        const Update mode = pc == 0 ? Update::overwrite : Update::accumulate;
        for (int64 ic = 0; ic < m; ic += B::mc) {
            const int64 mc = std::min<int64>(B::mc, m - ic);
            for (int64 jr = 0; jr < n; jr += nr) {
                const int cols = static_cast<int>(std::min<int64>(nr, n - jr));
                const T* bj = bp + jr * k + pc * nr;
                for (int64 ir = 0; ir < mc; ir += mr) {
                    const int rows = static_cast<int>(std::min<int64>(mr, mc - ir));
                    T* ct = c + (ic + ir) * ldc + jr;
                    run_kernel<T, AForm::rows>(rows, kc, a + (ic + ir) * lda + pc, lda, bj, nr, ct, ldc, cols,
                                               T(1), T(0), mode, nullptr);
                }
            }
        }
    }
}

template <class T>
void gemm_reference(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
                    std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc, const T* bias) {
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
            T s = 0;
            for (std::int64_t p = 0; p < k; ++p)
                s += (ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            T v = beta == T(0) ? alpha * s : alpha * s + beta * c[i * ldc + j];
            if (bias) v = v + bias[j];
            c[i * ldc + j] = v;
        }
}

template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc, const T* bias) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0 || alpha == T(0)) {
        scale_c(m, n, beta, c, ldc, bias);
        return;
    }
    using B = Blocking<T>;
    const Problem<T> g{ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias};
    const bool threaded = num_threads() > 1 && m * n * k >= parallel_min_madds;
    if (!threaded) {
        gemm_block(g, 0, m, 0, n);
        return;
    }
    // Split the larger of the two output dimensions: each thread then repacks only the smaller operand
    // (A when splitting columns, B when splitting rows), and parts stay aligned to whole micro-tiles.
    if (n >= m) {
        parallel_for(0, n, B::nr, 0, [&](std::int64_t lo, std::int64_t hi) { gemm_block(g, 0, m, lo, hi); });
    } else {
        parallel_for(0, m, B::mr, 0, [&](std::int64_t lo, std::int64_t hi) { gemm_block(g, lo, hi, 0, n); });
    }
}

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                          std::int64_t, const float*, std::int64_t, float, float*, std::int64_t, const float*);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double, const double*,
                           std::int64_t, const double*, std::int64_t, double, double*, std::int64_t,
                           const double*);
template void gemm_packed_b<float>(std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t,
                                   const float*, float*, std::int64_t);
template void gemm_packed_b<double>(std::int64_t, std::int64_t, std::int64_t, const double*, std::int64_t,
                                    const double*, double*, std::int64_t);
template void gemm_reference<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*,
                                    std::int64_t, const float*, std::int64_t, float, float*, std::int64_t,
                                    const float*);
template void gemm_reference<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double,
                                     const double*, std::int64_t, const double*, std::int64_t, double,
                                     double*, std::int64_t, const double*);

}  // namespace sdeuq::kernels
