/* Rotary tables shared by the model's attention layers: one per distinct (rope parameters,
 * rotary width).   cos, sin [max_pos, rot/2]
 * Angles are computed as HF does: inv_freq in f32, angle = f32(pos) * inv_freq rounded to f32,
 * then cos/sin of that f32 angle. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"
#include "model/model_impl.h"

static cb_status fill_table(cb_rope_table *t, const cb_rope_params *p, int rot, int basis,
                            int64_t max_pos, cb_device dev) {
    int P = rot / 2;
    float *inv = malloc(sizeof(float) * (size_t)(basis / 2)); /* first P of them are used */
    float *c = malloc(sizeof(float) * (size_t)(max_pos * P));
    float *s = malloc(sizeof(float) * (size_t)(max_pos * P));
    cb_status st = (inv && c && s) ? cb_rope_inv_freq(p, basis, inv)
                                   : cb_fail(CB_ERR_NOMEM, "rope table of %lld positions", (long long)max_pos);
    if (st == CB_OK) {
        for (int64_t pos = 0; pos < max_pos; pos++)
            for (int i = 0; i < P; i++) {
                float a = (float)pos * inv[i];
                c[pos * P + i] = (float)cos((double)a);
                s[pos * P + i] = (float)sin((double)a);
            }
        int64_t sh[2] = {max_pos, P};
        cb_tensor *ct = NULL, *stt = NULL;
        st = cb_tensor_new(&ct, CB_F32, dev, 2, sh);
        if (st == CB_OK) st = cb_tensor_new(&stt, CB_F32, dev, 2, sh);
        if (st == CB_OK) st = cb_device_copy(dev, ct->data, CB_CPU, c, sizeof(float) * (size_t)(max_pos * P));
        if (st == CB_OK) st = cb_device_copy(dev, stt->data, CB_CPU, s, sizeof(float) * (size_t)(max_pos * P));
        if (st == CB_OK) {
            cb_tensor_free(t->cos);
            cb_tensor_free(t->sin);
            t->cos = ct;
            t->sin = stt;
            t->max_pos = max_pos;
            t->pairs = P;
        } else {
            cb_tensor_free(ct);
            cb_tensor_free(stt);
        }
    }
    free(inv);
    free(c);
    free(s);
    return st;
}

static bool same_params(const cb_rope_params *a, const cb_rope_params *b) {
    return a->theta == b->theta && a->type == b->type && a->factor == b->factor &&
           a->low_freq_factor == b->low_freq_factor && a->high_freq_factor == b->high_freq_factor &&
           a->original_max_pos == b->original_max_pos;
}

cb_status cb_model_build_ropes(cb_model *m) {
    m->ropes = calloc((size_t)m->n_attn + 1, sizeof *m->ropes);
    m->rope_keys = calloc((size_t)m->n_attn + 1, sizeof *m->rope_keys);
    m->rope_rot = calloc((size_t)m->n_attn + 1, sizeof *m->rope_rot);
    m->rope_basis = calloc((size_t)m->n_attn + 1, sizeof *m->rope_basis);
    if (!m->ropes || !m->rope_keys || !m->rope_rot || !m->rope_basis) return cb_fail(CB_ERR_NOMEM, "rope tables");
    for (int a = 0; a < m->n_attn; a++) {
        cb_module *L = m->attn[a];
        if (!L->attn.rope_enabled) continue;
        int found = -1;
        for (int r = 0; r < m->n_ropes && found < 0; r++)
            if (m->rope_rot[r] == L->attn.rope_rot && m->rope_basis[r] == L->attn.rope_basis &&
                same_params(&m->rope_keys[r], &L->attn.rope))
                found = r;
        if (found < 0) {
            found = m->n_ropes++;
            m->rope_keys[found] = L->attn.rope;
            m->rope_rot[found] = L->attn.rope_rot;
            m->rope_basis[found] = L->attn.rope_basis;
            CB_TRY(fill_table(&m->ropes[found], &L->attn.rope, L->attn.rope_rot, L->attn.rope_basis,
                              m->max_seq_len, m->device));
        }
        L->rope = &m->ropes[found];
    }
    return CB_OK;
}

cb_status cb_model_ensure_positions(cb_model *m, int64_t n) {
    if (n <= m->max_seq_len) return CB_OK;
    if (n > (int64_t)1 << 24)
        return cb_fail(CB_ERR_ARG, "position %lld is beyond the supported 2^24", (long long)n);
    int64_t want = m->max_seq_len;
    while (want < n) want *= 2;
    for (int r = 0; r < m->n_ropes; r++)
        CB_TRY(fill_table(&m->ropes[r], &m->rope_keys[r], m->rope_rot[r], m->rope_basis[r], want, m->device));
    m->max_seq_len = want;
    return CB_OK;
}

void cb_model_free_ropes(cb_model *m) {
    for (int r = 0; r < m->n_ropes; r++) {
        cb_tensor_free(m->ropes[r].cos);
        cb_tensor_free(m->ropes[r].sin);
    }
    free(m->ropes);
    free(m->rope_keys);
    free(m->rope_rot);
    free(m->rope_basis);
}
