/* AVR side of hal.h: the Timer1 playback engine, UART0, the millisecond clock and EEPROM.
 *
 * Timing model. Timer1 runs in CTC mode (TOP = OCR1A) and every playback is a chain of
 * segments: [lead][chip 0]...[chip n-1] then, for repeats, [gap chunks][lead]... Each compare
 * match ends one segment and starts the next. The shutter lines are OC1A (SHUTTER) and OC1B
 * (SHUTTER_N, the inverse): at every match the *hardware* sets or clears them according to
 * COM1A/COM1B, so every edge falls exactly on a timer tick. The interrupt that follows a match
 * only prepares the next one: it writes the COM bits for the level of the segment after the one
 * that just started and, when the segment length changes, OCR1A/OCR1B. It has one whole segment
 * (at least 10 us = 160 cycles) to do so; a late interrupt is detected (the next match already
 * happened) and aborts the run with E_OVERRUN instead of playing a wrong code.
 *
 * The camera trigger (level or pulse), the DMD pulse and the LED are software outputs set in
 * that interrupt, a few cycles after the edge they belong to.
 *
 * Interrupts in use: TIMER1_COMPA (engine), USART_RX (receive ring), INT0 (TRIG_IN, only while
 * armed for an external start). The Arduino core's Timer0 overflow interrupt is switched off;
 * milliseconds come from Timer2's compare flag, polled.
 */
#include <avr/eeprom.h>
#include <avr/interrupt.h>
#include <avr/io.h>

#include "board.h"
#include "hal.h"
#include "hal_avr.h"
#include "proto.h"

#define COM_OPEN (_BV(COM1A1) | _BV(COM1A0) | _BV(COM1B1))   /* OC1A set, OC1B clear */
#define COM_CLOSED (_BV(COM1A1) | _BV(COM1B1) | _BV(COM1B0)) /* OC1A clear, OC1B set */
#define CTC _BV(WGM12)

enum { PH_IDLE, PH_PULSE_END, PH_C0, PH_CHIPS, PH_END, PH_GAP, PH_STOPPING };

static engine_plan_t plan;
static uint8_t clock_bits;
static volatile uint8_t phase = PH_IDLE;
static volatile uint8_t running;
static volatile uint8_t armed_ext;
static volatile uint32_t trigger_count;
static const uint8_t *next_bits; /* byte holding the level of the next chip to program */
static uint8_t next_mask;
static uint16_t chips_to_go;     /* chip starts still to come after the current chip */
static uint32_t gap_left;
static uint16_t playbacks_left;
static uint32_t run_first, run_played;
static uint8_t run_external;
static volatile uint8_t report_ready;
static engine_report_t report;

/* ------------------------------------------------------------------------------------------ */
/* engine                                                                                     */

#define INLINE static inline __attribute__((always_inline))

/* OCR1B follows OCR1A (same TOP) so both lines switch on the same tick. The write order keeps
 * OCR1B from ever being below OCR1A between the two writes: simavr treats a compare value below
 * TOP as PWM and would flip OC1B at TOP (silicon would not; for it either order is safe, the
 * counter has just restarted from 0). */
INLINE void set_top(uint16_t top)
{
    if (top > OCR1A) {
        OCR1B = top;
        OCR1A = top;
    } else {
        OCR1A = top;
        OCR1B = top;
    }
}

INLINE uint8_t com_for(uint8_t level)
{
    return level ? COM_OPEN : COM_CLOSED;
}

/* Level of the next chip to program; advances the cursor. */
INLINE uint8_t take_level(void)
{
    uint8_t level = (*next_bits & next_mask) != 0;
    next_mask >>= 1;
    if (!next_mask) {
        next_mask = 0x80;
        next_bits++;
    }
    return level;
}

/* Program the lead segment that starts at the current match (or at the timer start): its
 * length and the level at its end (chip 0). */
static inline void program_lead(void)
{
    next_bits = plan.bits;
    next_mask = 0x80;
    if (plan.pulse_ticks && plan.pulse_ticks < plan.lead_ticks) {
        set_top((uint16_t)(plan.pulse_ticks - 1u));
        TCCR1A = COM_CLOSED;
        phase = PH_PULSE_END;
    } else {
        set_top((uint16_t)(plan.lead_ticks - 1u));
        TCCR1A = com_for(take_level());
        phase = PH_C0;
    }
}

static void prepare_run(void);

static void stop_run(uint8_t result)
{
    TCCR1B = CTC; /* clock off */
    TIMSK1 = 0;
    TCCR1A = COM_CLOSED;
    TCCR1C = _BV(FOC1A) | _BV(FOC1B); /* closed now, whatever the last match left */
    CAM_PORT &= (uint8_t)~_BV(CAM_BIT);
    DMD_PORT &= (uint8_t)~_BV(DMD_BIT);
    report.first_index = run_first;
    report.played = run_played;
    report.result = result;
    report.external = run_external;
    report_ready = 1;
    running = 0;
    phase = PH_IDLE;
    if (armed_ext) {
        prepare_run();
        TRIGIN_ENABLE();
    } else {
        LED_PORT &= (uint8_t)~_BV(LED_BIT);
    }
}

/* Next gap chunk: at most 65536 ticks, and never leave a remainder shorter than 32768. */
static inline uint16_t gap_chunk(void)
{
    uint32_t seg = gap_left;
    if (seg > 65536ul)
        seg = gap_left - 32768ul < 65536ul ? gap_left - 32768ul : 65536ul;
    gap_left -= seg;
    return (uint16_t)(seg - 1u);
}

/* Everything for the next run except starting the clock, so that an external trigger only has
 * to start it (the lead then begins a fixed few cycles after the edge). */
static void prepare_run(void)
{
    TCCR1B = CTC;
    TIMSK1 = 0;
    TCNT1 = 0;
    playbacks_left = plan.playbacks;
    program_lead();
    TIFR1 = _BV(OCF1A) | _BV(OCF1B);
}

/* Start the prepared run: the lead begins now. */
static inline __attribute__((always_inline)) void go(uint8_t external)
{
    GTCCR = _BV(PSRSYNC); /* restart the prescaler: the first tick is one full tick away */
    TCCR1B = (uint8_t)(CTC | clock_bits);
    TCNT1 = 0; /* simavr ignores TCNT1 writes while the clock is stopped */
    CAM_PORT |= _BV(CAM_BIT);
    TIMSK1 = _BV(OCIE1A);
    running = 1;
    run_external = external;
    run_first = trigger_count;
    run_played = 1;
    trigger_count++;
    LED_PORT |= _BV(LED_BIT);
}

INLINE void dmd_pulse(void)
{
    if (plan.dmd_pulse) {
        DMD_PORT |= _BV(DMD_BIT);
        __builtin_avr_delay_cycles(14); /* 1 us high */
        DMD_PORT &= (uint8_t)~_BV(DMD_BIT);
    }
}

/* The match this interrupt prepares for has already happened: too late. */
#define MATCH_PASSED() (TIFR1 & _BV(OCF1A))
/* After a new TOP: the counter is already beyond it (it would run on to 65535). */
#define TOP_PASSED() (TCNT1 > OCR1A)

ISR(TIMER1_COMPA_vect)
{
    uint8_t ph = phase;
    uint8_t late;
    if (ph == PH_CHIPS) { /* a chip k >= 1 just started: prepare the edge at its end */
        if (--chips_to_go)
            TCCR1A = com_for(take_level());
        else {
            TCCR1A = COM_CLOSED;
            phase = PH_END;
        }
        late = MATCH_PASSED();
        dmd_pulse();
    } else if (ph == PH_C0) { /* chip 0 just started */
        set_top((uint16_t)(plan.chip_ticks - 1u));
        chips_to_go = (uint16_t)(plan.n_chips - 1u);
        if (chips_to_go) {
            TCCR1A = com_for(take_level());
            phase = PH_CHIPS;
        } else {
            TCCR1A = COM_CLOSED;
            phase = PH_END;
        }
        late = MATCH_PASSED() || TOP_PASSED();
        dmd_pulse();
        if (plan.pulse_ticks)
            CAM_PORT &= (uint8_t)~_BV(CAM_BIT);
    } else if (ph == PH_END) { /* the code ended; the shutter just closed */
        CAM_PORT &= (uint8_t)~_BV(CAM_BIT);
        if (plan.playbacks == 0 || --playbacks_left) {
            gap_left = plan.gap_ticks;
            set_top(gap_chunk());
            TCCR1A = COM_CLOSED;
            phase = PH_GAP;
            late = MATCH_PASSED() || TOP_PASSED();
        } else {
            stop_run(DONE_COMPLETE);
            return;
        }
    } else if (ph == PH_GAP) {
        if (gap_left)
            set_top(gap_chunk());
        else {
            CAM_PORT |= _BV(CAM_BIT);
            trigger_count++;
            run_played++;
            program_lead();
        }
        late = MATCH_PASSED() || TOP_PASSED();
    } else if (ph == PH_PULSE_END) {
        set_top((uint16_t)(plan.lead_ticks - plan.pulse_ticks - 1u));
        TCCR1A = com_for(take_level());
        phase = PH_C0;
        late = MATCH_PASSED() || TOP_PASSED();
        CAM_PORT &= (uint8_t)~_BV(CAM_BIT);
    } else { /* PH_STOPPING (DISARM) */
        stop_run(DONE_ABORTED);
        return;
    }
    if (late)
        stop_run(DONE_OVERRUN); /* the code on the wire is no longer the loaded one */
}

ISR(TRIGIN_VECT)
{
    if (!running && armed_ext)
        go(1);
    TRIGIN_DISABLE();
}

void hal_engine_start(const engine_plan_t *p)
{
    uint8_t sreg = SREG;
    cli();
    TRIGIN_DISABLE();
    armed_ext = 0;
    plan = *p;
    clock_bits = p->prescaler == 64 ? (uint8_t)(_BV(CS11) | _BV(CS10)) : (uint8_t)_BV(CS11);
    prepare_run();
    go(0);
    SREG = sreg;
}

void hal_engine_arm_external(const engine_plan_t *p)
{
    uint8_t sreg = SREG;
    cli();
    plan = *p;
    clock_bits = p->prescaler == 64 ? (uint8_t)(_BV(CS11) | _BV(CS10)) : (uint8_t)_BV(CS11);
    armed_ext = 1;
    LED_PORT |= _BV(LED_BIT);
    if (!running) {
        prepare_run();
        TRIGIN_ENABLE();
    }
    SREG = sreg;
}

void hal_engine_disarm(void)
{
    uint8_t sreg = SREG;
    cli();
    TRIGIN_DISABLE();
    armed_ext = 0;
    if (running && phase != PH_STOPPING) {
        TCCR1A = COM_CLOSED;
        TCCR1C = _BV(FOC1A) | _BV(FOC1B); /* real silicon closes now; simavr at the next match */
        CAM_PORT &= (uint8_t)~_BV(CAM_BIT);
        phase = PH_STOPPING;
    }
    if (!running)
        LED_PORT &= (uint8_t)~_BV(LED_BIT);
    SREG = sreg;
}

uint8_t hal_engine_running(void)
{
    return running;
}

uint32_t hal_engine_trigger_count(void)
{
    uint8_t sreg = SREG;
    cli();
    uint32_t n = trigger_count;
    SREG = sreg;
    return n;
}

uint8_t hal_engine_poll(engine_report_t *r)
{
    uint8_t sreg = SREG;
    cli();
    uint8_t ready = report_ready;
    if (ready) {
        *r = report;
        report_ready = 0;
    }
    SREG = sreg;
    return ready;
}

/* ------------------------------------------------------------------------------------------ */
/* UART0: 115200 8N1 (U2X, UBRR 16: 117 647 baud, +2.1 %, as the Arduino core does)           */

#define RX_RING 128u
static volatile uint8_t rx_ring[RX_RING];
static volatile uint8_t rx_head, rx_tail, rx_lost_frames;
/* What the receive interrupt knows of the frame now arriving (its bytes since the last 0x00). */
#define RXF_STORED 0x01u /* some of them are in the ring */
#define RXF_BYTES 0x02u  /* some arrived, stored or lost: a request, not an empty frame */
#define RXF_PEND 0x04u   /* the frame before it lost its delimiter after some of its bytes were
                            stored: a 0x00 is owed to the ring, after those bytes */
static volatile uint8_t rx_frame;

/* A byte that finds the ring full is lost. Every request gets exactly one answer, never silence
 * and never two (PROTOCOL.md):
 *  - a request none of whose bytes reach the ring (its delimiter may arrive once there is room:
 *    stored, it would end an empty frame, which the parser ignores) is counted here and answered
 *    with E_RX_OVERFLOW;
 *  - a request some of whose bytes reach the ring is answered by the parser: its reply, or E_CRC /
 *    E_FRAMING when bytes were lost. If its delimiter is lost, the delimiter is owed (RXF_PEND)
 *    and stored before the next byte, or handed to the parser by bvsh_uart_read() once it has
 *    read the ring empty: the stored bytes never run into the next request;
 *  - a 0x00 that ends no bytes (an empty frame) is nothing; it is never counted. */
ISR(UART_RX_VECT)
{
    uint8_t b = UDR0;
    uint8_t f = rx_frame;
    uint8_t head = rx_head;
    uint8_t next = (uint8_t)((head + 1u) & (RX_RING - 1u));
    if ((f & RXF_PEND) && next != rx_tail) {
        rx_ring[head] = 0u;
        head = next;
        next = (uint8_t)((head + 1u) & (RX_RING - 1u));
        f &= (uint8_t)~RXF_PEND;
    }
    if (b != 0u) {
        if (next != rx_tail) {
            rx_ring[head] = b;
            head = next;
            f |= RXF_STORED | RXF_BYTES;
        } else {
            f |= RXF_BYTES;
        }
    } else if (f & RXF_STORED) {
        if (next != rx_tail) {
            rx_ring[head] = 0u;
            head = next;
            f = 0u;
        } else {
            f = RXF_PEND; /* none was owed: this frame's bytes were stored after it */
        }
    } else {
        if ((f & RXF_BYTES) && rx_lost_frames != 0xFFu)
            rx_lost_frames++;
        f &= RXF_PEND;
    }
    rx_head = head;
    rx_frame = f;
}

uint8_t bvsh_uart_read(uint8_t *b)
{
    if (rx_tail == rx_head) {
        if (!(rx_frame & RXF_PEND))
            return 0;
        uint8_t sreg = SREG;
        cli();
        /* Still empty and still owed (no byte came in between): the owed delimiter is next. */
        uint8_t owed = rx_tail == rx_head && (rx_frame & RXF_PEND);
        if (owed)
            rx_frame &= (uint8_t)~RXF_PEND;
        SREG = sreg;
        if (!owed)
            return 0;
        *b = 0u;
        return 1;
    }
    *b = rx_ring[rx_tail];
    rx_tail = (uint8_t)((rx_tail + 1u) & (RX_RING - 1u));
    return 1;
}

uint8_t bvsh_uart_take_lost_frames(void)
{
    uint8_t sreg = SREG;
    cli();
    uint8_t n = rx_lost_frames;
    rx_lost_frames = 0;
    SREG = sreg;
    return n;
}

void hal_write(const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        while (!(UCSR0A & _BV(UDRE0)))
            ;
        UDR0 = data[i];
    }
}

/* ------------------------------------------------------------------------------------------ */
/* time, EEPROM, reset cause                                                                  */

static uint32_t now_ms;
static uint8_t reset_cause;

uint32_t hal_now_ms(void)
{
    if (TIFR2 & _BV(OCF2A)) {
        TIFR2 = _BV(OCF2A);
        now_ms++;
    }
    return now_ms;
}

void hal_eeprom_read(uint16_t addr, uint8_t *buf, uint16_t n)
{
    eeprom_read_block(buf, (const void *)(uintptr_t)addr, n);
}

void hal_eeprom_write(uint16_t addr, const uint8_t *buf, uint16_t n)
{
    eeprom_update_block(buf, (void *)(uintptr_t)addr, n);
}

uint8_t hal_reset_cause(void)
{
    return reset_cause;
}

void bvsh_hw_init(void)
{
    reset_cause = MCUSR;
    MCUSR = 0;
    cli();
    TIMSK0 = 0; /* no Arduino millis(): Timer1's interrupt must not wait behind Timer0's */

    /* idle levels: shutter closed (SHUTTER low, SHUTTER_N high), triggers low */
    SHUTTER_PORT = (uint8_t)((SHUTTER_PORT & ~_BV(SHUTTER_BIT)) | _BV(SHUTTER_N_BIT));
    SHUTTER_DDR |= _BV(SHUTTER_BIT) | _BV(SHUTTER_N_BIT);
    CAM_PORT &= (uint8_t)~_BV(CAM_BIT);
    CAM_DDR |= _BV(CAM_BIT);
    DMD_PORT &= (uint8_t)~_BV(DMD_BIT);
    DMD_DDR |= _BV(DMD_BIT);
    LED_PORT &= (uint8_t)~_BV(LED_BIT);
    LED_DDR |= _BV(LED_BIT);
    TRIGIN_DDR &= (uint8_t)~_BV(TRIGIN_BIT);
    TRIGIN_PORT &= (uint8_t)~_BV(TRIGIN_BIT);
    TRIGIN_DISABLE();
    TRIGIN_RISING();

    /* Timer1: CTC, stopped, compare outputs connected at the closed levels. One short match
     * puts the output-compare latches at those levels (FOC does it on silicon, simavr needs the
     * match). */
    TCCR1B = CTC;
    TIMSK1 = 0;
    TCCR1A = COM_CLOSED;
    TCCR1C = _BV(FOC1A) | _BV(FOC1B);
    set_top(15);
    TIFR1 = _BV(OCF1A);
    TCCR1B = CTC | _BV(CS10);
    while (!(TIFR1 & _BV(OCF1A)))
        ;
    TCCR1B = CTC;
    TIFR1 = _BV(OCF1A) | _BV(OCF1B);

    /* Timer2: CTC at 1 kHz (clk/64, OCR2A 249); its flag is polled by hal_now_ms(). */
    TCCR2A = _BV(WGM21);
    TCCR2B = _BV(CS22);
    OCR2A = 249;
    TIMSK2 = 0;

    /* UART0 */
    UCSR0A = _BV(U2X0);
    UBRR0 = 16;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);
    /* simavr 1.6 clears UDRE when TXEN is cleared (the Arduino core's init() does that) and sets
     * it again only when UDRIE goes 0 -> 1. Toggle UDRIE with interrupts off: silicon, where
     * UDRE is simply set while the buffer is empty, is unaffected. */
    UCSR0B |= _BV(UDRIE0);
    UCSR0B &= (uint8_t)~_BV(UDRIE0);
    sei();
}
