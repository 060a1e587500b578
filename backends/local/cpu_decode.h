// A decoding step of one sequence through every block, included by cpu_kernels.cpp once per
// instruction set: one parallel region for the whole step, its threads meeting at a barrier after
// each matmul (as llama.cpp's thread pool does) instead of a region a matmul, and none of the
// torch operators and Python between the matmuls (at batch 1 on a 135M model those took more
// time than the matmuls). Blocks of the Llama shape: pre-norms, SiLU-gated FFN, no Q/K norms.

static void project_rows(const TTProjection& p, const float* x, float* y, const float* norm, float eps, int8_t* xq,
                         float* xd, float* xs, float* rs) {
    for (int64_t i = 0; i < p.parts; y += p.part[i].n, i++) {
        const TTLinear& l = p.part[i];
        if (l.bits == 8) int8_rows((const int8_t*)l.w, l.scale, l.n, l.k, x, 1, y, norm, eps, xq, xd, xs, rs);
        else int4_rows((const uint8_t*)l.w, l.high, l.scale, l.mins, l.n, l.k, x, 1, y, norm, eps, xq, xd, xs, rs);
    }
}

static void add_into(float* x, const float* y, const float* bias, int64_t n) {  // x += y (+ bias)
    for (int64_t i = 0; i < n; i++) x[i] += bias ? y[i] + bias[i] : y[i];
}

// x [dim]: the token's residual stream, updated in place; rope: cos and sin [rot] at pos of the global
// layers, then of the sliding-window ones; work: TTModel's float scratch; xq .. rs: the matmuls' scratch.
static void decode_layers(const TTLayer* layers, const TTModel* m, float* x, int64_t pos, const float* const* rope,
                          float* work, int8_t* xq, float* xd, float* xs, float* rs, int threads) {
    const int64_t h = m->h, hkv = m->hkv, d = m->d, ffn = m->ffn;
    float* qkv = work;
    float* att = qkv + (h + 2 * hkv) * d;
    float* tmp = att + h * d;
    float* gate_up = tmp + m->dim;
    float* act = gate_up + 2 * ffn;
#pragma omp parallel num_threads(threads)
    for (int64_t i = 0; i < m->layers; i++) {
        const TTLayer& l = layers[i];
        project_rows(l.qkv, x, qkv, l.attention_norm, m->eps, xq, xd, xs, rs);
#pragma omp single
        {
            if (l.qkv.bias) add_into(qkv, l.qkv.bias, nullptr, (h + 2 * hkv) * d);
            rotate_and_store(qkv, l.k_cache, l.v_cache, l.capacity, pos, rope[2 * l.local_rope],
                             rope[2 * l.local_rope + 1], m->rot, h, hkv, d);
        }
        attend_heads(qkv, l.k_cache, l.v_cache, l.capacity, pos, h, hkv, d, m->scale, l.window, att);
        project_rows(l.out, att, tmp, nullptr, 0.0f, xq, xd, xs, rs);
#pragma omp single
        add_into(x, tmp, l.out.bias, m->dim);
        project_rows(l.gate_up, x, gate_up, l.ffn_norm, m->eps, xq, xd, xs, rs);
        const float* bias = l.gate_up.bias;
#pragma omp for schedule(static)
        for (int64_t j = 0; j < ffn; j++) {
            const float g = bias ? gate_up[j] + bias[j] : gate_up[j], u = bias ? gate_up[ffn + j] + bias[ffn + j] : gate_up[ffn + j];
            act[j] = g / (1.0f + expf(-g)) * u;
        }
        project_rows(l.down, act, tmp, nullptr, 0.0f, xq, xd, xs, rs);
#pragma omp single
        add_into(x, tmp, l.down.bias, m->dim);
    }
}
