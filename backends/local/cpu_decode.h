// A decoding step of M sequences through every block, included by cpu_kernels.cpp once per
// instruction set: one parallel region for the whole step, its threads meeting at a barrier after
// each matmul (as llama.cpp's thread pool does) instead of a region a matmul, and none of the
// torch operators and Python between the matmuls (at batch 1 on a 135M model those took more
// time than the matmuls). Blocks of the Llama shape (pre-norms, a gated FFN), with Q/K norms and
// Gemma's norms on each sublayer's output where the layer has them.

// y [M, ldy] = the projection of x [M, k] (its parts' columns side by side)
static void project_rows(const TTProjection& p, const float* x, int64_t M, float* y, int64_t ldy, const float* norm,
                         float eps, int8_t* xq, float* xd, float* xs, float* rs) {
    for (int64_t i = 0; i < p.parts; y += p.part[i].n, i++) {
        const TTLinear& l = p.part[i];
        if (l.bits == 8) int8_rows((const int8_t*)l.w, l.scale, l.n, l.k, x, M, y, ldy, norm, eps, xq, xd, xs, rs);
        else int4_rows((const uint8_t*)l.w, l.high, l.scale, l.mins, l.codes, l.supers, l.n, l.k, x, M, y, ldy, norm, eps,
                       xq, xd, xs, rs);
    }
}

// x [M, n] += y [M, n] (or nothing, y null) + bias [n] (or nothing) on each row, shared out among the threads
static void add_rows(float* x, const float* y, const float* bias, int64_t M, int64_t n) {
#pragma omp for schedule(static)
    for (int64_t i = 0; i < M * n; i++) x[i] += (y ? y[i] : 0.0f) + (bias ? bias[i % n] : 0.0f);
}

// v [n] RMS-normalized in place: v * rsqrt(mean(v^2) + eps) * weight
static inline void norm_in_place(float* v, const float* weight, int64_t n, float eps) {
    const float s = rms_scale(v, n, eps);
    for (int64_t i = 0; i < n; i++) v[i] = v[i] * s * weight[i];
}

// Each of the M rows of x [M, n] normalized in place, shared out among the threads
static void norm_rows(float* x, const float* weight, int64_t M, int64_t n, float eps) {
#pragma omp for schedule(static)
    for (int64_t r = 0; r < M; r++) norm_in_place(x + r * n, weight, n, eps);
}

// x += y + bias, or x += norm(y + bias) where the block norms each sublayer's output (Gemma)
static void add_residual(float* x, float* y, const float* bias, const float* norm, int64_t M, int64_t dim, float eps) {
    if (!norm) return add_rows(x, y, bias, M, dim);
    if (bias) add_rows(y, nullptr, bias, M, dim);
    norm_rows(y, norm, M, dim, eps);
    add_rows(x, y, nullptr, M, dim);
}

static inline float gelu_tanh(float g) {
    return 0.5f * g * (1.0f + tanhf(0.7978845608f * (g + 0.044715f * g * g * g)));
}

// x [M, dim]: the sequences' residual streams, updated in place; sequence r is at position pos[r], its keys and
// values in row r of each layer's cache ([rows, hkv, capacity, d]); rope: cos and sin [M, rot] of the global layers,
// then of the sliding-window ones; work: (h + 2 hkv) d + h d + dim + 3 ffn floats a sequence; xq .. rs: the
// matmuls' scratch.
static void decode_layers(const TTLayer* layers, const TTModel* m, int64_t M, float* x, const int64_t* pos,
                          const float* const* rope, float* work, int8_t* xq, float* xd, float* xs, float* rs,
                          int threads) {
    const int64_t h = m->h, hkv = m->hkv, d = m->d, ffn = m->ffn, dim = m->dim, width = (h + 2 * hkv) * d;
    float* qkv = work;
    float* att = qkv + M * width;
    float* tmp = att + M * h * d;
    float* gate_up = tmp + M * dim;
    float* act = gate_up + M * 2 * ffn;
#pragma omp parallel num_threads(threads)
    for (int64_t i = 0; i < m->layers; i++) {
        const TTLayer& l = layers[i];
        const int64_t row = hkv * l.capacity * d;  // a sequence's cache
        project_rows(l.qkv, x, M, qkv, width, l.attention_norm, m->eps, xq, xd, xs, rs);
        if (l.qkv.bias) add_rows(qkv, nullptr, l.qkv.bias, M, width);
        if (l.q_norm) {  // each query head, then each key head, normed over its d values
#pragma omp for schedule(static)
            for (int64_t j = 0; j < M * (h + hkv); j++) {
                const int64_t r = j / (h + hkv), head = j % (h + hkv);
                norm_in_place(qkv + r * width + head * d, head < h ? l.q_norm : l.k_norm, d, m->eps);
            }
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < M; r++)
            rotate_and_store(qkv + r * width, l.k_cache + r * row, l.v_cache + r * row, l.capacity, pos[r],
                             rope[2 * l.local_rope] + r * m->rot, rope[2 * l.local_rope + 1] + r * m->rot, m->rot, h, hkv, d);
#pragma omp for schedule(static)
        for (int64_t j = 0; j < M * h; j++) {
            const int64_t r = j / h, head = j % h, g = head / (h / hkv);
            attend_head(qkv + r * width + head * d, l.k_cache + r * row + g * l.capacity * d,
                        l.v_cache + r * row + g * l.capacity * d, pos[r], d, m->scale, l.window, att + j * d);
        }
        project_rows(l.out, att, M, tmp, dim, nullptr, 0.0f, xq, xd, xs, rs);
        add_residual(x, tmp, l.out.bias, l.post_attention_norm, M, dim, m->eps);
        project_rows(l.gate_up, x, M, gate_up, 2 * ffn, l.ffn_norm, m->eps, xq, xd, xs, rs);
        const float* bias = l.gate_up.bias;
#pragma omp for schedule(static)
        for (int64_t j = 0; j < M * ffn; j++) {
            const int64_t r = j / ffn, c = j % ffn;
            float g = gate_up[r * 2 * ffn + c], u = gate_up[r * 2 * ffn + ffn + c];
            if (bias) g += bias[c], u += bias[ffn + c];
            act[j] = (m->gelu ? gelu_tanh(g) : g / (1.0f + expf(-g))) * u;
        }
        project_rows(l.down, act, M, tmp, dim, nullptr, 0.0f, xq, xd, xs, rs);
        add_residual(x, tmp, l.down.bias, l.post_ffn_norm, M, dim, m->eps);
    }
}
