/* SHA-256 (FIPS 180-4) for the firmware's code hash; see sha256.h. */
#include "sha256.h"

#ifdef __AVR__
#include <avr/pgmspace.h>
#define K_READ(i) pgm_read_dword(&K[i])
#define K_STORAGE PROGMEM
#else
#define K_READ(i) K[i]
#define K_STORAGE
#endif

static const uint32_t K[64] K_STORAGE = {
    0x428a2f98ul, 0x71374491ul, 0xb5c0fbcful, 0xe9b5dba5ul, 0x3956c25bul, 0x59f111f1ul,
    0x923f82a4ul, 0xab1c5ed5ul, 0xd807aa98ul, 0x12835b01ul, 0x243185beul, 0x550c7dc3ul,
    0x72be5d74ul, 0x80deb1feul, 0x9bdc06a7ul, 0xc19bf174ul, 0xe49b69c1ul, 0xefbe4786ul,
    0x0fc19dc6ul, 0x240ca1ccul, 0x2de92c6ful, 0x4a7484aaul, 0x5cb0a9dcul, 0x76f988daul,
    0x983e5152ul, 0xa831c66dul, 0xb00327c8ul, 0xbf597fc7ul, 0xc6e00bf3ul, 0xd5a79147ul,
    0x06ca6351ul, 0x14292967ul, 0x27b70a85ul, 0x2e1b2138ul, 0x4d2c6dfcul, 0x53380d13ul,
    0x650a7354ul, 0x766a0abbul, 0x81c2c92eul, 0x92722c85ul, 0xa2bfe8a1ul, 0xa81a664bul,
    0xc24b8b70ul, 0xc76c51a3ul, 0xd192e819ul, 0xd6990624ul, 0xf40e3585ul, 0x106aa070ul,
    0x19a4c116ul, 0x1e376c08ul, 0x2748774cul, 0x34b0bcb5ul, 0x391c0cb3ul, 0x4ed8aa4aul,
    0x5b9cca4ful, 0x682e6ff3ul, 0x748f82eeul, 0x78a5636ful, 0x84c87814ul, 0x8cc70208ul,
    0x90befffaul, 0xa4506cebul, 0xbef9a3f7ul, 0xc67178f2ul};

#define INLINE static inline __attribute__((always_inline))

/* Rotations for an 8-bit core without a barrel shifter: avr-gcc turns a 32-bit shift by a
 * constant into a loop of single-bit steps (x << 30 is 30 of them). Rotate by whole bytes
 * (register moves) and then by at most 4 single bits, with the carried bit set explicitly. */
INLINE uint32_t rotr1(uint32_t x)
{
    return (x >> 1) | ((x & 1u) ? 0x80000000ul : 0u);
}

INLINE uint32_t rotl1(uint32_t x)
{
    return (x << 1) | ((x & 0x80000000ul) ? 1u : 0u);
}

INLINE uint32_t rotr(uint32_t x, uint8_t n)
{
    uint8_t m = (uint8_t)((n + 4u) & ~7u); /* nearest multiple of 8 (0..32) */
    if (m == 8)
        x = (x >> 8) | (x << 24);
    else if (m == 16)
        x = (x >> 16) | (x << 16);
    else if (m == 24)
        x = (x >> 24) | (x << 8);
    for (uint8_t k = m; k < n; k++)
        x = rotr1(x);
    for (uint8_t k = n; k < m; k++)
        x = rotl1(x);
    return x;
}

static void compress(sha256_t *s)
{
    uint32_t w[16];
    for (uint8_t i = 0; i < 16; i++) {
        const uint8_t *p = s->block + 4u * i;
        w[i] = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
    uint32_t e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (uint8_t i = 0; i < 64; i++) {
        uint32_t wi;
        if (i < 16) {
            wi = w[i];
        } else {
            uint32_t w15 = w[(i + 1) & 15], w2 = w[(i + 14) & 15];
            uint32_t s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >> 3);
            uint32_t s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >> 10);
            wi = w[i & 15] + s0 + w[(i + 9) & 15] + s1;
            w[i & 15] = wi;
        }
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                      K_READ(i) + wi;
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

void sha256_init(sha256_t *s)
{
    static const uint32_t h0[8] = {0x6a09e667ul, 0xbb67ae85ul, 0x3c6ef372ul, 0xa54ff53aul,
                                   0x510e527ful, 0x9b05688cul, 0x1f83d9abul, 0x5be0cd19ul};
    for (uint8_t i = 0; i < 8; i++)
        s->h[i] = h0[i];
    s->used = 0;
    s->total_lo = 0;
    s->total_hi = 0;
}

void sha256_byte(sha256_t *s, uint8_t byte)
{
    s->block[s->used++] = byte;
    if (++s->total_lo == 0)
        s->total_hi++;
    if (s->used == 64) {
        compress(s);
        s->used = 0;
    }
}

void sha256_update(sha256_t *s, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sha256_byte(s, data[i]);
}

void sha256_final(sha256_t *s, uint8_t digest[32])
{
    uint32_t bits_hi = (s->total_hi << 3) | (s->total_lo >> 29);
    uint32_t bits_lo = s->total_lo << 3;
    s->block[s->used++] = 0x80;
    if (s->used > 56) {
        while (s->used < 64)
            s->block[s->used++] = 0;
        compress(s);
        s->used = 0;
    }
    while (s->used < 56)
        s->block[s->used++] = 0;
    for (uint8_t i = 0; i < 4; i++) {
        s->block[56 + i] = (uint8_t)(bits_hi >> (24 - 8 * i));
        s->block[60 + i] = (uint8_t)(bits_lo >> (24 - 8 * i));
    }
    compress(s);
    for (uint8_t i = 0; i < 32; i++)
        digest[i] = (uint8_t)(s->h[i >> 2] >> (24 - 8 * (i & 3)));
}
