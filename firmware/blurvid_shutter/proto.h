/* Framing and message layouts of the blurvid shutter protocol (firmware/PROTOCOL.md).
 *
 * Plain C99 with no AVR or libc dependencies beyond <stdint.h>/<stddef.h>: the same file is
 * compiled into the firmware, the host unit tests and the libFuzzer target.
 */
#ifndef BVSH_PROTO_H
#define BVSH_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PROTO_VERSION 1u
#define PROTO_MAGIC "BVSH"

#define PROTO_MAX_CHIPS 1024u
#define PROTO_MAX_BITS_BYTES (PROTO_MAX_CHIPS / 8u)
/* Bytes accepted before a delimiter (E_TOO_LONG beyond). */
#define PROTO_MAX_FRAME 160u
/* Largest packet: type, seq, LOAD_CODE body, crc. */
#define PROTO_MAX_PACKET (2u + 6u + PROTO_MAX_BITS_BYTES + 2u)
/* Largest frame on the wire: COBS overhead byte(s) plus the delimiter. */
#define PROTO_MAX_WIRE (PROTO_MAX_PACKET + 2u + 1u)
#define PROTO_RX_TIMEOUT_MS 50u
#define PROTO_PING_MAX 32u

/* Chip timing (Timer1 at 16 MHz): clk/8 = 0.5 us ticks up to 65535 ticks, then clk/64. */
#define PROTO_CHIP_NS_MIN 10000ul
#define PROTO_FINE_STEP_NS 500ul
#define PROTO_COARSE_STEP_NS 4000ul
#define PROTO_FINE_MAX_NS (65535ul * PROTO_FINE_STEP_NS)
#define PROTO_CHIP_NS_MAX (65535ul * PROTO_COARSE_STEP_NS)
#define PROTO_MIN_GAP_NS 20000ul
#define PROTO_LEAD_NS_MIN 10000ul
#define PROTO_PULSE_NS_MIN 10000ul

/* Message types. */
enum {
    MSG_GET_INFO = 0x01,
    MSG_GET_STATUS = 0x02,
    MSG_LOAD_CODE = 0x03,
    MSG_CONFIGURE = 0x04,
    MSG_ARM = 0x05,
    MSG_DISARM = 0x06,
    MSG_FIRE = 0x07,
    MSG_SAVE = 0x08,
    MSG_ERASE = 0x09,
    MSG_PING = 0x0A,
    MSG_ERROR = 0x7F,
    MSG_REPLY = 0x80, /* reply type = request | MSG_REPLY */
    MSG_READY = 0xC0,
    MSG_DONE = 0xC1
};

/* Error codes. */
enum {
    E_NONE = 0x00,
    E_CRC = 0x01,
    E_FRAMING = 0x02,
    E_TOO_LONG = 0x03,
    E_TIMEOUT = 0x04,
    E_UNKNOWN_TYPE = 0x05,
    E_LENGTH = 0x06,
    E_CODE_LENGTH = 0x07,
    E_CHIP_TIMING = 0x08,
    E_BAD_VALUE = 0x09,
    E_BUSY = 0x0A,
    E_NO_CODE = 0x0B,
    E_NOT_ARMED = 0x0C,
    E_CONFIG = 0x0D,
    E_EEPROM = 0x0E,
    E_OVERRUN = 0x0F,
    E_RX_OVERFLOW = 0x10
};

/* Device states (STATUS.state). */
enum { ST_NO_CODE = 0, ST_LOADED = 1, ST_ARMED = 2, ST_PLAYING = 3 };

/* CONFIGURE values. */
enum { MODE_SINGLE = 0, MODE_REPEAT = 1, MODE_CONTINUOUS = 2 };
enum { TRIG_LEVEL = 0, TRIG_PULSE = 1 };
enum { START_HOST = 0, START_EXTERNAL = 1 };
#define CFG_FLAG_DMD_PULSE 0x01u

/* DONE.result */
enum { DONE_COMPLETE = 0, DONE_ABORTED = 1, DONE_OVERRUN = 2 };

#define PROTO_INFO_LEN 34u
#define PROTO_STATUS_LEN 69u
#define PROTO_CONFIG_LEN 18u
#define PROTO_FIRED_LEN 6u
#define PROTO_DONE_LEN 9u
#define PROTO_ERROR_LEN 4u

/* --- little-endian helpers --------------------------------------------------------------- */
void proto_put_u16(uint8_t *p, uint16_t v);
void proto_put_u32(uint8_t *p, uint32_t v);
uint16_t proto_get_u16(const uint8_t *p);
uint32_t proto_get_u32(const uint8_t *p);

/* --- CRC-16/CCITT-FALSE ------------------------------------------------------------------- */
uint16_t proto_crc16_update(uint16_t crc, uint8_t byte);
uint16_t proto_crc16(const uint8_t *data, size_t n);

/* --- COBS ---------------------------------------------------------------------------------- */
/* Encodes n bytes into out (room for n + n/254 + 1 bytes); returns the encoded length. No
 * delimiter is appended. */
size_t proto_cobs_encode(const uint8_t *in, size_t n, uint8_t *out);
/* Decodes n bytes (no delimiter) into out (may equal in); returns the decoded length or -1 when
 * the input is not valid COBS (a zero byte, or a code byte that points past the end). */
int proto_cobs_decode(const uint8_t *in, size_t n, uint8_t *out);

/* --- frames -------------------------------------------------------------------------------- */
/* Builds type, seq, body and CRC, COBS-encodes them and appends the 0x00 delimiter. out must
 * hold body_len + 7 bytes (PROTO_MAX_WIRE for any packet). Returns the wire length. */
size_t proto_build_frame(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len,
                         uint8_t *out);

typedef struct {
    uint8_t type;
    uint8_t seq;
    const uint8_t *body; /* points into the receiver's buffer: valid until the next feed */
    uint8_t body_len;
} proto_packet_t;

typedef struct {
    uint8_t buf[PROTO_MAX_FRAME];
    uint8_t len;       /* bytes collected for the current frame */
    uint8_t skipping;  /* 1 after E_TOO_LONG: discard up to the next delimiter */
    uint32_t last_ms;  /* time of the last byte */
} proto_rx_t;

enum { RX_NONE = 0, RX_PACKET = 1, RX_ERROR = 2 };

void proto_rx_init(proto_rx_t *rx);
/* Feeds one byte received at now_ms. Returns RX_PACKET (pkt filled), RX_ERROR (*err set to a
 * frame-level error) or RX_NONE. A half frame older than PROTO_RX_TIMEOUT_MS is dropped first
 * (RX_ERROR with E_TIMEOUT; the byte then starts a new frame). */
int proto_rx_feed(proto_rx_t *rx, uint8_t byte, uint32_t now_ms, proto_packet_t *pkt,
                  uint8_t *err);
/* Call when no byte arrived: returns 1 (and drops the half frame) when it has timed out. */
int proto_rx_check_timeout(proto_rx_t *rx, uint32_t now_ms);

/* --- request bodies ------------------------------------------------------------------------ */
typedef struct {
    uint16_t n_chips;
    uint32_t chip_ns;
    const uint8_t *bits; /* ceil(n_chips / 8) bytes, MSB first */
} proto_load_t;

typedef struct {
    uint8_t mode;
    uint16_t repeats;
    uint32_t period_ns;
    uint32_t lead_ns;
    uint8_t trigger_style;
    uint32_t pulse_ns;
    uint8_t start_source;
    uint8_t flags;
} proto_config_t;

/* Each parser returns E_NONE or an error code, with *detail as documented in PROTOCOL.md. */
uint8_t proto_parse_load(const uint8_t *body, size_t len, proto_load_t *out, uint16_t *detail);
uint8_t proto_parse_config(const uint8_t *body, size_t len, proto_config_t *out,
                           uint16_t *detail);
void proto_config_defaults(proto_config_t *cfg);
void proto_config_encode(const proto_config_t *cfg, uint8_t *out /* PROTO_CONFIG_LEN */);

/* Maps a chip duration to Timer1's prescaler (8 or 64) and ticks; E_CHIP_TIMING when the
 * duration is out of range or not a multiple of the step. */
uint8_t proto_chip_timing(uint32_t chip_ns, uint8_t *prescaler, uint32_t *ticks);
/* Nanoseconds per timer tick for a prescaler at 16 MHz. */
uint32_t proto_tick_ns(uint8_t prescaler);

#ifdef __cplusplus
}
#endif

#endif
