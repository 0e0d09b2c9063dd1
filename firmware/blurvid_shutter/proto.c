/* Framing and message layouts of the blurvid shutter protocol; see proto.h and PROTOCOL.md. */
#include "proto.h"

void proto_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void proto_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

uint16_t proto_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

uint32_t proto_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

uint16_t proto_crc16_update(uint16_t crc, uint8_t byte)
{
    crc ^= (uint16_t)byte << 8;
    for (uint8_t i = 0; i < 8; i++)
        crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    return crc;
}

uint16_t proto_crc16(const uint8_t *data, size_t n)
{
    uint16_t crc = 0xFFFFu;
    for (size_t i = 0; i < n; i++)
        crc = proto_crc16_update(crc, data[i]);
    return crc;
}

size_t proto_cobs_encode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t code_at = 0; /* where the current block's code byte goes */
    size_t o = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            if (++code == 0xFF) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

int proto_cobs_decode(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0)
            return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (i >= n || in[i] == 0)
                return -1;
            out[o++] = in[i++];
        }
        /* A block shorter than 0xFF ends in an implied zero, except at the very end. */
        if (code != 0xFF && i < n)
            out[o++] = 0;
    }
    return (int)o;
}

size_t proto_build_frame(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len,
                         uint8_t *out)
{
    /* Assemble the packet at out + 2, then encode in place towards the front: the encoder
     * writes input byte i at most at i + 2 (two code bytes for packets up to 508 bytes), which
     * is never ahead of what it still has to read. out needs body_len + 4 + 3 bytes. */
    uint8_t *pkt = out + 2;
    pkt[0] = type;
    pkt[1] = seq;
    for (size_t i = 0; i < body_len; i++)
        pkt[2 + i] = body[i];
    uint16_t crc = proto_crc16(pkt, body_len + 2u);
    proto_put_u16(pkt + 2 + body_len, crc);
    size_t len = proto_cobs_encode(pkt, body_len + 4u, out);
    out[len++] = 0;
    return len;
}

void proto_rx_init(proto_rx_t *rx)
{
    rx->len = 0;
    rx->skipping = 0;
    rx->last_ms = 0;
}

int proto_rx_check_timeout(proto_rx_t *rx, uint32_t now_ms)
{
    if ((rx->len || rx->skipping) && (uint32_t)(now_ms - rx->last_ms) > PROTO_RX_TIMEOUT_MS) {
        int had_bytes = rx->len != 0;
        rx->len = 0;
        rx->skipping = 0;
        return had_bytes;
    }
    return 0;
}

int proto_rx_feed(proto_rx_t *rx, uint8_t byte, uint32_t now_ms, proto_packet_t *pkt,
                  uint8_t *err)
{
    int timed_out = proto_rx_check_timeout(rx, now_ms);
    rx->last_ms = now_ms;
    if (timed_out) {
        /* Keep this byte: it starts the next frame. */
        if (byte != 0)
            rx->buf[rx->len++] = byte;
        *err = E_TIMEOUT;
        return RX_ERROR;
    }
    if (byte == 0) {
        uint8_t n = rx->len;
        rx->len = 0;
        if (rx->skipping) {
            rx->skipping = 0;
            return RX_NONE;
        }
        if (n == 0)
            return RX_NONE; /* empty frame */
        int m = proto_cobs_decode(rx->buf, n, rx->buf);
        if (m < 0) {
            *err = E_FRAMING;
            return RX_ERROR;
        }
        if (m < 4 || proto_crc16(rx->buf, (size_t)m - 2u) != proto_get_u16(rx->buf + m - 2)) {
            *err = E_CRC;
            return RX_ERROR;
        }
        pkt->type = rx->buf[0];
        pkt->seq = rx->buf[1];
        pkt->body = rx->buf + 2;
        pkt->body_len = (uint8_t)(m - 4);
        return RX_PACKET;
    }
    if (rx->skipping)
        return RX_NONE;
    if (rx->len >= PROTO_MAX_FRAME) {
        rx->len = 0;
        rx->skipping = 1;
        *err = E_TOO_LONG;
        return RX_ERROR;
    }
    rx->buf[rx->len++] = byte;
    return RX_NONE;
}

uint8_t proto_chip_timing(uint32_t chip_ns, uint8_t *prescaler, uint32_t *ticks)
{
    if (chip_ns < PROTO_CHIP_NS_MIN || chip_ns > PROTO_CHIP_NS_MAX)
        return E_CHIP_TIMING;
    if (chip_ns <= PROTO_FINE_MAX_NS) {
        if (chip_ns % PROTO_FINE_STEP_NS)
            return E_CHIP_TIMING;
        *prescaler = 8;
        *ticks = chip_ns / PROTO_FINE_STEP_NS;
    } else {
        if (chip_ns % PROTO_COARSE_STEP_NS)
            return E_CHIP_TIMING;
        *prescaler = 64;
        *ticks = chip_ns / PROTO_COARSE_STEP_NS;
    }
    return E_NONE;
}

uint32_t proto_tick_ns(uint8_t prescaler)
{
    return prescaler == 64 ? PROTO_COARSE_STEP_NS : PROTO_FINE_STEP_NS;
}

uint8_t proto_parse_load(const uint8_t *body, size_t len, proto_load_t *out, uint16_t *detail)
{
    *detail = 0;
    if (len < 6) {
        *detail = 6;
        return E_LENGTH;
    }
    uint16_t n = proto_get_u16(body);
    if (n == 0 || n > PROTO_MAX_CHIPS) {
        *detail = PROTO_MAX_CHIPS;
        return E_CODE_LENGTH;
    }
    size_t nbytes = (n + 7u) / 8u;
    if (len != 6u + nbytes) {
        *detail = (uint16_t)(6u + nbytes);
        return E_LENGTH;
    }
    uint32_t chip_ns = proto_get_u32(body + 2);
    uint8_t pre;
    uint32_t ticks;
    if (proto_chip_timing(chip_ns, &pre, &ticks) != E_NONE)
        return E_CHIP_TIMING;
    const uint8_t *bits = body + 6;
    uint8_t unused = (uint8_t)(nbytes * 8u - n);
    if (unused && (bits[nbytes - 1] & (uint8_t)((1u << unused) - 1u))) {
        *detail = (uint16_t)(6u + nbytes - 1u);
        return E_BAD_VALUE;
    }
    uint8_t any = 0;
    for (size_t i = 0; i < nbytes; i++)
        any |= bits[i];
    if (!any) {
        *detail = 6;
        return E_BAD_VALUE;
    }
    out->n_chips = n;
    out->chip_ns = chip_ns;
    out->bits = bits;
    return E_NONE;
}

void proto_config_defaults(proto_config_t *cfg)
{
    cfg->mode = MODE_SINGLE;
    cfg->repeats = 1;
    cfg->period_ns = 0;
    cfg->lead_ns = 100000ul;
    cfg->trigger_style = TRIG_LEVEL;
    cfg->pulse_ns = 10000ul;
    cfg->start_source = START_HOST;
    cfg->flags = CFG_FLAG_DMD_PULSE;
}

void proto_config_encode(const proto_config_t *cfg, uint8_t *out)
{
    out[0] = cfg->mode;
    proto_put_u16(out + 1, cfg->repeats);
    proto_put_u32(out + 3, cfg->period_ns);
    proto_put_u32(out + 7, cfg->lead_ns);
    out[11] = cfg->trigger_style;
    proto_put_u32(out + 12, cfg->pulse_ns);
    out[16] = cfg->start_source;
    out[17] = cfg->flags;
}

uint8_t proto_parse_config(const uint8_t *body, size_t len, proto_config_t *out, uint16_t *detail)
{
    *detail = 0;
    if (len != PROTO_CONFIG_LEN) {
        *detail = PROTO_CONFIG_LEN;
        return E_LENGTH;
    }
    proto_config_t c;
    c.mode = body[0];
    c.repeats = proto_get_u16(body + 1);
    c.period_ns = proto_get_u32(body + 3);
    c.lead_ns = proto_get_u32(body + 7);
    c.trigger_style = body[11];
    c.pulse_ns = proto_get_u32(body + 12);
    c.start_source = body[16];
    c.flags = body[17];
    uint16_t bad = 0xFFFF;
    if (c.mode > MODE_CONTINUOUS)
        bad = 0;
    else if (c.mode == MODE_REPEAT && c.repeats == 0)
        bad = 1;
    else if (c.lead_ns < PROTO_LEAD_NS_MIN || c.lead_ns > PROTO_FINE_MAX_NS)
        bad = 7;
    else if (c.trigger_style > TRIG_PULSE)
        bad = 11;
    else if (c.trigger_style == TRIG_PULSE &&
             (c.pulse_ns < PROTO_PULSE_NS_MIN || c.pulse_ns > c.lead_ns))
        bad = 12;
    else if (c.start_source > START_EXTERNAL)
        bad = 16;
    else if (c.flags & (uint8_t)~CFG_FLAG_DMD_PULSE)
        bad = 17;
    if (bad != 0xFFFF) {
        *detail = bad;
        return E_BAD_VALUE;
    }
    *out = c;
    return E_NONE;
}
