#include "fake_hal.h"

#include <string.h>

#include "proto.h"

fake_hal_t fake;

void fake_reset(void)
{
    uint8_t ee[sizeof fake.eeprom];
    memcpy(ee, fake.eeprom, sizeof ee);
    memset(&fake, 0, sizeof fake);
    memcpy(fake.eeprom, ee, sizeof ee);
}

void fake_erase_eeprom(void)
{
    memset(fake.eeprom, 0xFF, sizeof fake.eeprom);
}

void hal_write(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fake.out_len < FAKE_OUT_MAX)
            fake.out[fake.out_len++] = data[i];
}

uint32_t hal_now_ms(void)
{
    return fake.now_ms;
}

static void start(uint8_t external)
{
    fake.running = 1;
    fake.abort_requested = 0;
    fake.run_first = fake.trigger_count;
    fake.trigger_count++; /* the first playback starts with the lead */
    fake.report.external = external;
}

void hal_engine_start(const engine_plan_t *plan)
{
    fake.plan = *plan;
    fake.armed_ext = 0;
    fake.starts++;
    start(0);
}

void hal_engine_arm_external(const engine_plan_t *plan)
{
    fake.plan = *plan;
    fake.armed_ext = 1;
}

void hal_engine_disarm(void)
{
    fake.armed_ext = 0;
    if (fake.running) {
        /* the fake stops at once (the AVR at the next boundary) */
        fake_finish_run(fake.trigger_count - fake.run_first, DONE_ABORTED);
    }
}

uint8_t hal_engine_running(void)
{
    return fake.running;
}

uint32_t hal_engine_trigger_count(void)
{
    return fake.trigger_count;
}

uint8_t hal_engine_poll(engine_report_t *r)
{
    if (!fake.report_ready)
        return 0;
    *r = fake.report;
    fake.report_ready = 0;
    return 1;
}

void fake_finish_run(uint32_t played, uint8_t result)
{
    if (!fake.running)
        return;
    fake.trigger_count = fake.run_first + played;
    fake.report.first_index = fake.run_first;
    fake.report.played = played;
    fake.report.result = result;
    fake.report_ready = 1;
    fake.running = 0;
}

void fake_trigger_in(void)
{
    if (fake.armed_ext && !fake.running)
        start(1);
}

void hal_eeprom_read(uint16_t addr, uint8_t *buf, uint16_t n)
{
    for (uint16_t i = 0; i < n; i++)
        buf[i] = (uint32_t)addr + i < sizeof fake.eeprom ? fake.eeprom[addr + i] : 0xFF;
}

void hal_eeprom_write(uint16_t addr, const uint8_t *buf, uint16_t n)
{
    for (uint16_t i = 0; i < n; i++)
        if ((uint32_t)addr + i < sizeof fake.eeprom)
            fake.eeprom[addr + i] = buf[i];
}

uint8_t hal_reset_cause(void)
{
    return 1;
}
