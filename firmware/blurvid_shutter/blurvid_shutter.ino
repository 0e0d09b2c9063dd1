// blurvid shutter controller: plays a binary exposure code chip by chip on Timer1's output
// compare pins and triggers the camera. Protocol: ../PROTOCOL.md. Build: `make -C firmware`,
// or open this folder in the Arduino IDE (board: Arduino Uno or Nano).
#include "device.h"
#include "hal_avr.h"

static device_t dev;

void setup()
{
    bvsh_hw_init();
    device_init(&dev);
}

void loop()
{
    uint8_t b;
    while (bvsh_uart_read(&b))
        device_rx_byte(&dev, b);
    /* one E_RX_OVERFLOW per request lost whole: requests sent faster than they are answered
     * (PROTOCOL.md: one at a time) are refused, never dropped in silence */
    for (uint8_t n = bvsh_uart_take_lost_frames(); n != 0u; n--)
        device_link_error(&dev, E_RX_OVERFLOW);
    device_poll(&dev);
}
