/* Pin map: the only board-specific part of the firmware. A second board is a new block here
 * (its Timer1 output-compare pins, TRIG_IN's external interrupt and the spare outputs), not a
 * fork of the firmware. Select it with -DBOARD_xxx (the Makefile's BOARD=...); the Arduino IDE
 * build picks the block from the MCU it compiles for. */
#ifndef BVSH_BOARD_H
#define BVSH_BOARD_H

#include <avr/io.h>

#if defined(BOARD_ATMEGA328P) || defined(__AVR_ATmega328P__) || defined(__AVR_ATmega328__)
/* Arduino Uno, Nano (ATmega328P, 16 MHz) */
#define BOARD_NAME "atmega328p"
#undef BOARD_ID
#define BOARD_ID 1
/* SHUTTER = OC1A = D9 = PB1, SHUTTER_N = OC1B = D10 = PB2 (driven by Timer1, not by software) */
#define SHUTTER_DDR DDRB
#define SHUTTER_PORT PORTB
#define SHUTTER_BIT PB1
#define SHUTTER_N_BIT PB2
/* CAM_TRIG = D4 = PD4. Not on PORTB: simavr lets any PORTB write override the OC1A/OC1B pins
 * until the next compare match (silicon does not), and the camera trigger changes mid-code. */
#define CAM_PORT PORTD
#define CAM_DDR DDRD
#define CAM_BIT PD4
/* DMD_TRIG = D7 = PD7 */
#define DMD_PORT PORTD
#define DMD_DDR DDRD
#define DMD_BIT PD7
/* LED = D13 = PB5: written only while the shutter is closed (see CAM_TRIG) */
#define LED_PORT PORTB
#define LED_DDR DDRB
#define LED_BIT PB5
/* TRIG_IN = D2 = PD2 = INT0, rising edge */
#define TRIGIN_PORT PORTD
#define TRIGIN_DDR DDRD
#define TRIGIN_BIT PD2
#define TRIGIN_VECT INT0_vect
#define TRIGIN_ENABLE() (EIFR = _BV(INTF0), EIMSK |= _BV(INT0))
#define TRIGIN_DISABLE() (EIMSK &= (uint8_t)~_BV(INT0))
#define TRIGIN_RISING() (EICRA = (uint8_t)((EICRA & ~(_BV(ISC01) | _BV(ISC00))) | _BV(ISC01) | _BV(ISC00)))
/* UART0 */
#define UART_RX_VECT USART_RX_vect
#else
#error "No pin map for this MCU: add a block to board.h (see the ATmega328P one)."
#endif

#endif
