/* Guarded output buffers for the GPU tests of bandwidth ops: a [rows, cols] view with a
 * row stride and a lead offset inside a byte buffer that runs GUARD_BYTES past its last
 * row, prefilled with a known byte, so a test sees both unwritten elements and writes
 * outside the view (padding columns, lead, tail). */
#ifndef MOE_TEST_GUARDED_BUFFER_H
#define MOE_TEST_GUARDED_BUFFER_H

#include "harness.h"

#define GUARD_BYTES 64
#define FILL_A 0xFF /* the harness's poison: NaN in every float format */
#define FILL_B 0x3C /* a second prefill, a finite value in every format */

typedef struct gbuf {
    moe_tensor whole; /* the buffer as 1-D bytes */
    moe_tensor view;  /* the tensor an op sees */
    size_t lead;
} gbuf;

/* A host buffer with row stride ld, lead bytes in, every byte fill. */
gbuf gbuf_host(moe_dtype dtype, int64_t rows, int64_t cols, int64_t ld, size_t lead, int fill);
/* A device copy of a host buffer, same layout. */
gbuf gbuf_to_device(const gbuf *h);
/* A device buffer of that layout, every byte fill. */
gbuf gbuf_device(moe_dtype dtype, int64_t rows, int64_t cols, int64_t ld, size_t lead, int fill);
/* The bytes of a device buffer, synchronised, in a host buffer of the same layout. */
gbuf gbuf_fetch(const gbuf *d);
/* Whether byte i of the buffer belongs to one of the first `written` columns of a row. */
int gbuf_in_written(const gbuf *b, size_t i, int64_t written);
/* Element (r, c) of the view. */
const uint8_t *gbuf_elem(const gbuf *b, int64_t r, int64_t c);
/* Bytes outside the first `written` columns of each row that no longer hold fill. */
int64_t gbuf_touched_outside(const gbuf *b, int64_t written, int fill);
/* The second run (prefill FILL_B) wrote the first run's (prefill FILL_A) bytes and
 * nothing else: one CHECK. */
void gbuf_check_second_run(const gbuf *b_run, const gbuf *a_run, int64_t written,
                           const char *what, const char *name);

/* A tensor [n0, n1] with rows ld apart, starting `shift` elements into a poisoned buffer
 * with `extra` whole rows after it: the op's view and the whole buffer. */
typedef struct {
    moe_tensor view, full;
} padded;

/* On the host (test_tensor1's poison), freed after the test. */
padded host_rows(moe_dtype dt, int64_t n0, int64_t n1, int64_t ld, int64_t shift,
                 int64_t extra);
/* A device copy of a host one, same layout. */
padded device_rows(const padded *h);

#endif
