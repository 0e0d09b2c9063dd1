/* The shutter controller's protocol logic: requests in, replies and events out, playback plans
 * to the engine. Hardware-free (see hal.h), so the host tests and the fuzzer run it as is. */
#ifndef BVSH_DEVICE_H
#define BVSH_DEVICE_H

#include <stdint.h>

#include "hal.h"
#include "proto.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FW_MAJOR 1
#define FW_MINOR 0
#define FW_PATCH 0
#define FW_VERSION_STRING "1.0.0"

#ifndef BOARD_ID
#define BOARD_ID 1 /* ATmega328P: Uno, Nano */
#endif

typedef struct {
    proto_rx_t rx;
    /* loaded code */
    uint8_t has_code;
    uint16_t n_chips;
    uint32_t chip_ns;
    uint8_t prescaler;
    uint16_t chip_ticks;
    uint8_t bits[PROTO_MAX_BITS_BYTES];
    uint8_t sha[32];
    /* configuration and the plan derived from it at ARM */
    proto_config_t cfg;
    uint8_t armed;
    engine_plan_t plan;
    /* status */
    uint8_t last_error;
    uint8_t eeprom_valid;
    uint8_t eeprom_restored;
    uint8_t reset_cause;
    /* duplicate suppression: the last executed request and its reply */
    uint8_t last_type;
    uint8_t last_seq;
    uint16_t last_crc;
    uint8_t last_reply_len;
    uint8_t last_reply[PROTO_MAX_WIRE];
    uint8_t fire_seq; /* seq of the FIRE whose run is playing (0 for external starts) */
} device_t;

/* Boot: restore EEPROM, then send the banner line and the READY frame. */
void device_init(device_t *d);
/* One received byte. */
void device_rx_byte(device_t *d, uint8_t byte);
/* Call often from the main loop: half-frame timeouts and DONE events. */
void device_poll(device_t *d);
/* Report a link-level error found outside the parser (e.g. E_RX_OVERFLOW). */
void device_link_error(device_t *d, uint8_t code);

#ifdef __cplusplus
}
#endif

#endif
