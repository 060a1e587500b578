// The kernels' bodies, included by cpu_kernels.cpp once per instruction set, inside a namespace
// that defines dot_u8_hi_lo(u, hi, lo): 8 int32 lanes of 256 * (u . hi) + (u . lo) over 4 bytes each,
// u unsigned, hi and lo signed; dot_pair(a, c, h0, h1, l0, l1): the same over two registers,
// 256 * (a . h0 + c . h1) + (a . l0 + c . l1); and fifth_bits(bits): 32 bytes, byte j 0x10 where bit j is set.
// One parallel region a call: the activations are quantized (blocks shared out among the
// threads), then each tile of 4 weight rows (cpu_kernels.cpp) is one task, the activation rows taken
// 4 at a time (a weight group is unpacked once for them). A row m's result never depends on the others.

static inline float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum(__m256 v) { return hsum4(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1))); }

// f[i] = half(h[i]) * x[i]: a row's block scales times the activation's
static inline void scaled_halves(const uint16_t* h, const float* x, float* f, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(f + i, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + i))), _mm256_loadu_ps(x + i)));
    for (; i < n; i++) f[i] = _cvtsh_ss(h[i]) * x[i];
}

// The sum of half(h[i]) * x[i], in one pass (a pass writing the products and another adding them cost 5-10% of an
// int4 matmul of 8960 x 1536 at 1 to 8 rows)
static inline float dot_halves(const uint16_t* h, const float* x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(h + i))), _mm256_loadu_ps(x + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += _cvtsh_ss(h[i]) * x[i];
    return s;
}

static inline __m256i rounded_bytes(const float* v, __m256 scale, const __m256* minus) {
    __m256i q[4];
    for (int i = 0; i < 4; i++) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(v + 8 * i), scale);
        if (minus) t = _mm256_sub_ps(t, minus[i]);
        q[i] = _mm256_cvtps_epi32(_mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    // int32 -> int8 in order: the packs interleave 128-bit lanes, the permute puts them back. They
    // saturate at -128, whose negation (the int8 kernel's sign trick) is itself: -127 is the floor.
    const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_max_epi8(_mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)),
                           _mm256_set1_epi8(-127));
}

// A block of 32 activations as two int8 parts: x ~ d * (256 hi + lo), hi = round(x / step) with
// step = max|x| / 127, lo the rounding error in units d = step / 256 (|lo| <= 128, clamped to 127).
// Written to q as hi (32 bytes) then lo (32 bytes); s = the block's sum of x.
static void quantize_block(const float* v, int8_t* q, float* d, float* s) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 a = _mm256_setzero_ps(), sum = _mm256_setzero_ps();
    for (int i = 0; i < 32; i += 8) {
        const __m256 x = _mm256_loadu_ps(v + i);
        a = _mm256_max_ps(a, _mm256_and_ps(x, abs_mask));
        sum = _mm256_add_ps(sum, x);
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m), step = amax / 127.0f;
    const __m256i hi = rounded_bytes(v, _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f), nullptr);
    __m256 hi_scaled[4];  // 256 hi: the part of x / d that hi holds
    for (int i = 0; i < 4; i++)
        hi_scaled[i] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                         (const __m128i*)((const int8_t*)&hi + 8 * i)))), _mm256_set1_ps(256.0f));
    const __m256i lo = rounded_bytes(v, _mm256_set1_ps(amax > 0 ? 256.0f / step : 0.0f), hi_scaled);
    _mm256_storeu_si256((__m256i*)q, hi);
    _mm256_storeu_si256((__m256i*)(q + 32), lo);
    *d = step / 256.0f;
    *s = hsum(sum);
}

static inline float sum_squares(const float* a, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(a + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * a[i];
    return s;
}

// RMSNorm's factor for n values: rsqrt(mean(v^2) + eps)
static inline float rms_scale(const float* v, int64_t n, float eps) { return 1.0f / sqrtf(sum_squares(v, n) / (float)n + eps); }

// A quantized block again for int4_pairs: each half of hi and of lo in both 128-bit lanes, 128 bytes
// ([x0..15, x0..15], [x16..31, x16..31] of hi, then of lo), written once a call instead of once a tile.
static inline void doubled_halves(const int8_t* q, int8_t* doubled) {
    for (int part = 0; part < 2; part++) {
        const __m256i v = _mm256_loadu_si256((const __m256i*)(q + 32 * part));
        _mm256_storeu_si256((__m256i*)(doubled + 64 * part), _mm256_permute2x128_si256(v, v, 0x00));
        _mm256_storeu_si256((__m256i*)(doubled + 64 * part + 32), _mm256_permute2x128_si256(v, v, 0x11));
    }
}

// The M rows of x quantized, their blocks shared out among the threads. With `norm` (an RMSNorm's
// weight, K floats), each row is normalized on the way: x * rsqrt(mean(x^2) + eps) * norm, done as
// quantizing x * norm and scaling the block's d and s by the row's rsqrt (rs: M floats of scratch).
// With `doubled`, each block is also written there as doubled_halves does.
static inline void quantize_shared(const float* x, int64_t M, int64_t K, const float* norm, float eps, int8_t* xq,
                                   float* xd, float* xs, float* rs, int8_t* doubled = nullptr) {
    const int64_t G = K / 32;
    if (norm) {
#pragma omp for schedule(static)
        for (int64_t m = 0; m < M; m++) rs[m] = rms_scale(x + m * K, K, eps);
    }
#pragma omp for schedule(static)
    for (int64_t b = 0; b < M * G; b++) {
        if (!norm) quantize_block(x + b * 32, xq + b * 64, xd + b, xs + b);
        else {
            float t[32];
            const float *v = x + b * 32, *g = norm + (b % G) * 32;
            for (int i = 0; i < 32; i++) t[i] = v[i] * g[i];
            quantize_block(t, xq + b * 64, xd + b, xs + b);
            xd[b] *= rs[b / G];
            xs[b] *= rs[b / G];
        }
        if (doubled) doubled_halves(xq + b * 64, doubled + b * 128);
    }
}

#ifndef PREFETCH
#define PREFETCH 4096
#endif
// How far ahead the weights are prefetched: 4 KB (streamed 1.6x faster than the hardware prefetcher alone).
// A tile of rows is one run of memory (cpu_kernels.cpp), so one prefetch a cache line covers all its rows.

static inline __m256i int4_group(const uint8_t* bytes) {  // 16 bytes -> the group's 32 values in order
    const __m128i b = _mm_loadu_si128((const __m128i*)bytes);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// A tile: weight rows i < NR of a tile of S rows (row i's group g at g * S + i; w and hb at row 0's) by
// activation rows r (r < R); each weight group is unpacked and each activation block loaded once a
// tile. f[(4i + r) * G + g]: the group's weight scale times the block's activation scale;
// extra[4i + r]: added to the row's sum; y[r * N + i].
// HIGH: int5 groups, each value's fifth bit in hb (4 bytes a group, bit j for value j).
template <int NR, int R, bool HIGH>
static inline void int4_tile(const uint8_t* w, const uint8_t* hb, int64_t S, int64_t G, int64_t K, const int8_t* xq,
                             const float* f, const float* extra, int64_t N, float* y) {
    __m256 acc[NR][R];
    for (int i = 0; i < NR; i++)
        for (int r = 0; r < R; r++) acc[i][r] = _mm256_setzero_ps();
    const int64_t ahead = PREFETCH;
    for (int64_t g = 0; g < G; g++) {
        __m256i u[NR];
        for (int i = 0; i < NR; i++) {
            if (i == 0) _mm_prefetch((const char*)(w + g * S * 16 + ahead), _MM_HINT_T0);
            u[i] = int4_group(w + (g * S + i) * 16);
            if constexpr (HIGH) {
                if (i == 0 && (g & 3) == 0) _mm_prefetch((const char*)(hb + g * S * 4 + ahead / 4), _MM_HINT_T0);
                uint32_t bits;
                memcpy(&bits, hb + (g * S + i) * 4, 4);
                u[i] = _mm256_or_si256(u[i], fifth_bits(bits));
            }
        }
        for (int r = 0; r < R; r++) {
            const int8_t* b = xq + 2 * r * K + g * 64;
            const __m256i hi = _mm256_loadu_si256((const __m256i*)b), lo = _mm256_loadu_si256((const __m256i*)(b + 32));
            for (int i = 0; i < NR; i++)
                acc[i][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8_hi_lo(u[i], hi, lo)),
                                            _mm256_broadcast_ss(f + (4 * i + r) * G + g), acc[i][r]);
        }
    }
    for (int i = 0; i < NR; i++)
        for (int r = 0; r < R; r++) y[r * N + i] = hsum(acc[i][r]) + extra[4 * i + r];
}

// Int4 and int5 weight rows in pairs: a tile holds a group of row i and then of row i + 1, so one 32-byte load
// has both; its low nibbles are values 0..15 of the two rows and its high nibbles values 16..31, met by the
// activation block's halves repeated in both 128-bit lanes. One unpack serves two rows, and two byte
// products are summed before they are widened (AVX2 without VNNI does 2/3 of the integer work of int4_tile).
// Lane k of a row's accumulator sums its values 4k..4k+3 and 16+4k..16+4k+3, whatever the instruction set.
// NP pairs (rows 0 .. 2 NP of the tile, S rows in all) by R activation rows, whose blocks x2 holds as
// doubled_halves writes them; f, extra and y as in int4_tile.
template <int NP, int R, bool HIGH>
static inline void int4_pairs(const uint8_t* w, const uint8_t* hb, int64_t S, int64_t G, int64_t K, const int8_t* x2,
                              const float* f, const float* extra, int64_t N, float* y) {
    __m256 acc[NP][R];
    for (int p = 0; p < NP; p++)
        for (int r = 0; r < R; r++) acc[p][r] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    for (int64_t g = 0; g < G; g++) {
        __m256i a[NP], c[NP];
        for (int p = 0; p < NP; p++) {
            if (p == 0) _mm_prefetch((const char*)(w + g * S * 16 + PREFETCH), _MM_HINT_T0);
            const __m256i v = _mm256_loadu_si256((const __m256i*)(w + (g * S + 2 * p) * 16));
            a[p] = _mm256_and_si256(v, low4);
            c[p] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            if constexpr (HIGH) {
                if (p == 0 && (g & 3) == 0) _mm_prefetch((const char*)(hb + g * S * 4 + PREFETCH / 4), _MM_HINT_T0);
                uint64_t bits;  // the two rows' 32 bits each: values 0..15 of both to a, 16..31 to c
                memcpy(&bits, hb + (g * S + 2 * p) * 4, 8);
                a[p] = _mm256_or_si256(a[p], fifth_bits((uint32_t)(bits & 0xFFFF) | (uint32_t)(bits >> 16 & 0xFFFF0000)));
                c[p] = _mm256_or_si256(c[p], fifth_bits((uint32_t)(bits >> 16 & 0xFFFF) | (uint32_t)(bits >> 32 & 0xFFFF0000)));
            }
        }
        for (int r = 0; r < R; r++) {
            const __m256i* b = (const __m256i*)(x2 + 4 * r * K + g * 128);
            const __m256i h0 = _mm256_loadu_si256(b), h1 = _mm256_loadu_si256(b + 1);
            const __m256i l0 = _mm256_loadu_si256(b + 2), l1 = _mm256_loadu_si256(b + 3);
            for (int p = 0; p < NP; p++) {
                const __m256 scales = _mm256_set_m128(_mm_broadcast_ss(f + (8 * p + 4 + r) * G + g),
                                                      _mm_broadcast_ss(f + (8 * p + r) * G + g));
                acc[p][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_pair(a[p], c[p], h0, h1, l0, l1)), scales, acc[p][r]);
            }
        }
    }
    for (int p = 0; p < NP; p++)
        for (int r = 0; r < R; r++) {
            y[r * N + 2 * p] = hsum4(_mm256_castps256_ps128(acc[p][r])) + extra[8 * p + r];
            y[r * N + 2 * p + 1] = hsum4(_mm256_extractf128_ps(acc[p][r], 1)) + extra[8 * p + 4 + r];
        }
}

template <int NR, int R>
static inline void int8_tile(const int8_t* w, int64_t S, int64_t G, int64_t K, const int8_t* xq, const float* f,
                             const float* extra, int64_t N, float* y) {
    __m256 acc[NR][R];
    for (int i = 0; i < NR; i++)
        for (int r = 0; r < R; r++) acc[i][r] = _mm256_setzero_ps();
    const int64_t ahead = PREFETCH;
    for (int64_t g = 0; g < G; g++) {
        __m256i v[NR], u[NR];
        for (int i = 0; i < NR; i++) {
            if ((i & 1) == 0) _mm_prefetch((const char*)(w + (g * S + i) * 32 + ahead), _MM_HINT_T0);
            v[i] = _mm256_loadu_si256((const __m256i*)(w + (g * S + i) * 32));
            u[i] = _mm256_abs_epi8(v[i]);  // |w| times x with w's sign: the byte product wants one unsigned side
        }
        for (int r = 0; r < R; r++) {
            const int8_t* b = xq + 2 * r * K + g * 64;
            const __m256i hi = _mm256_loadu_si256((const __m256i*)b), lo = _mm256_loadu_si256((const __m256i*)(b + 32));
            for (int i = 0; i < NR; i++)
                acc[i][r] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(dot_u8_hi_lo(u[i], _mm256_sign_epi8(hi, v[i]), _mm256_sign_epi8(lo, v[i]))),
                                            _mm256_broadcast_ss(f + (4 * i + r) * G + g), acc[i][r]);
        }
    }
    for (int i = 0; i < NR; i++)
        for (int r = 0; r < R; r++) y[r * N + i] = hsum(acc[i][r]) + extra[4 * i + r];
}

// BITS: 4 (int4 groups), 5 (int4 groups and their fifth bits in hb) or 8 (int8 blocks)
template <int BITS, int NR, int R>
static inline void tile(const void* w, const uint8_t* hb, int64_t S, int64_t G, int64_t K, const int8_t* xq,
                        const float* f, const float* extra, int64_t N, float* y) {
    if constexpr (BITS == 8) int8_tile<NR, R>((const int8_t*)w, S, G, K, xq, f, extra, N, y);
    else int4_tile<NR, R, BITS == 5>((const uint8_t*)w, hb, S, G, K, xq, f, extra, N, y);
}

// Weight rows i0, i0 + 1 (nr of them, 1 or 2) of a tile of S rows by R activation rows
template <int BITS, int R>
static inline void two_rows(const void* w, const uint8_t* hb, int nr, int64_t i0, int64_t S, int64_t G, int64_t K,
                            const int8_t* xq, const float* f, const float* extra, int64_t N, float* y) {
    const int64_t bytes = BITS == 8 ? 32 : 16;  // a group of one row
    w = (const int8_t*)w + i0 * bytes;
    hb = hb ? hb + i0 * 4 : hb;
    f += 4 * i0 * G, extra += 4 * i0, y += i0;
    if (nr == 2) tile<BITS, 2, R>(w, hb, S, G, K, xq, f, extra, N, y);
    else tile<BITS, 1, R>(w, hb, S, G, K, xq, f, extra, N, y);
}

// Weight rows i0 .. i0 + 2 NP of a tile of S rows, in pairs, by R activation rows
template <int BITS, int NP, int R>
static inline void pairs_at(const void* w, const uint8_t* hb, int64_t i0, int64_t S, int64_t G, int64_t K,
                            const int8_t* x2, const float* f, const float* extra, int64_t N, float* y) {
    int4_pairs<NP, R, BITS == 5>((const uint8_t*)w + i0 * 16, hb ? hb + i0 * 4 : hb, S, G, K, x2, f + 4 * i0 * G,
                                 extra + 4 * i0, N, y + i0);
}

// A tile of weight rows n .. n + nr (nr up to 4, starting at w and hb) times every activation row, 4 at a time;
// prepare(row, act, f, extra) writes the tile's scales for weight row `row` and activation row `act`.
// Int4 and int5 rows go in pairs (an odd last row alone), whatever M is: a row's bits do not depend on it;
// x2: the activations as doubled_halves writes them, for the pairs.
template <int BITS, typename Prepare>
static inline void row_tile(const void* w, const uint8_t* hb, int nr, int64_t n, int64_t M, int64_t ldy, int64_t G,
                            int64_t K, const int8_t* xq, const int8_t* x2, float* f, float* extra, float* y,
                            Prepare prepare) {
    const int pairs = BITS == 8 ? 0 : nr / 2;
    for (int64_t m = 0; m < M; m += 4) {
        const int rows = M - m < 4 ? (int)(M - m) : 4;
        for (int i = 0; i < nr; i++)
            for (int r = 0; r < rows; r++) prepare(n + i, m + r, f + (4 * i + r) * G, extra + 4 * i + r);
        const int8_t* xm = xq + 2 * m * K;
        float* ym = y + m * ldy + n;
        if constexpr (BITS != 8) {
            const int8_t* x2m = x2 + 4 * m * K;
            if (rows == 4) {
                if (pairs == 2 && WIDE_TILES) pairs_at<BITS, 2, 4>(w, hb, 0, nr, G, K, x2m, f, extra, ldy, ym);
                else  // 4 accumulators a pair where 8 and the activations would not fit in AVX2's 16 registers
                    for (int p = 0; p < pairs; p++) pairs_at<BITS, 1, 4>(w, hb, 2 * p, nr, G, K, x2m, f, extra, ldy, ym);
            } else
                for (int r = 0; r < rows; r++) {
                    const int8_t* xr = x2m + 4 * r * K;
                    if (pairs == 2) pairs_at<BITS, 2, 1>(w, hb, 0, nr, G, K, xr, f + r * G, extra + r, ldy, ym + r * ldy);
                    else if (pairs == 1) pairs_at<BITS, 1, 1>(w, hb, 0, nr, G, K, xr, f + r * G, extra + r, ldy, ym + r * ldy);
                }
            if (nr % 2 == 1 && rows == 4) two_rows<BITS, 4>(w, hb, 1, nr - 1, nr, G, K, xm, f, extra, ldy, ym);
            else if (nr % 2 == 1)
                for (int r = 0; r < rows; r++)
                    two_rows<BITS, 1>(w, hb, 1, nr - 1, nr, G, K, xm + 2 * r * K, f + r * G, extra + r, ldy, ym + r * ldy);
        } else if (nr == 4 && rows == 4 && WIDE_TILES) tile<BITS, 4, 4>(w, hb, 4, G, K, xm, f, extra, ldy, ym);
        else if (rows == 4)  // 8 accumulators at a time where 16 would not fit in AVX2's 16 registers
            for (int i0 = 0; i0 < nr; i0 += 2) two_rows<BITS, 4>(w, hb, nr - i0 < 2 ? 1 : 2, i0, nr, G, K, xm, f, extra, ldy, ym);
        else
            for (int r = 0; r < rows; r++) {
                const int8_t* xr = xm + 2 * r * K;
                if (nr == 4) tile<BITS, 4, 1>(w, hb, 4, G, K, xr, f + r * G, extra + r, ldy, ym + r * ldy);
                else if (nr == 3) tile<BITS, 3, 1>(w, hb, 3, G, K, xr, f + r * G, extra + r, ldy, ym + r * ldy);
                else two_rows<BITS, 1>(w, hb, nr, 0, nr, G, K, xr, f + r * G, extra + r, ldy, ym + r * ldy);
            }
    }
}

// A row's tile scales from Q4_K's own (codes: the row's 6-bit sc for each group, then its m; supers: its float16
// d for each block of 8 groups, then its dmin): out[g] = d * sc[g] * xd[g] (d * sc is exact in float32, where a
// float16 scale would round it) and *sum = -(the sum over g of dmin * m[g] * xs[g]). G is a multiple of 8.
static inline void coded_scales(const uint8_t* codes, const uint16_t* supers, const float* xd, const float* xs, int64_t G,
                                float* out, float* sum) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; g += 8) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(supers[g / 8])), dmin = _mm256_set1_ps(_cvtsh_ss(supers[G / 8 + g / 8]));
        const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(codes + g))));
        const __m256 m = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(codes + G + g))));
        _mm256_storeu_ps(out + g, _mm256_mul_ps(_mm256_mul_ps(d, sc), _mm256_loadu_ps(xd + g)));
        acc = _mm256_fmadd_ps(_mm256_mul_ps(dmin, m), _mm256_loadu_ps(xs + g), acc);
    }
    *sum = -hsum(acc);
}

// high: null for int4 groups, else int5 groups' fifth bits; codes and supers: null, or Q4_K's scales (coded_scales)
// in place of scale and mins. y's rows are ldy apart (N, or wider where these are some of a projection's columns).
// Called by every thread of a parallel region.
static void int4_rows(const uint8_t* w, const uint8_t* high, const uint16_t* scale, const uint16_t* mins,
                      const uint8_t* codes, const uint16_t* supers, int64_t N, int64_t K, const float* x, int64_t M,
                      float* y, int64_t ldy, const float* norm, float eps, int8_t* xq, float* xd, float* xs, float* rs) {
    const int64_t G = K / 32;
    int8_t* x2 = (int8_t*)(((uintptr_t)(xq + 2 * M * K) + 63) & ~(uintptr_t)63);  // the scratch holds 6 M K + 64 bytes
    quantize_shared(x, M, K, norm, eps, xq, xd, xs, rs, x2);
    float* f = (float*)__builtin_alloca(sizeof(float) * 16 * G);
    float extra[16];
    auto prepare = [&](int64_t row, int64_t act, float* out, float* sum) {
        if (codes) return coded_scales(codes + row * 2 * G, supers + row * (G / 4), xd + act * G, xs + act * G, G, out, sum);
        scaled_halves(scale + row * G, xd + act * G, out, G);
        *sum = dot_halves(mins + row * G, xs + act * G, G);  // the mins' part: sum over the groups of min * (the block's sum of x)
    };
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n += 4) {
        const int nr = N - n < 4 ? (int)(N - n) : 4;
        if (high) row_tile<5>(w + n * G * 16, high + n * G * 4, nr, n, M, ldy, G, K, xq, x2, f, extra, y, prepare);
        else row_tile<4>(w + n * G * 16, nullptr, nr, n, M, ldy, G, K, xq, x2, f, extra, y, prepare);
    }
}

static void int4_matmul(const uint8_t* w, const uint8_t* high, const uint16_t* scale, const uint16_t* mins,
                        const uint8_t* codes, const uint16_t* supers, int64_t N, int64_t K, const float* x, int64_t M,
                        float* y, int threads, const float* norm, float eps, int8_t* xq, float* xd, float* xs, float* rs) {
#pragma omp parallel num_threads(threads)
    int4_rows(w, high, scale, mins, codes, supers, N, K, x, M, y, N, norm, eps, xq, xd, xs, rs);
}

static void int8_rows(const int8_t* w, const uint16_t* d, int64_t N, int64_t K, const float* x, int64_t M, float* y,
                      int64_t ldy, const float* norm, float eps, int8_t* xq, float* xd, float* xs, float* rs) {
    const int64_t G = K / 32;
    quantize_shared(x, M, K, norm, eps, xq, xd, xs, rs);
    float* f = (float*)__builtin_alloca(sizeof(float) * 16 * G);
    float extra[16];
    auto prepare = [&](int64_t row, int64_t act, float* out, float* sum) {
        scaled_halves(d + row * G, xd + act * G, out, G);
        *sum = 0;
    };
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n += 4)
        row_tile<8>(w + n * K, nullptr, N - n < 4 ? (int)(N - n) : 4, n, M, ldy, G, K, xq, nullptr, f, extra, y, prepare);
}

static void int8_matmul(const int8_t* w, const uint16_t* d, int64_t N, int64_t K, const float* x, int64_t M, float* y,
                        int threads, const float* norm, float eps, int8_t* xq, float* xd, float* xs, float* rs) {
#pragma omp parallel num_threads(threads)
    int8_rows(w, d, N, K, x, M, y, N, norm, eps, xq, xd, xs, rs);
}
