/* What the protocol logic (device.c) needs from the hardware. The AVR build implements it in
 * hal_avr.c (Timer1 engine, UART, EEPROM); the host tests and the fuzzer implement a fake. */
#ifndef BVSH_HAL_H
#define BVSH_HAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One armed playback plan, in timer ticks of `prescaler` (see PROTOCOL.md, chip timing). */
typedef struct {
    const uint8_t *bits;  /* chip k = bit 7 - k%8 of bits[k/8] */
    uint16_t n_chips;
    uint8_t prescaler;    /* 8 or 64 */
    uint16_t chip_ticks;  /* 20..65535 */
    uint16_t lead_ticks;  /* camera trigger rise -> chip 0 */
    uint16_t pulse_ticks; /* 0: level style; else pulse length (<= lead_ticks) */
    uint32_t gap_ticks;   /* end of the code -> start of the next lead (repeat, continuous) */
    uint16_t playbacks;   /* per trigger; 0 = continuous */
    uint8_t dmd_pulse;    /* pulse DMD_TRIG at every chip start */
} engine_plan_t;

typedef struct {
    uint32_t first_index; /* trigger index of the run's first playback */
    uint32_t played;      /* playbacks started in the run */
    uint8_t result;       /* DONE_COMPLETE / DONE_ABORTED / DONE_OVERRUN */
    uint8_t external;     /* 1 when TRIG_IN started the run */
} engine_report_t;

/* Serial output (blocking is fine: never called from an interrupt). */
void hal_write(const uint8_t *data, size_t n);

/* Milliseconds, monotonic, wrapping. */
uint32_t hal_now_ms(void);

/* Playback engine. */
void hal_engine_start(const engine_plan_t *plan);       /* start one run now */
void hal_engine_arm_external(const engine_plan_t *plan); /* start a run on each TRIG_IN edge */
void hal_engine_disarm(void);  /* no more external starts; abort a run at the next boundary */
uint8_t hal_engine_running(void);
uint32_t hal_engine_trigger_count(void); /* playbacks started since boot */
uint8_t hal_engine_poll(engine_report_t *report); /* 1 once per finished run */

/* EEPROM (1 KiB on the ATmega328P). */
void hal_eeprom_read(uint16_t addr, uint8_t *buf, uint16_t n);
void hal_eeprom_write(uint16_t addr, const uint8_t *buf, uint16_t n);

/* Reset cause bits (MCUSR on AVR). */
uint8_t hal_reset_cause(void);

#ifdef __cplusplus
}
#endif

#endif
