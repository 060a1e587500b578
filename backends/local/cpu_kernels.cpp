// Matmuls on weights in blocks of 32, with activations quantized in blocks of 32 too: a block's
// dot product is an integer sum, scaled once (as llama.cpp multiplies Q4/Q8 weights).
//
// Weights:
//   int4: w[n, 32g + i] = q * scale[n, g] + min[n, g], q in 0..15; byte i of a group (16 bytes)
//         holds value i in its low nibble and value i + 16 in its high nibble.
//   int5: the same with q in 0..31, each value's fifth bit in high[n, 4g .. 4g + 4] (bit i of the
//         group's little-endian 32 bits for value i): Q5_0 and Q5_1 blocks as they are.
//   int8: w[n, 32g + i] = q * d[n, g], q in -128..127.
//   scale, min and d are float16, [N, K / 32] row by row. Int4 from Q4_K may instead keep the file's scales:
//   codes uint8 [N, 2 K / 32] (a row's 6-bit sc for each group, then its m) and supers float16 [N, 2 K / 256] (its
//   d for each block of 8 groups, then its dmin): scale = d * sc, min = -dmin * m, 2.5 bytes a group instead of 4.
//   The rows' bytes (nibbles, fifth bits, q) are kept in tiles of 4 rows (the last tile holds what is
//   left): a tile holds group 0 of its rows one after another, then their group 1, and so on, so that
//   a thread reads one run of memory for 4 rows (cpu_kernels.tile_). llama.cpp repacks its CPU weights
//   so too: on Qwen2.5-1.5B Q4_K_M here it decoded 22.7 tok/s without, 27.8 with.
// Activations: x[m, 32g + i] ~ xd[m, g] * (hi + lo / 256), hi and lo int8 (cpu_kernels_body.h), so
// about 15 bits a value: int8 alone (llama.cpp's way) cost SmolLM2 2 points of top-1 agreement.
//
// Built by cpu_kernels.py with g++ -O3 -fopenmp. Each instruction set's code is compiled for it
// by `#pragma GCC target` (cpu_kernels_body.h, twice); tt_use_vnni picks one at run time, and
// cpu_kernels.py calls nothing here unless tt_cpu_ok says the CPU has AVX2, FMA and F16C.
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

// A decoding step's weights and caches (cpu_decode.h; built by cpu_decode.py)
struct TTLinear {
    const void* w;           // int4, int5: nibbles; int8: q
    const uint8_t* high;     // int5: fifth bits; else null
    const uint16_t* scale;   // int4, int5: scale; int8: d
    const uint16_t* mins;    // int4, int5
    const uint8_t* codes;    // int4 from Q4_K: its own scales in place of scale and mins (cpu_kernels_body.h), or null
    const uint16_t* supers;
    int64_t n, k, bits;      // bits: 4, 5 or 8
};
struct TTProjection {        // up to 3 weights of different kinds side by side (their rows in order), then a bias
    TTLinear part[3];
    int64_t parts;
    const float* bias;       // or null
};
struct TTLayer {
    TTProjection qkv, out, gate_up, down;
    const float* attention_norm;
    const float* ffn_norm;
    const float* q_norm;               // per head, or null (Qwen3, Gemma 3)
    const float* k_norm;
    const float* post_attention_norm;  // on each sublayer's output before the residual add, or null (Gemma)
    const float* post_ffn_norm;
    float* k_cache;          // [rows, hkv, capacity, d]: a row a sequence
    float* v_cache;
    int64_t capacity, window, local_rope;
};
struct TTModel {
    int64_t layers, dim, h, hkv, d, rot, ffn, gelu;  // gelu: 1 for GELU (tanh) gates, 0 for SiLU
    float eps, scale;
};

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
namespace avx2 {
static constexpr bool WIDE_TILES = false;  // 4 x 4 tiles of accumulators: they need AVX-512's 32 registers
static inline __m256i dot_u8_hi_lo(__m256i u, __m256i hi, __m256i lo) {
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(u, hi), _mm256_set1_epi16(256)),
                            _mm256_madd_epi16(_mm256_maddubs_epi16(u, lo), _mm256_set1_epi16(1)));
}
static inline __m256i dot_pair(__m256i a, __m256i c, __m256i h0, __m256i h1, __m256i l0, __m256i l1) {
    // two byte products added as int16 first: |sum| <= 2 * 2 * 31 * 127, no saturation
    const __m256i hi = _mm256_add_epi16(_mm256_maddubs_epi16(a, h0), _mm256_maddubs_epi16(c, h1));
    const __m256i lo = _mm256_add_epi16(_mm256_maddubs_epi16(a, l0), _mm256_maddubs_epi16(c, l1));
    return _mm256_add_epi32(_mm256_madd_epi16(hi, _mm256_set1_epi16(256)), _mm256_madd_epi16(lo, _mm256_set1_epi16(1)));
}
static inline __m256i fifth_bits(uint32_t bits) {
    // byte j takes source byte j / 8 (the shuffle works within 128-bit halves, each holding all 4), keeps bit j % 8
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
                                               _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(0x10));
}
#include "cpu_kernels_body.h"
#include "cpu_attention.h"
#include "cpu_decode.h"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")
namespace vnni {
static constexpr bool WIDE_TILES = true;
static inline __m256i dot_u8_hi_lo(__m256i u, __m256i hi, __m256i lo) {
    return _mm256_dpbusd_epi32(_mm256_slli_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, hi), 8), u, lo);
}
static inline __m256i dot_pair(__m256i a, __m256i c, __m256i h0, __m256i h1, __m256i l0, __m256i l1) {
    const __m256i hi = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a, h0), c, h1);
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_slli_epi32(hi, 8), a, l0), c, l1);
}
static inline __m256i fifth_bits(uint32_t bits) {
    return _mm256_maskz_mov_epi8((__mmask32)bits, _mm256_set1_epi8(0x10));
}
#include "cpu_kernels_body.h"
#include "cpu_attention.h"
#include "cpu_decode.h"
}  // namespace vnni
#pragma GCC pop_options

static bool use_vnni = false;

// The quantized activations of a call, kept per calling thread and grown as needed: q holds them as the
// kernels read them (2 M K bytes) and again as int4_pairs does (4 M K)
struct Scratch {
    std::vector<int8_t> q;
    std::vector<float> d, s, r;
    void fit(int64_t M, int64_t K) {
        if ((int64_t)q.size() < 6 * M * K + 64) q.resize(6 * M * K + 64);
        if ((int64_t)d.size() < M * K / 32) d.resize(M * K / 32), s.resize(M * K / 32);
        if ((int64_t)r.size() < M) r.resize(M);
    }
};
static thread_local Scratch scratch;

extern "C" {

int tt_cpu_ok(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

// 1: VNNI where the CPU has it (AVX-512 VNNI with VL); 0: AVX2. Returns the set in use.
int tt_use_vnni(int wanted) {
    __builtin_cpu_init();
    use_vnni = wanted && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
    return use_vnni;
}

void tt_quantize_rows(const float* x, int64_t M, int64_t K, int8_t* xq, float* xd, float* xs, int threads) {
#pragma omp parallel num_threads(threads)
    avx2::quantize_shared(x, M, K, nullptr, 0.0f, xq, xd, xs, nullptr);
}

// high: null for int4 groups; codes, supers: null, or Q4_K's own scales in place of scale and mins; norm: null, or
// an RMSNorm's weight applied to x first (with eps)
void tt_int4_matmul(const uint8_t* w, const uint8_t* high, const uint16_t* scale, const uint16_t* mins,
                    const uint8_t* codes, const uint16_t* supers, int64_t N, int64_t K, const float* x, int64_t M,
                    float* y, int threads, const float* norm, float eps) {
    scratch.fit(M, K);
    (use_vnni ? vnni::int4_matmul : avx2::int4_matmul)(w, high, scale, mins, codes, supers, N, K, x, M, y, threads, norm,
                                                      eps, scratch.q.data(), scratch.d.data(), scratch.s.data(),
                                                      scratch.r.data());
}

void tt_int8_matmul(const int8_t* w, const uint16_t* d, int64_t N, int64_t K, const float* x, int64_t M, float* y,
                    int threads, const float* norm, float eps) {
    scratch.fit(M, K);
    (use_vnni ? vnni::int8_matmul : avx2::int8_matmul)(w, d, N, K, x, M, y, threads, norm, eps, scratch.q.data(),
                                                      scratch.d.data(), scratch.s.data(), scratch.r.data());
}

// One query token's attention, decoding one sequence (cpu_attention.h)
void tt_attend_one(float* qkv, float* kc, float* vc, int64_t cap, int64_t pos, const float* cos, const float* sin,
                   int64_t rot, int64_t h, int64_t hkv, int64_t d, float scale, int64_t window, float* out, int threads) {
    (use_vnni ? vnni::attend_one : avx2::attend_one)(qkv, kc, vc, cap, pos, cos, sin, rot, h, hkv, d, scale, window, out, threads);
}

// A decoding step of M sequences through every block (cpu_decode.h)
void tt_decode_layers(const TTLayer* layers, const TTModel* m, int64_t M, float* x, const int64_t* pos,
                      const float* const* rope, float* work, int threads) {
    scratch.fit(M, std::max({m->dim, m->h * m->d, m->ffn}));
    (use_vnni ? vnni::decode_layers : avx2::decode_layers)(layers, m, M, x, pos, rope, work, scratch.q.data(),
                                                          scratch.d.data(), scratch.s.data(), scratch.r.data(), threads);
}

}  // extern "C"
