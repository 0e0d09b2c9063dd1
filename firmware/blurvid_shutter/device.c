/* The shutter controller's protocol logic; see device.h and PROTOCOL.md. */
#include "device.h"

#include "sha256.h"

#define EE_MAGIC 0x5642u /* "BV" */
#define EE_VERSION 1u
#define EE_HEADER 9u /* magic u16, version u8, n_chips u16, chip_ns u32 */
#define EVENT_WIRE_MAX 48u

static uint8_t event_wire[EVENT_WIRE_MAX];

/* ------------------------------------------------------------------------------------------ */
/* output                                                                                     */

static void send_event(uint8_t type, uint8_t seq, const uint8_t *body, uint8_t n)
{
    /* Events carry at most PROTO_INFO_LEN bytes: the frame fits EVENT_WIRE_MAX. */
    size_t len = proto_build_frame(type, seq, body, n, event_wire);
    hal_write(event_wire, len);
}

/* A reply to the request being executed: kept for duplicate suppression. */
static void send_reply(device_t *d, uint8_t type, uint8_t seq, const uint8_t *body, uint8_t n)
{
    d->last_reply_len = (uint8_t)proto_build_frame(type, seq, body, n, d->last_reply);
    hal_write(d->last_reply, d->last_reply_len);
}

static void reply_error(device_t *d, uint8_t seq, uint8_t code, uint8_t request, uint16_t detail)
{
    uint8_t body[PROTO_ERROR_LEN];
    body[0] = code;
    body[1] = request;
    proto_put_u16(body + 2, detail);
    d->last_error = code;
    send_reply(d, MSG_ERROR, seq, body, sizeof body);
}

void device_link_error(device_t *d, uint8_t code)
{
    uint8_t body[PROTO_ERROR_LEN] = {code, 0, 0, 0};
    d->last_error = code;
    send_event(MSG_ERROR, 0, body, sizeof body);
}

/* ------------------------------------------------------------------------------------------ */
/* code and plan                                                                              */

static uint8_t chip_bit(const uint8_t *bits, uint16_t k)
{
    return (uint8_t)((bits[k >> 3] >> (7u - (k & 7u))) & 1u);
}

static void hash_code(device_t *d)
{
    sha256_t s;
    sha256_init(&s);
    for (uint16_t k = 0; k < d->n_chips; k++)
        sha256_byte(&s, (uint8_t)('0' + chip_bit(d->bits, k)));
    sha256_final(&s, d->sha);
}

static uint8_t set_code(device_t *d, const proto_load_t *load)
{
    uint8_t pre;
    uint32_t ticks;
    if (proto_chip_timing(load->chip_ns, &pre, &ticks) != E_NONE)
        return E_CHIP_TIMING;
    uint16_t nbytes = (uint16_t)((load->n_chips + 7u) / 8u);
    for (uint16_t i = 0; i < PROTO_MAX_BITS_BYTES; i++)
        d->bits[i] = i < nbytes ? load->bits[i] : 0;
    d->n_chips = load->n_chips;
    d->chip_ns = load->chip_ns;
    d->prescaler = pre;
    d->chip_ticks = (uint16_t)ticks;
    hash_code(d);
    d->has_code = 1;
    return E_NONE;
}

static uint32_t ceil_div(uint32_t a, uint32_t b)
{
    return (a + b - 1u) / b;
}

/* Derives the engine plan from the code and the configuration. */
static uint8_t make_plan(const device_t *d, engine_plan_t *p)
{
    if (!d->has_code)
        return E_NO_CODE;
    const proto_config_t *c = &d->cfg;
    uint32_t tick = proto_tick_ns(d->prescaler);
    uint32_t min_seg = ceil_div(PROTO_CHIP_NS_MIN, tick);
    uint32_t lead = c->lead_ns / tick;
    if (lead < min_seg || lead > 65535ul)
        return E_CONFIG;
    uint32_t pulse = 0;
    if (c->trigger_style == TRIG_PULSE) {
        pulse = c->pulse_ns / tick;
        if (pulse == 0)
            return E_CONFIG;
        if (pulse >= lead)
            pulse = lead;
        else if (pulse < min_seg || lead - pulse < min_seg)
            return E_CONFIG;
    }
    uint32_t code = (uint32_t)d->n_chips * d->chip_ticks;
    uint32_t gap = 0;
    uint16_t playbacks = 1;
    if (c->mode != MODE_SINGLE) {
        uint32_t min_gap = ceil_div(PROTO_MIN_GAP_NS, tick);
        if (c->period_ns == 0) {
            gap = min_gap;
        } else {
            uint32_t period = c->period_ns / tick;
            if (period < lead + code + min_gap)
                return E_CONFIG;
            gap = period - lead - code;
        }
        playbacks = c->mode == MODE_REPEAT ? c->repeats : 0;
    }
    p->bits = d->bits;
    p->n_chips = d->n_chips;
    p->prescaler = d->prescaler;
    p->chip_ticks = d->chip_ticks;
    p->lead_ticks = (uint16_t)lead;
    p->pulse_ticks = (uint16_t)pulse;
    p->gap_ticks = gap;
    p->playbacks = playbacks;
    p->dmd_pulse = (c->flags & CFG_FLAG_DMD_PULSE) ? 1 : 0;
    return E_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* EEPROM record: header, CONFIGURE body, code bits, CRC-16 of everything before it           */

static uint16_t ee_crc(uint16_t crc, const uint8_t *b, uint16_t n)
{
    for (uint16_t i = 0; i < n; i++)
        crc = proto_crc16_update(crc, b[i]);
    return crc;
}

/* Reads and checks the record; fills load and cfg (the bits into buf) when valid. */
static uint8_t ee_read(proto_load_t *load, proto_config_t *cfg, uint8_t *buf)
{
    uint8_t hdr[EE_HEADER], cfgb[PROTO_CONFIG_LEN], crcb[2];
    hal_eeprom_read(0, hdr, EE_HEADER);
    if (proto_get_u16(hdr) != EE_MAGIC || hdr[2] != EE_VERSION)
        return 0;
    uint16_t n = proto_get_u16(hdr + 3);
    if (n == 0 || n > PROTO_MAX_CHIPS)
        return 0;
    uint16_t nbytes = (uint16_t)((n + 7u) / 8u);
    hal_eeprom_read(EE_HEADER, cfgb, PROTO_CONFIG_LEN);
    hal_eeprom_read(EE_HEADER + PROTO_CONFIG_LEN, buf, nbytes);
    hal_eeprom_read((uint16_t)(EE_HEADER + PROTO_CONFIG_LEN + nbytes), crcb, 2);
    uint16_t crc = ee_crc(0xFFFFu, hdr, EE_HEADER);
    crc = ee_crc(crc, cfgb, PROTO_CONFIG_LEN);
    crc = ee_crc(crc, buf, nbytes);
    if (crc != proto_get_u16(crcb))
        return 0;
    uint16_t detail;
    load->n_chips = n;
    load->chip_ns = proto_get_u32(hdr + 5);
    load->bits = buf;
    uint8_t pre;
    uint32_t ticks;
    if (proto_chip_timing(load->chip_ns, &pre, &ticks) != E_NONE)
        return 0;
    if (proto_parse_config(cfgb, PROTO_CONFIG_LEN, cfg, &detail) != E_NONE)
        return 0;
    return 1;
}

static uint8_t ee_save(device_t *d)
{
    uint8_t hdr[EE_HEADER], cfgb[PROTO_CONFIG_LEN], crcb[2];
    uint16_t nbytes = (uint16_t)((d->n_chips + 7u) / 8u);
    proto_put_u16(hdr, EE_MAGIC);
    hdr[2] = EE_VERSION;
    proto_put_u16(hdr + 3, d->n_chips);
    proto_put_u32(hdr + 5, d->chip_ns);
    proto_config_encode(&d->cfg, cfgb);
    uint16_t crc = ee_crc(0xFFFFu, hdr, EE_HEADER);
    crc = ee_crc(crc, cfgb, PROTO_CONFIG_LEN);
    crc = ee_crc(crc, d->bits, nbytes);
    proto_put_u16(crcb, crc);
    hal_eeprom_write(0, hdr, EE_HEADER);
    hal_eeprom_write(EE_HEADER, cfgb, PROTO_CONFIG_LEN);
    hal_eeprom_write(EE_HEADER + PROTO_CONFIG_LEN, d->bits, nbytes);
    hal_eeprom_write((uint16_t)(EE_HEADER + PROTO_CONFIG_LEN + nbytes), crcb, 2);
    /* verify by reading back */
    proto_load_t load;
    proto_config_t cfg;
    uint8_t back[PROTO_MAX_BITS_BYTES];
    if (!ee_read(&load, &cfg, back) || load.n_chips != d->n_chips || load.chip_ns != d->chip_ns)
        return E_EEPROM;
    for (uint16_t i = 0; i < nbytes; i++)
        if (back[i] != d->bits[i])
            return E_EEPROM;
    return E_NONE;
}

static void ee_erase(void)
{
    uint8_t blank[EE_HEADER] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
    hal_eeprom_write(0, blank, EE_HEADER);
}

/* ------------------------------------------------------------------------------------------ */
/* bodies                                                                                     */

static void info_body(const device_t *d, uint8_t *b)
{
    b[0] = 'B';
    b[1] = 'V';
    b[2] = 'S';
    b[3] = 'H';
    b[4] = PROTO_VERSION;
    b[5] = FW_MAJOR;
    b[6] = FW_MINOR;
    b[7] = FW_PATCH;
    b[8] = BOARD_ID;
    proto_put_u16(b + 9, PROTO_MAX_CHIPS);
    proto_put_u32(b + 11, PROTO_CHIP_NS_MIN);
    proto_put_u32(b + 15, PROTO_CHIP_NS_MAX);
    proto_put_u32(b + 19, PROTO_FINE_MAX_NS);
    proto_put_u16(b + 23, (uint16_t)PROTO_FINE_STEP_NS);
    proto_put_u16(b + 25, (uint16_t)PROTO_COARSE_STEP_NS);
    proto_put_u32(b + 27, 16000000ul);
    b[31] = d->reset_cause;
    b[32] = d->eeprom_restored;
    b[33] = 0;
}

static uint8_t state_of(const device_t *d)
{
    if (hal_engine_running())
        return ST_PLAYING;
    if (d->armed)
        return ST_ARMED;
    return d->has_code ? ST_LOADED : ST_NO_CODE;
}

static void status_body(const device_t *d, uint8_t *b)
{
    for (uint8_t i = 0; i < PROTO_STATUS_LEN; i++)
        b[i] = 0;
    b[0] = state_of(d);
    b[1] = d->last_error;
    proto_put_u32(b + 2, hal_engine_trigger_count());
    proto_config_t shown = d->cfg;
    if (d->has_code) {
        proto_put_u16(b + 6, d->n_chips);
        proto_put_u32(b + 8, d->chip_ns);
        b[12] = d->prescaler;
        proto_put_u32(b + 13, d->chip_ticks);
        for (uint8_t i = 0; i < 32; i++)
            b[17 + i] = d->sha[i];
        engine_plan_t p;
        if (make_plan(d, &p) == E_NONE) {
            uint32_t tick = proto_tick_ns(d->prescaler);
            shown.lead_ns = p.lead_ticks * tick;
            if (shown.trigger_style == TRIG_PULSE)
                shown.pulse_ns = p.pulse_ticks * tick;
            if (shown.mode != MODE_SINGLE)
                shown.period_ns =
                    (p.lead_ticks + (uint32_t)p.n_chips * p.chip_ticks + p.gap_ticks) * tick;
        }
    }
    proto_config_encode(&shown, b + 49);
    b[67] = d->eeprom_valid ? 1u : 0u;
}

static void reply_status(device_t *d, uint8_t type, uint8_t seq)
{
    uint8_t b[PROTO_STATUS_LEN];
    status_body(d, b);
    send_reply(d, (uint8_t)(type | MSG_REPLY), seq, b, PROTO_STATUS_LEN);
}

/* ------------------------------------------------------------------------------------------ */
/* engine events                                                                              */

static void report_done(device_t *d, const engine_report_t *r)
{
    uint8_t b[PROTO_DONE_LEN];
    proto_put_u32(b, r->first_index);
    proto_put_u32(b + 4, r->played);
    b[8] = r->result;
    if (r->result == DONE_OVERRUN) {
        d->last_error = E_OVERRUN;
        d->armed = 0;
        hal_engine_disarm();
    }
    send_event(MSG_DONE, r->external ? 0 : d->fire_seq, b, sizeof b);
}

void device_poll(device_t *d)
{
    engine_report_t r;
    if (hal_engine_poll(&r))
        report_done(d, &r);
    if (proto_rx_check_timeout(&d->rx, hal_now_ms()))
        device_link_error(d, E_TIMEOUT);
}

/* ------------------------------------------------------------------------------------------ */
/* requests                                                                                   */

static void handle(device_t *d, const proto_packet_t *pk)
{
    uint8_t t = pk->type, seq = pk->seq;
    uint16_t crc = proto_get_u16(pk->body + pk->body_len);
    if (d->last_reply_len && t == d->last_type && seq == d->last_seq && crc == d->last_crc) {
        hal_write(d->last_reply, d->last_reply_len); /* a retry: same bytes, same answer */
        return;
    }
    d->last_type = t;
    d->last_seq = seq;
    d->last_crc = crc;
    d->last_reply_len = 0;

    uint8_t err = E_NONE;
    uint16_t detail = 0;
    uint8_t busy = d->armed || hal_engine_running();
    uint8_t empty = pk->body_len == 0;
    switch (t) {
    case MSG_GET_INFO: {
        if (!empty) {
            err = E_LENGTH;
            break;
        }
        uint8_t b[PROTO_INFO_LEN];
        info_body(d, b);
        send_reply(d, MSG_GET_INFO | MSG_REPLY, seq, b, PROTO_INFO_LEN);
        return;
    }
    case MSG_GET_STATUS:
        if (!empty)
            err = E_LENGTH;
        break;
    case MSG_LOAD_CODE: {
        proto_load_t load;
        err = proto_parse_load(pk->body, pk->body_len, &load, &detail);
        if (err == E_NONE && busy)
            err = E_BUSY;
        if (err == E_NONE)
            err = set_code(d, &load);
        break;
    }
    case MSG_CONFIGURE: {
        proto_config_t cfg;
        err = proto_parse_config(pk->body, pk->body_len, &cfg, &detail);
        if (err == E_NONE && busy)
            err = E_BUSY;
        if (err == E_NONE)
            d->cfg = cfg;
        break;
    }
    case MSG_ARM:
        if (!empty)
            err = E_LENGTH;
        else if (hal_engine_running())
            err = E_BUSY;
        else if ((err = make_plan(d, &d->plan)) == E_NONE) {
            d->armed = 1;
            if (d->cfg.start_source == START_EXTERNAL)
                hal_engine_arm_external(&d->plan);
        }
        break;
    case MSG_DISARM: {
        if (!empty) {
            err = E_LENGTH;
            break;
        }
        d->armed = 0;
        hal_engine_disarm();
        /* The run stops at the next segment boundary (at most one chip, 262 ms). */
        uint32_t t0 = hal_now_ms();
        while (hal_engine_running() && (uint32_t)(hal_now_ms() - t0) < 600u)
            ;
        device_poll(d);
        break;
    }
    case MSG_FIRE: {
        if (!empty) {
            err = E_LENGTH;
            break;
        }
        if (hal_engine_running()) {
            err = E_BUSY;
            break;
        }
        if (!d->armed || d->cfg.start_source != START_HOST) {
            err = d->has_code ? E_NOT_ARMED : E_NO_CODE;
            break;
        }
        uint8_t b[PROTO_FIRED_LEN];
        proto_put_u32(b, hal_engine_trigger_count());
        proto_put_u16(b + 4, d->plan.playbacks);
        d->fire_seq = seq;
        hal_engine_start(&d->plan);
        send_reply(d, MSG_FIRE | MSG_REPLY, seq, b, sizeof b);
        return;
    }
    case MSG_SAVE:
        if (!empty)
            err = E_LENGTH;
        else if (hal_engine_running())
            err = E_BUSY;
        else if (!d->has_code)
            err = E_NO_CODE;
        else {
            err = ee_save(d);
            d->eeprom_valid = err == E_NONE;
        }
        break;
    case MSG_ERASE:
        if (!empty)
            err = E_LENGTH;
        else if (hal_engine_running())
            err = E_BUSY;
        else {
            ee_erase();
            d->eeprom_valid = 0;
        }
        break;
    case MSG_PING:
        if (pk->body_len > PROTO_PING_MAX) {
            err = E_LENGTH;
            detail = PROTO_PING_MAX;
            break;
        }
        send_reply(d, MSG_PING | MSG_REPLY, seq, pk->body, pk->body_len);
        return;
    default:
        err = E_UNKNOWN_TYPE;
        break;
    }
    if (err != E_NONE)
        reply_error(d, seq, err, t, detail);
    else
        reply_status(d, t, seq);
}

void device_rx_byte(device_t *d, uint8_t byte)
{
    proto_packet_t pk;
    uint8_t err;
    int r = proto_rx_feed(&d->rx, byte, hal_now_ms(), &pk, &err);
    if (r == RX_PACKET)
        handle(d, &pk);
    else if (r == RX_ERROR)
        device_link_error(d, err);
}

/* ------------------------------------------------------------------------------------------ */
/* boot                                                                                       */

void device_init(device_t *d)
{
    uint8_t *raw = (uint8_t *)d;
    for (size_t i = 0; i < sizeof *d; i++)
        raw[i] = 0;
    proto_rx_init(&d->rx);
    proto_config_defaults(&d->cfg);
    d->reset_cause = hal_reset_cause();

    proto_load_t load;
    proto_config_t cfg;
    uint8_t buf[PROTO_MAX_BITS_BYTES];
    if (ee_read(&load, &cfg, buf)) {
        d->eeprom_valid = 1;
        if (set_code(d, &load) == E_NONE) {
            d->cfg = cfg;
            d->eeprom_restored = 1;
        }
    }

    static const char banner[] = "blurvid-shutter " FW_VERSION_STRING " protocol 1\r\n";
    hal_write((const uint8_t *)banner, sizeof banner - 1u);
    uint8_t zero = 0;
    hal_write(&zero, 1);
    uint8_t b[PROTO_INFO_LEN];
    info_body(d, b);
    send_event(MSG_READY, 0, b, PROTO_INFO_LEN);
}
