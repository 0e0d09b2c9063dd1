/* Host unit tests of the shared protocol code (proto.c, sha256.c) and of the device logic
 * (device.c) on a fake hardware layer. Build and run: make -C firmware test */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "fake_hal.h"
#include "proto.h"
#include "sha256.h"

static int failures, checks;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            failures++;                                                                      \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                                    \
    } while (0)

static uint32_t rng_state = 12345u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

/* ------------------------------------------------------------------------------------------ */

static void test_crc(void)
{
    CHECK(proto_crc16((const uint8_t *)"123456789", 9) == 0x29B1);
    CHECK(proto_crc16(NULL, 0) == 0xFFFF);
}

static void test_cobs(void)
{
    uint8_t in[600], enc[700], dec[700];
    for (int trial = 0; trial < 2000; trial++) {
        size_t n = rnd() % 520;
        int zero_rate = (int)(rnd() % 4);
        for (size_t i = 0; i < n; i++)
            in[i] = (zero_rate && rnd() % (unsigned)(zero_rate * 4) == 0) ? 0 : (uint8_t)rnd();
        size_t m = proto_cobs_encode(in, n, enc);
        CHECK(m <= n + n / 254 + 1);
        int has_zero = 0;
        for (size_t i = 0; i < m; i++)
            has_zero |= enc[i] == 0;
        CHECK(!has_zero);
        int back = proto_cobs_decode(enc, m, dec);
        CHECK(back == (int)n);
        CHECK(back < 0 || memcmp(in, dec, n) == 0);
    }
    /* runs of exactly 254 and 255 non-zero bytes */
    for (size_t n = 253; n <= 256; n++) {
        memset(in, 0x11, n);
        size_t m = proto_cobs_encode(in, n, enc);
        CHECK(proto_cobs_decode(enc, m, dec) == (int)n);
    }
    /* a known vector: 11 22 00 33 -> 03 11 22 02 33 */
    const uint8_t v[] = {0x11, 0x22, 0x00, 0x33}, e[] = {0x03, 0x11, 0x22, 0x02, 0x33};
    CHECK(proto_cobs_encode(v, 4, enc) == 5 && memcmp(enc, e, 5) == 0);
    /* invalid: a zero inside, a code past the end */
    const uint8_t bad1[] = {0x03, 0x11, 0x00}, bad2[] = {0x05, 0x11};
    CHECK(proto_cobs_decode(bad1, 3, dec) < 0);
    CHECK(proto_cobs_decode(bad2, 2, dec) < 0);
}

static void test_sha256(void)
{
    struct {
        const char *msg;
        const char *digest;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sha256_t s;
        uint8_t d[32];
        char h[65];
        sha256_init(&s);
        sha256_update(&s, (const uint8_t *)v[i].msg, strlen(v[i].msg));
        sha256_final(&s, d);
        hex(d, 32, h);
        CHECK(strcmp(h, v[i].digest) == 0);
    }
    /* one million 'a' (FIPS 180-2 appendix B.3) */
    sha256_t s;
    uint8_t d[32];
    char h[65];
    sha256_init(&s);
    for (int i = 0; i < 1000000; i++)
        sha256_byte(&s, 'a');
    sha256_final(&s, d);
    hex(d, 32, h);
    CHECK(strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
}

/* The byte examples of PROTOCOL.md. */
static void test_examples(void)
{
    struct {
        uint8_t type, seq;
        const char *body, *wire;
    } v[] = {
        {0x01, 1, "", "05 01 01 1f 3e 00"},
        {0x02, 2, "", "05 02 02 2f 5b 00"},
        {0x05, 255, "", "05 05 ff 0a fc 00"},
        {0x0a, 7, "68 69", "07 0a 07 68 69 f7 16 00"},
        {0x0a, 3, "00", "03 0a 03 03 0e 5e 00"},
        {0x03, 5, "08 00 40 42 0f 00 e5", "04 03 05 08 04 40 42 0f 04 e5 03 fd 00"},
        {0x7f, 0, "01 00 00 00", "02 7f 02 01 01 01 03 3b f8 00"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t body[64], want[64], wire[PROTO_MAX_WIRE];
        size_t nb = 0, nw = 0;
        for (const char *p = v[i].body; *p; p += (p[2] ? 3 : 2))
            body[nb++] = (uint8_t)strtoul((char[]){p[0], p[1], 0}, NULL, 16);
        for (const char *p = v[i].wire; *p; p += (p[2] ? 3 : 2))
            want[nw++] = (uint8_t)strtoul((char[]){p[0], p[1], 0}, NULL, 16);
        size_t n = proto_build_frame(v[i].type, v[i].seq, body, nb, wire);
        CHECK(n == nw && memcmp(wire, want, n) == 0);
    }
}

static void test_chip_timing(void)
{
    uint8_t pre;
    uint32_t ticks;
    CHECK(proto_chip_timing(10000, &pre, &ticks) == E_NONE && pre == 8 && ticks == 20);
    CHECK(proto_chip_timing(9500, &pre, &ticks) == E_CHIP_TIMING);
    CHECK(proto_chip_timing(10250, &pre, &ticks) == E_CHIP_TIMING);
    CHECK(proto_chip_timing(32767500, &pre, &ticks) == E_NONE && pre == 8 && ticks == 65535);
    CHECK(proto_chip_timing(32768000, &pre, &ticks) == E_NONE && pre == 64 && ticks == 8192);
    CHECK(proto_chip_timing(32770000, &pre, &ticks) == E_CHIP_TIMING);
    CHECK(proto_chip_timing(262140000, &pre, &ticks) == E_NONE && ticks == 65535);
    CHECK(proto_chip_timing(262144000, &pre, &ticks) == E_CHIP_TIMING);
}

/* ------------------------------------------------------------------------------------------ */
/* receiver */

static int feed_all(proto_rx_t *rx, const uint8_t *b, size_t n, uint32_t t, proto_packet_t *pk,
                    uint8_t *errs, int *n_err)
{
    int packets = 0;
    *n_err = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t e;
        int r = proto_rx_feed(rx, b[i], t, pk, &e);
        if (r == RX_PACKET)
            packets++;
        else if (r == RX_ERROR)
            errs[(*n_err)++] = e;
    }
    return packets;
}

static void test_receiver(void)
{
    proto_rx_t rx;
    proto_packet_t pk;
    uint8_t wire[PROTO_MAX_WIRE], errs[64], buf[400];
    int n_err;
    proto_rx_init(&rx);
    const uint8_t body[] = {1, 0, 2, 3};
    size_t n = proto_build_frame(0x0A, 7, body, sizeof body, wire);
    CHECK(wire[n - 1] == 0);
    CHECK(feed_all(&rx, wire, n, 0, &pk, errs, &n_err) == 1 && n_err == 0);
    CHECK(pk.type == 0x0A && pk.seq == 7 && pk.body_len == 4 && memcmp(pk.body, body, 4) == 0);

    /* garbage, then a valid frame: one error for the garbage, then the packet */
    size_t g = 0;
    const char *junk = "hello\r\n";
    memcpy(buf, junk, strlen(junk));
    g = strlen(junk);
    buf[g++] = 0;
    memcpy(buf + g, wire, n);
    CHECK(feed_all(&rx, buf, g + n, 0, &pk, errs, &n_err) == 1);
    CHECK(n_err == 1 && (errs[0] == E_CRC || errs[0] == E_FRAMING));

    /* a flipped bit: E_CRC (or E_FRAMING), never a packet */
    memcpy(buf, wire, n);
    buf[3] ^= 0x04;
    if (buf[3] == 0)
        buf[3] = 1;
    CHECK(feed_all(&rx, buf, n, 0, &pk, errs, &n_err) == 0 && n_err == 1);

    /* too long: one E_TOO_LONG, then the next frame is received */
    memset(buf, 0x55, 300);
    buf[300] = 0;
    CHECK(feed_all(&rx, buf, 301, 0, &pk, errs, &n_err) == 0 && n_err == 1 &&
          errs[0] == E_TOO_LONG);
    CHECK(feed_all(&rx, wire, n, 0, &pk, errs, &n_err) == 1 && n_err == 0);

    /* half a frame, then silence: dropped with E_TIMEOUT, the next frame is fine */
    CHECK(feed_all(&rx, wire, 3, 100, &pk, errs, &n_err) == 0 && n_err == 0);
    CHECK(proto_rx_check_timeout(&rx, 100 + PROTO_RX_TIMEOUT_MS) == 0);
    CHECK(proto_rx_check_timeout(&rx, 101 + PROTO_RX_TIMEOUT_MS) == 1);
    CHECK(feed_all(&rx, wire, n, 200, &pk, errs, &n_err) == 1 && n_err == 0);
    /* ... or a late rest of the frame: the stale half is dropped, the rest is garbage */
    CHECK(feed_all(&rx, wire, 3, 300, &pk, errs, &n_err) == 0);
    CHECK(feed_all(&rx, wire + 3, n - 3, 400, &pk, errs, &n_err) == 0 && n_err == 2 &&
          errs[0] == E_TIMEOUT);
    /* empty frames are ignored */
    const uint8_t zeros[] = {0, 0, 0};
    CHECK(feed_all(&rx, zeros, 3, 500, &pk, errs, &n_err) == 0 && n_err == 0);
}

/* ------------------------------------------------------------------------------------------ */
/* device logic on the fake HAL */

static device_t dev;
static size_t out_pos;
static uint8_t seq_counter = 1;

typedef struct {
    uint8_t type, seq, len;
    uint8_t body[160];
} msg_t;

/* Decodes the next frame the device wrote (skipping the banner text). */
static int next_msg(msg_t *m)
{
    static proto_rx_t rx;
    static int init;
    if (!init) {
        proto_rx_init(&rx);
        init = 1;
    }
    while (out_pos < fake.out_len) {
        proto_packet_t pk;
        uint8_t e;
        int r = proto_rx_feed(&rx, fake.out[out_pos++], 0, &pk, &e);
        if (r == RX_PACKET) {
            m->type = pk.type;
            m->seq = pk.seq;
            m->len = pk.body_len;
            memcpy(m->body, pk.body, pk.body_len);
            return 1;
        }
    }
    return 0;
}

static void send_raw(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        device_rx_byte(&dev, b[i]);
    device_poll(&dev);
}

static size_t frame(uint8_t type, uint8_t seq, const uint8_t *body, size_t n, uint8_t *wire)
{
    return proto_build_frame(type, seq, body, n, wire);
}

/* Sends a request and returns its reply. */
static msg_t request(uint8_t type, const uint8_t *body, size_t n)
{
    uint8_t wire[PROTO_MAX_WIRE];
    msg_t m;
    memset(&m, 0, sizeof m);
    uint8_t seq = seq_counter++;
    if (!seq_counter)
        seq_counter = 1;
    send_raw(wire, frame(type, seq, body, n, wire));
    while (next_msg(&m))
        if (m.seq == seq && (m.type == (type | MSG_REPLY) || m.type == MSG_ERROR))
            return m;
    m.type = 0;
    return m;
}

static size_t load_body(const char *bits, uint32_t chip_ns, uint8_t *b)
{
    size_t n = strlen(bits);
    proto_put_u16(b, (uint16_t)n);
    proto_put_u32(b + 2, chip_ns);
    memset(b + 6, 0, (n + 7) / 8);
    for (size_t k = 0; k < n; k++)
        if (bits[k] == '1')
            b[6 + k / 8] |= (uint8_t)(0x80 >> (k % 8));
    return 6 + (n + 7) / 8;
}

static void boot(void)
{
    fake_reset();
    out_pos = 0;
    device_init(&dev);
}

static int is_error(const msg_t *m, uint8_t code)
{
    return m->type == MSG_ERROR && m->len == 4 && m->body[0] == code;
}

static void test_device_boot_and_info(void)
{
    fake_erase_eeprom();
    boot();
    const char *banner = "blurvid-shutter " FW_VERSION_STRING " protocol 1\r\n";
    CHECK(fake.out_len > strlen(banner) && memcmp(fake.out, banner, strlen(banner)) == 0);
    msg_t m;
    CHECK(next_msg(&m) && m.type == MSG_READY && m.seq == 0 && m.len == PROTO_INFO_LEN);
    CHECK(memcmp(m.body, "BVSH", 4) == 0 && m.body[4] == PROTO_VERSION);
    CHECK(proto_get_u16(m.body + 9) == PROTO_MAX_CHIPS && m.body[32] == 0);
    m = request(MSG_GET_INFO, NULL, 0);
    CHECK(m.type == (MSG_GET_INFO | MSG_REPLY) && m.len == PROTO_INFO_LEN);
    m = request(MSG_GET_STATUS, NULL, 0);
    CHECK(m.type == (MSG_GET_STATUS | MSG_REPLY) && m.len == PROTO_STATUS_LEN);
    CHECK(m.body[0] == ST_NO_CODE && proto_get_u16(m.body + 6) == 0);
    m = request(0x42, NULL, 0);
    CHECK(is_error(&m, E_UNKNOWN_TYPE) && m.body[1] == 0x42);
    uint8_t one = 1;
    m = request(MSG_GET_STATUS, &one, 1);
    CHECK(is_error(&m, E_LENGTH));
    uint8_t ping[40];
    for (int i = 0; i < 40; i++)
        ping[i] = (uint8_t)i;
    m = request(MSG_PING, ping, 32);
    CHECK(m.type == (MSG_PING | MSG_REPLY) && m.len == 32 && memcmp(m.body, ping, 32) == 0);
    m = request(MSG_PING, ping, 33);
    CHECK(is_error(&m, E_LENGTH));
}

static void test_device_load_code(void)
{
    fake_erase_eeprom();
    boot();
    uint8_t b[200];
    size_t n = load_body("11100101", 1000000, b);
    CHECK(b[6] == 0xE5);
    msg_t m = request(MSG_LOAD_CODE, b, n);
    CHECK(m.type == (MSG_LOAD_CODE | MSG_REPLY) && m.len == PROTO_STATUS_LEN);
    CHECK(m.body[0] == ST_LOADED && proto_get_u16(m.body + 6) == 8);
    CHECK(proto_get_u32(m.body + 8) == 1000000 && m.body[12] == 8);
    CHECK(proto_get_u32(m.body + 13) == 2000);
    char h[65];
    hex(m.body + 17, 32, h);
    /* sha256("11100101"), from Python's hashlib */
    CHECK(strcmp(h, "e6df3e0d41502da394777cb1bbdbaeda4ddd8de1b5bf4b4488f12a682685bbd3") == 0);

    /* errors leave the loaded code as it was */
    n = load_body("1010", 9000, b);
    m = request(MSG_LOAD_CODE, b, n);
    CHECK(is_error(&m, E_CHIP_TIMING));
    n = load_body("0000", 100000, b);
    m = request(MSG_LOAD_CODE, b, n);
    CHECK(is_error(&m, E_BAD_VALUE));
    n = load_body("101", 100000, b);
    b[6] |= 0x01; /* an unused bit set */
    m = request(MSG_LOAD_CODE, b, n);
    CHECK(is_error(&m, E_BAD_VALUE));
    n = load_body("101", 100000, b);
    m = request(MSG_LOAD_CODE, b, n - 1);
    CHECK(is_error(&m, E_LENGTH) && proto_get_u16(m.body + 2) == 7);
    proto_put_u16(b, 1025);
    m = request(MSG_LOAD_CODE, b, 6 + 129);
    CHECK(is_error(&m, E_CODE_LENGTH));
    m = request(MSG_GET_STATUS, NULL, 0);
    CHECK(proto_get_u16(m.body + 6) == 8 && m.body[1] == E_CODE_LENGTH);

    /* the longest code */
    char bits[PROTO_MAX_CHIPS + 1];
    for (unsigned k = 0; k < PROTO_MAX_CHIPS; k++)
        bits[k] = (rnd() & 1) ? '1' : '0';
    bits[PROTO_MAX_CHIPS] = 0;
    n = load_body(bits, 32768000, b);
    m = request(MSG_LOAD_CODE, b, n);
    CHECK(m.type == (MSG_LOAD_CODE | MSG_REPLY) && proto_get_u16(m.body + 6) == 1024);
    CHECK(m.body[12] == 64 && proto_get_u32(m.body + 13) == 8192);
    sha256_t s;
    uint8_t d[32];
    sha256_init(&s);
    sha256_update(&s, (const uint8_t *)bits, PROTO_MAX_CHIPS);
    sha256_final(&s, d);
    CHECK(memcmp(d, m.body + 17, 32) == 0);
}

static msg_t configure(uint8_t mode, uint16_t repeats, uint32_t period, uint32_t lead,
                       uint8_t style, uint32_t pulse, uint8_t source, uint8_t flags)
{
    proto_config_t c = {mode, repeats, period, lead, style, pulse, source, flags};
    uint8_t b[PROTO_CONFIG_LEN];
    proto_config_encode(&c, b);
    return request(MSG_CONFIGURE, b, sizeof b);
}

static void test_device_fire(void)
{
    fake_erase_eeprom();
    boot();
    msg_t m = request(MSG_ARM, NULL, 0);
    CHECK(is_error(&m, E_NO_CODE));
    m = request(MSG_FIRE, NULL, 0);
    CHECK(is_error(&m, E_NO_CODE));
    uint8_t b[200];
    size_t n = load_body("11100101", 1000000, b);
    request(MSG_LOAD_CODE, b, n);
    m = request(MSG_FIRE, NULL, 0);
    CHECK(is_error(&m, E_NOT_ARMED));
    m = request(MSG_ARM, NULL, 0);
    CHECK(m.type == (MSG_ARM | MSG_REPLY) && m.body[0] == ST_ARMED);
    /* lead 100 us -> 200 ticks, chips 2000 ticks, single shot */
    CHECK(fake.starts == 0);
    m = request(MSG_LOAD_CODE, b, n);
    CHECK(is_error(&m, E_BUSY));

    uint8_t wire[PROTO_MAX_WIRE];
    size_t w = frame(MSG_FIRE, 200, NULL, 0, wire);
    send_raw(wire, w);
    CHECK(fake.starts == 1 && fake.running);
    CHECK(fake.plan.lead_ticks == 200 && fake.plan.chip_ticks == 2000 &&
          fake.plan.n_chips == 8 && fake.plan.playbacks == 1 && fake.plan.pulse_ticks == 0);
    CHECK(next_msg(&m) && m.type == (MSG_FIRE | MSG_REPLY) && m.seq == 200);
    CHECK(proto_get_u32(m.body) == 0 && proto_get_u16(m.body + 4) == 1);
    /* a retry of the same FIRE (reply lost) does not fire twice */
    send_raw(wire, w);
    CHECK(fake.starts == 1);
    CHECK(next_msg(&m) && m.type == (MSG_FIRE | MSG_REPLY) && m.seq == 200);
    /* while playing: FIRE is busy, STATUS says playing */
    m = request(MSG_FIRE, NULL, 0);
    CHECK(is_error(&m, E_BUSY));
    m = request(MSG_GET_STATUS, NULL, 0);
    CHECK(m.body[0] == ST_PLAYING);
    fake_finish_run(1, DONE_COMPLETE);
    device_poll(&dev);
    CHECK(next_msg(&m) && m.type == MSG_DONE && m.seq == 200 && m.len == PROTO_DONE_LEN);
    CHECK(proto_get_u32(m.body) == 0 && proto_get_u32(m.body + 4) == 1 && m.body[8] == 0);
    m = request(MSG_GET_STATUS, NULL, 0);
    CHECK(m.body[0] == ST_ARMED && proto_get_u32(m.body + 2) == 1);
    m = request(MSG_FIRE, NULL, 0);
    CHECK(m.type == (MSG_FIRE | MSG_REPLY) && proto_get_u32(m.body) == 1);
    /* DISARM aborts the run: DONE (aborted) before the reply */
    m = request(MSG_DISARM, NULL, 0);
    CHECK(m.type == (MSG_DISARM | MSG_REPLY) && m.body[0] == ST_LOADED);
    m = request(MSG_FIRE, NULL, 0);
    CHECK(is_error(&m, E_NOT_ARMED));
}

static void test_device_configure(void)
{
    fake_erase_eeprom();
    boot();
    msg_t m = configure(3, 1, 0, 100000, 0, 10000, 0, 1);
    CHECK(is_error(&m, E_BAD_VALUE) && proto_get_u16(m.body + 2) == 0);
    m = configure(MODE_REPEAT, 0, 0, 100000, 0, 10000, 0, 1);
    CHECK(is_error(&m, E_BAD_VALUE) && proto_get_u16(m.body + 2) == 1);
    m = configure(0, 1, 0, 5000, 0, 10000, 0, 1);
    CHECK(is_error(&m, E_BAD_VALUE) && proto_get_u16(m.body + 2) == 7);
    m = configure(0, 1, 0, 100000, 1, 200000, 0, 1);
    CHECK(is_error(&m, E_BAD_VALUE) && proto_get_u16(m.body + 2) == 12);
    m = configure(0, 1, 0, 100000, 0, 10000, 0, 0x80);
    CHECK(is_error(&m, E_BAD_VALUE) && proto_get_u16(m.body + 2) == 17);

    uint8_t b[200];
    size_t n = load_body("1101", 10000, b); /* 4 chips of 10 us: 40 us code */
    request(MSG_LOAD_CODE, b, n);
    /* repeat 5 at a 1 ms period: gap = 2000 - 200 - 80 ticks */
    m = configure(MODE_REPEAT, 5, 1000000, 100000, TRIG_PULSE, 20000, 0, 1);
    CHECK(m.type == (MSG_CONFIGURE | MSG_REPLY));
    CHECK(proto_get_u32(m.body + 52) == 1000000 && proto_get_u32(m.body + 61) == 20000);
    m = request(MSG_ARM, NULL, 0);
    CHECK(m.type == (MSG_ARM | MSG_REPLY));
    m = request(MSG_FIRE, NULL, 0);
    CHECK(m.type == (MSG_FIRE | MSG_REPLY) && proto_get_u16(m.body + 4) == 5);
    CHECK(fake.plan.gap_ticks == 2000 - 200 - 80 && fake.plan.pulse_ticks == 40 &&
          fake.plan.playbacks == 5);
    fake_finish_run(5, DONE_COMPLETE);
    device_poll(&dev);
    request(MSG_DISARM, NULL, 0);
    /* a period shorter than lead + code + 20 us cannot arm */
    configure(MODE_CONTINUOUS, 1, 150000, 100000, 0, 10000, 0, 1);
    m = request(MSG_ARM, NULL, 0);
    CHECK(is_error(&m, E_CONFIG));
    /* period 0: the shortest */
    configure(MODE_CONTINUOUS, 1, 0, 100000, 0, 10000, 0, 1);
    m = request(MSG_ARM, NULL, 0);
    CHECK(m.type == (MSG_ARM | MSG_REPLY) && proto_get_u32(m.body + 52) == 160000);
    /* a pulse that leaves less than 10 us of lead cannot arm */
    request(MSG_DISARM, NULL, 0);
    configure(MODE_SINGLE, 1, 0, 100000, TRIG_PULSE, 95000, 0, 1);
    m = request(MSG_ARM, NULL, 0);
    CHECK(is_error(&m, E_CONFIG));
}

static void test_device_external_trigger(void)
{
    fake_erase_eeprom();
    boot();
    uint8_t b[200];
    size_t n = load_body("1011", 100000, b);
    request(MSG_LOAD_CODE, b, n);
    configure(MODE_SINGLE, 1, 0, 100000, 0, 10000, START_EXTERNAL, 1);
    msg_t m = request(MSG_ARM, NULL, 0);
    CHECK(m.type == (MSG_ARM | MSG_REPLY) && fake.armed_ext);
    m = request(MSG_FIRE, NULL, 0);
    CHECK(is_error(&m, E_NOT_ARMED));
    fake_trigger_in();
    CHECK(fake.running);
    fake_finish_run(1, DONE_COMPLETE);
    device_poll(&dev);
    CHECK(next_msg(&m) && m.type == MSG_DONE && m.seq == 0);
    m = request(MSG_DISARM, NULL, 0);
    CHECK(!fake.armed_ext && m.body[0] == ST_LOADED);
}

static void test_device_eeprom(void)
{
    fake_erase_eeprom();
    boot();
    msg_t m = request(MSG_SAVE, NULL, 0);
    CHECK(is_error(&m, E_NO_CODE));
    uint8_t b[200];
    size_t n = load_body("1110010110", 50000, b);
    request(MSG_LOAD_CODE, b, n);
    configure(MODE_REPEAT, 3, 0, 200000, 0, 10000, 0, 0);
    m = request(MSG_SAVE, NULL, 0);
    CHECK(m.type == (MSG_SAVE | MSG_REPLY) && (m.body[67] & 1));
    uint8_t sha[32];
    memcpy(sha, m.body + 17, 32);
    boot(); /* reboot: the code comes back */
    CHECK(next_msg(&m) && m.type == MSG_READY && m.body[32] == 1);
    m = request(MSG_GET_STATUS, NULL, 0);
    CHECK(m.body[0] == ST_LOADED && proto_get_u16(m.body + 6) == 10);
    CHECK(memcmp(m.body + 17, sha, 32) == 0 && m.body[49] == MODE_REPEAT);
    /* a corrupted record is ignored */
    fake.eeprom[12] ^= 0xFF;
    boot();
    CHECK(next_msg(&m) && m.type == MSG_READY && m.body[32] == 0);
    m = request(MSG_GET_STATUS, NULL, 0);
    CHECK(m.body[0] == ST_NO_CODE);
    fake.eeprom[12] ^= 0xFF;
    m = request(MSG_ERASE, NULL, 0);
    CHECK(m.type == (MSG_ERASE | MSG_REPLY) && !(m.body[67] & 1));
    boot();
    CHECK(next_msg(&m) && m.type == MSG_READY && m.body[32] == 0);
}

static void test_device_link_errors(void)
{
    fake_erase_eeprom();
    boot();
    msg_t m;
    while (next_msg(&m))
        ;
    /* garbage: one frame-level error with seq 0, and the device keeps working */
    const uint8_t junk[] = {'x', 'y', 'z', 0};
    send_raw(junk, sizeof junk);
    CHECK(next_msg(&m) && m.type == MSG_ERROR && m.seq == 0 && m.body[1] == 0 &&
          (m.body[0] == E_CRC || m.body[0] == E_FRAMING));
    /* half a frame then silence: E_TIMEOUT from device_poll */
    uint8_t wire[PROTO_MAX_WIRE];
    size_t w = frame(MSG_GET_STATUS, 9, NULL, 0, wire);
    fake.now_ms = 1000;
    send_raw(wire, 2);
    fake.now_ms = 1000 + PROTO_RX_TIMEOUT_MS + 1;
    device_poll(&dev);
    CHECK(next_msg(&m) && m.type == MSG_ERROR && m.body[0] == E_TIMEOUT);
    send_raw(wire, w);
    CHECK(next_msg(&m) && m.type == (MSG_GET_STATUS | MSG_REPLY) && m.seq == 9);
    CHECK(m.body[1] == E_TIMEOUT); /* last_error */
    /* an over-long frame */
    uint8_t big[300];
    memset(big, 0x33, sizeof big);
    send_raw(big, sizeof big);
    CHECK(next_msg(&m) && m.type == MSG_ERROR && m.body[0] == E_TOO_LONG);
    const uint8_t z = 0;
    send_raw(&z, 1);
    m = request(MSG_GET_STATUS, NULL, 0);
    CHECK(m.type == (MSG_GET_STATUS | MSG_REPLY));
}

/* Seed inputs for the fuzzer: valid request frames, and one whole session. */
static void write_seed(const char *dir, const char *name, const uint8_t *b, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(2);
    }
    fwrite(b, 1, n, f);
    fclose(f);
}

static int write_seeds(const char *dir)
{
    uint8_t all[2048], body[200], cfg[PROTO_CONFIG_LEN];
    size_t n_all = 0, n;
    proto_config_t c;
    proto_config_defaults(&c);
    proto_config_encode(&c, cfg);
    struct {
        const char *name;
        uint8_t type;
        const uint8_t *body;
        size_t len;
    } s[] = {
        {"info", MSG_GET_INFO, NULL, 0},       {"load", MSG_LOAD_CODE, body, 0},
        {"configure", MSG_CONFIGURE, cfg, sizeof cfg}, {"arm", MSG_ARM, NULL, 0},
        {"fire", MSG_FIRE, NULL, 0},           {"status", MSG_GET_STATUS, NULL, 0},
        {"ping", MSG_PING, (const uint8_t *)"hello", 5},
    };
    s[1].len = load_body("11100101", 1000000, body);
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        uint8_t wire[PROTO_MAX_WIRE];
        n = proto_build_frame(s[i].type, (uint8_t)(i + 1), s[i].body, s[i].len, wire);
        write_seed(dir, s[i].name, wire, n);
        memcpy(all + n_all, wire, n);
        n_all += n;
    }
    all[n_all++] = 0xFE; /* finish the run */
    all[n_all++] = 0x81;
    write_seed(dir, "session", all, n_all);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--seeds") == 0)
        return write_seeds(argv[2]);
    test_crc();
    test_cobs();
    test_sha256();
    test_chip_timing();
    test_examples();
    test_receiver();
    test_device_boot_and_info();
    test_device_load_code();
    test_device_fire();
    test_device_configure();
    test_device_external_trigger();
    test_device_eeprom();
    test_device_link_errors();
    printf("firmware host tests: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
