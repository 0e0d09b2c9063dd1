/* A fake hardware layer for host builds of device.c (unit tests and the fuzzer). */
#ifndef BVSH_FAKE_HAL_H
#define BVSH_FAKE_HAL_H

#include <stddef.h>
#include <stdint.h>

#include "hal.h"

#define FAKE_OUT_MAX 65536u

typedef struct {
    uint8_t out[FAKE_OUT_MAX]; /* everything the device wrote */
    size_t out_len;
    uint32_t now_ms;
    uint8_t eeprom[1024];
    /* engine */
    uint8_t running;
    uint8_t armed_ext;
    uint8_t abort_requested;
    uint32_t trigger_count;
    uint32_t starts; /* hal_engine_start calls */
    engine_plan_t plan;
    uint8_t report_ready;
    engine_report_t report;
    uint32_t run_first;
} fake_hal_t;

extern fake_hal_t fake;

void fake_reset(void);  /* clears everything but the EEPROM (a reboot) */
void fake_erase_eeprom(void);
/* Ends the running run: `played` playbacks, with `result`. */
void fake_finish_run(uint32_t played, uint8_t result);
/* External edge on TRIG_IN. */
void fake_trigger_in(void);

#endif
