/* AVR-only entry points used by the sketch (besides hal.h). */
#ifndef BVSH_HAL_AVR_H
#define BVSH_HAL_AVR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void bvsh_hw_init(void);
uint8_t bvsh_uart_read(uint8_t *byte);
/* Requests lost whole to a full receive ring since the last call: none of their bytes reached the
 * ring (each gets one E_RX_OVERFLOW). */
uint8_t bvsh_uart_take_lost_frames(void);

#ifdef __cplusplus
}
#endif

#endif
