/* AVR-only entry points used by the sketch (besides hal.h). */
#ifndef BVSH_HAL_AVR_H
#define BVSH_HAL_AVR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void bvsh_hw_init(void);
uint8_t bvsh_uart_read(uint8_t *byte);
uint8_t bvsh_uart_take_overflow(void);

#ifdef __cplusplus
}
#endif

#endif
