// One query token's attention for one sequence (decoding), included by cpu_kernels.cpp in its AVX2
// namespace: RoPE on the token's query and key heads, its key and value written to the cache at its
// position, then softmax(q k * scale) v over the positions it sees, in float32. What took about 25
// torch operators a layer at batch 1 (slices, RoPE's cat/neg/mul/add, cache copies, transposes,
// scaled_dot_product_attention) is one call.

static inline float dot(const float* a, const float* b, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void add_scaled(float* y, const float* x, float a, int64_t n) {  // y += a x
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

// Hugging Face's layout: the first `rot` dimensions in two halves, x * cos + (-x2, x1) * sin
static inline void rotate_half(float* x, const float* cos, const float* sin, int64_t rot) {
    const int64_t half = rot / 2;
    for (int64_t i = 0; i < half; i++) {
        const float a = x[i], b = x[i + half];
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i + half] + a * sin[i + half];
    }
}

// qkv: [h + 2 hkv, d], its query and key heads rotated in place; kc, vc: [hkv, cap, d], one sequence's
// cache, which takes the token's key and value at pos; cos, sin: [rot] at pos.
static void rotate_and_store(float* qkv, float* kc, float* vc, int64_t cap, int64_t pos, const float* cos,
                             const float* sin, int64_t rot, int64_t h, int64_t hkv, int64_t d) {
    for (int64_t head = 0; head < h + hkv; head++) rotate_half(qkv + head * d, cos, sin, rot);
    for (int64_t g = 0; g < hkv; g++) {
        memcpy(kc + (g * cap + pos) * d, qkv + (h + g) * d, d * sizeof(float));
        memcpy(vc + (g * cap + pos) * d, qkv + (h + hkv + g) * d, d * sizeof(float));
    }
}

// o [d]: query q's attention over positions 0..pos of one key/value head (kc, vc: [cap, d]), or the last
// `window` of them (window > 0)
static void attend_head(const float* q, const float* kc, const float* vc, int64_t pos, int64_t d, float scale,
                        int64_t window, float* o) {
    const int64_t first = window && pos + 1 > window ? pos + 1 - window : 0, n = pos + 1 - first;
    std::vector<float> p(n);
    const float* keys = kc + first * d;
    const float* values = vc + first * d;
    float top = -INFINITY;
    for (int64_t t = 0; t < n; t++) top = fmaxf(top, p[t] = dot(q, keys + t * d, d) * scale);
    float total = 0.0f;
    for (int64_t t = 0; t < n; t++) total += p[t] = expf(p[t] - top);
    memset(o, 0, d * sizeof(float));
    for (int64_t t = 0; t < n; t++) add_scaled(o, values + t * d, p[t] / total, d);
}

static void attend_one(float* qkv, float* kc, float* vc, int64_t cap, int64_t pos, const float* cos, const float* sin,
                       int64_t rot, int64_t h, int64_t hkv, int64_t d, float scale, int64_t window, float* out,
                       int threads) {
    rotate_and_store(qkv, kc, vc, cap, pos, cos, sin, rot, h, hkv, d);
    const int64_t seen = window && window < pos + 1 ? window : pos + 1;
    const bool wide = threads > 1 && h * seen * d >= (1 << 16);  // below this a parallel region costs more than it saves
#pragma omp parallel for if (wide) num_threads(threads) schedule(static)
    for (int64_t head = 0; head < h; head++)
        attend_head(qkv + head * d, kc + head / (h / hkv) * cap * d, vc + head / (h / hkv) * cap * d, pos, d, scale,
                    window, out + head * d);
}
