/*
 * simtest: a tiny ATmega328P program that exercises the bvsim harness (not the shutter firmware).
 *
 *   * UART0 115200 8N1 (U2X=1, UBRR=16): sends "simtest ready\n" on boot, then echoes every byte.
 *   * 'T' starts Timer1 in CTC mode (WGM12) at clk/8 with OCR1A=19, toggling OC1A (PB1) every
 *     10 us (160 cycles); 'S' stops it.
 *   * PB0 follows PD2 (polled in the main loop).
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <stdint.h>

static volatile uint8_t rx_buf[256];
static volatile uint8_t rx_head;
static uint8_t rx_tail;

ISR(USART_RX_vect) { rx_buf[rx_head++] = UDR0; }

static void tx(uint8_t c)
{
	while (!(UCSR0A & _BV(UDRE0)))
		;
	UDR0 = c;
}

int main(void)
{
	UCSR0A = _BV(U2X0);
	UBRR0 = 16;
	UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
	UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
	DDRB = _BV(PB0) | _BV(PB1);
	OCR1A = 19;
	TCCR1A = 0;
	TCCR1B = _BV(WGM12); /* CTC, clock stopped */
	sei();
	for (const char *s = "simtest ready\n"; *s; s++)
		tx((uint8_t)*s);
	for (;;) {
		if (PIND & _BV(PD2))
			PORTB |= _BV(PB0);
		else
			PORTB &= (uint8_t)~_BV(PB0);
		if (rx_tail == rx_head)
			continue;
		uint8_t c = rx_buf[rx_tail++];
		tx(c);
		if (c == 'T') {
			TCNT1 = 0;
			TCCR1A = _BV(COM1A0);              /* toggle OC1A on compare match */
			TCCR1B = _BV(WGM12) | _BV(CS11);   /* CTC, clk/8: 20 ticks = 10 us */
		} else if (c == 'S') {
			TCCR1B = _BV(WGM12);
			TCCR1A = 0;
		}
	}
}
