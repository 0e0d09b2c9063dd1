/* libFuzzer target: arbitrary bytes into the device's receiver and request handling.
 *
 * Input layout: each input byte is fed to the device; a byte after 0xFE is instead a control
 * code that advances time (half-frame timeouts), ends a running playback or pulses TRIG_IN, so
 * the fuzzer reaches the timing paths too. Invariants checked after every input:
 *   - everything the device wrote decodes as valid frames (after the boot banner line);
 *   - every reply is a known type with the exact body length of its type;
 *   - the state stays consistent with the fake engine.
 * Build and run: make -C firmware fuzz FUZZ_SECONDS=20 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "fake_hal.h"
#include "proto.h"

static device_t dev;

static void check_output(void)
{
    proto_rx_t rx;
    proto_rx_init(&rx);
    size_t i = 0;
    /* the banner: printable text up to the first 0x00 */
    while (i < fake.out_len && fake.out[i] != 0)
        i++;
    i++;
    for (; i < fake.out_len; i++) {
        proto_packet_t pk;
        uint8_t e;
        int r = proto_rx_feed(&rx, fake.out[i], 0, &pk, &e);
        if (r == RX_ERROR) {
            fprintf(stderr, "device wrote a bad frame (error %u)\n", e);
            abort();
        }
        if (r != RX_PACKET)
            continue;
        size_t want;
        switch (pk.type) {
        case MSG_ERROR: want = PROTO_ERROR_LEN; break;
        case MSG_READY:
        case MSG_GET_INFO | MSG_REPLY: want = PROTO_INFO_LEN; break;
        case MSG_DONE: want = PROTO_DONE_LEN; break;
        case MSG_FIRE | MSG_REPLY: want = PROTO_FIRED_LEN; break;
        case MSG_PING | MSG_REPLY: want = pk.body_len <= PROTO_PING_MAX ? pk.body_len : 0; break;
        case MSG_GET_STATUS | MSG_REPLY:
        case MSG_LOAD_CODE | MSG_REPLY:
        case MSG_CONFIGURE | MSG_REPLY:
        case MSG_ARM | MSG_REPLY:
        case MSG_DISARM | MSG_REPLY:
        case MSG_SAVE | MSG_REPLY:
        case MSG_ERASE | MSG_REPLY: want = PROTO_STATUS_LEN; break;
        default:
            fprintf(stderr, "device wrote unknown type 0x%02x\n", pk.type);
            abort();
        }
        if (pk.body_len != want) {
            fprintf(stderr, "type 0x%02x with %u bytes\n", pk.type, pk.body_len);
            abort();
        }
        if (want == PROTO_STATUS_LEN) {
            uint8_t st = pk.body[0];
            uint16_t n = proto_get_u16(pk.body + 6);
            if (st > ST_PLAYING || (st == ST_NO_CODE) != (n == 0) || n > PROTO_MAX_CHIPS)
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fake_reset();
    if (size && (data[0] & 1))
        fake_erase_eeprom(); /* half the runs boot with whatever the last run saved */
    device_init(&dev);
    for (size_t i = 0; i < size; i++) {
        if (data[i] == 0xFE && i + 1 < size) {
            uint8_t c = data[++i];
            if (c < 0x80)
                fake.now_ms += c;
            else if (c < 0xC0)
                fake_finish_run(1u + (c & 7u), (uint8_t)((c >> 3) % 3u));
            else
                fake_trigger_in();
            device_poll(&dev);
            continue;
        }
        device_rx_byte(&dev, data[i]);
        device_poll(&dev);
        if (fake.running && !dev.armed && fake.report_ready == 0 && !fake.armed_ext) {
            /* a run with neither host arming nor external arming: impossible */
            abort();
        }
    }
    check_output();
    return 0;
}
