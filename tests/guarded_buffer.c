/* See guarded_buffer.h. */
#include "guarded_buffer.h"

#include <string.h>

gbuf gbuf_host(moe_dtype dtype, int64_t rows, int64_t cols, int64_t ld, size_t lead,
               int fill) {
    size_t es = moe_dtype_size(dtype);
    size_t bytes = lead + (size_t)(rows * ld) * es + GUARD_BYTES;
    gbuf b;
    b.whole = test_tensor1(MOE_DTYPE_E4M3, (int64_t)bytes);
    memset(b.whole.data, fill, bytes);
    b.lead = lead;
    memset(&b.view, 0, sizeof b.view);
    b.view.data = (uint8_t *)b.whole.data + lead;
    b.view.dtype = dtype;
    b.view.rank = 2;
    b.view.shape[0] = rows;
    b.view.shape[1] = cols;
    b.view.stride[0] = ld;
    b.view.stride[1] = 1;
    return b;
}

gbuf gbuf_to_device(const gbuf *h) {
    gbuf d = *h;
    d.whole = test_to_device(&h->whole);
    d.view.data = (uint8_t *)d.whole.data + h->lead;
    return d;
}

gbuf gbuf_device(moe_dtype dtype, int64_t rows, int64_t cols, int64_t ld, size_t lead,
                 int fill) {
    gbuf h = gbuf_host(dtype, rows, cols, ld, lead, fill);
    return gbuf_to_device(&h);
}

gbuf gbuf_fetch(const gbuf *d) {
    gbuf h = gbuf_host(d->view.dtype, d->view.shape[0], d->view.shape[1], d->view.stride[0],
                       d->lead, 0);
    test_to_host(&d->whole, &h.whole);
    return h;
}

int gbuf_in_written(const gbuf *b, size_t i, int64_t written) {
    size_t es = moe_dtype_size(b->view.dtype), row = (size_t)b->view.stride[0] * es;
    if (i < b->lead || row == 0) return 0;
    size_t o = i - b->lead;
    return (int64_t)(o / row) < b->view.shape[0] && (int64_t)(o % row / es) < written;
}

const uint8_t *gbuf_elem(const gbuf *b, int64_t r, int64_t c) {
    size_t es = moe_dtype_size(b->view.dtype);
    return (const uint8_t *)b->view.data + (size_t)(r * b->view.stride[0] + c) * es;
}

/* Bytes outside the written columns that no longer hold fill. */
int64_t gbuf_touched_outside(const gbuf *b, int64_t written, int fill) {
    const uint8_t *p = b->whole.data;
    int64_t n = 0;
    for (size_t i = 0; i < (size_t)b->whole.shape[0]; i++)
        n += !gbuf_in_written(b, i, written) && p[i] != (uint8_t)fill;
    return n;
}

void gbuf_check_second_run(const gbuf *b_run, const gbuf *a_run, int64_t written,
                           const char *what, const char *name) {
    size_t es = moe_dtype_size(b_run->view.dtype);
    int64_t differ = 0;
    for (int64_t r = 0; r < b_run->view.shape[0]; r++)
        for (int64_t c = 0; c < written; c++)
            differ += memcmp(gbuf_elem(b_run, r, c), gbuf_elem(a_run, r, c), es) != 0;
    int64_t touched = gbuf_touched_outside(b_run, written, FILL_B);
    CHECK(differ == 0 && touched == 0,
          "%s: %s: %lld elements depend on the prefill (left unwritten), %lld bytes outside "
          "the output written",
          what, name, (long long)differ, (long long)touched);
}

padded host_rows(moe_dtype dt, int64_t n0, int64_t n1, int64_t ld, int64_t shift,
                 int64_t extra) {
    padded p;
    p.full = test_tensor1(dt, (n0 + extra) * ld + shift);
    size_t es = moe_dtype_size(dt);
    p.view = moe_tensor_2d((char *)p.full.data + shift * (int64_t)es, dt, n0, n1);
    p.view.stride[0] = ld;
    return p;
}

padded device_rows(const padded *h) {
    padded d;
    d.full = test_to_device(&h->full);
    d.view = h->view;
    d.view.data = (char *)d.full.data + ((char *)h->view.data - (char *)h->full.data);
    return d;
}
