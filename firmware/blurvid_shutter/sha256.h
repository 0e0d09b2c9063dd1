/* SHA-256 (FIPS 180-4), small-RAM variant: a 16-word rolling message schedule.
 * Plain C99: compiled into the firmware and into the host tests. */
#ifndef BVSH_SHA256_H
#define BVSH_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t h[8];
    uint8_t block[64];
    uint8_t used;      /* bytes in block */
    uint32_t total_lo; /* message length in bytes (low and high words) */
    uint32_t total_hi;
} sha256_t;

void sha256_init(sha256_t *s);
void sha256_update(sha256_t *s, const uint8_t *data, size_t n);
void sha256_byte(sha256_t *s, uint8_t byte);
void sha256_final(sha256_t *s, uint8_t digest[32]);

#ifdef __cplusplus
}
#endif

#endif
