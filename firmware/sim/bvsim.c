/*
 * bvsim: simavr test harness for the blurvid shutter-controller firmware (ATmega328P, 16 MHz).
 *
 *   bvsim [--mcu atmega328p] [--freq 16000000] [--speed X] [--edges FILE] [--vcd FILE]
 *         [--max-seconds S] [--no-reset-on-open] [--reset-hold-ms MS] [--uart-log] [--verbose] FIRMWARE.elf
 *
 * What it does:
 *   * runs FIRMWARE.elf in libsimavr;
 *   * bridges UART0 to a pseudo-terminal and prints exactly one line "PTY <slave path>" on stdout
 *     (nothing else ever goes to stdout; diagnostics go to stderr). Bytes the host writes are fed
 *     to the UART only while it signals XON, so any burst size works; bytes the AVR sends are
 *     buffered (64 KiB) while the host does not read, then dropped with a warning;
 *   * like an Arduino Uno, opening the port resets the board ("DTR auto-reset"): the AVR is held
 *     in reset for --reset-hold-ms (default 50 ms) and then restarts, so the host sees the boot
 *     banner after its own open() and input flush. Bytes the host sends while the board is held
 *     in reset are lost, as on the real board. --no-reset-on-open turns this off;
 *   * paces simulated time to wall time (--speed 1, the default; 0 = as fast as possible);
 *   * logs level changes of PB0 PB1 PB2 PB5 PD7 PD2 PD4 to --edges FILE as "<cycle> <port><bit> <level>"
 *     (and optionally to a VCD file). Edges caused by a timer (e.g. output compare) are stamped with
 *     the exact cycle the timer was due, edges caused by an instruction with the cycle at which that
 *     instruction started;
 *   * reads commands on stdin, one per line:
 *         pin <PORT><BIT> <0|1|z>   drive an input pin (z: stop driving it)
 *         reset                     reset the AVR (as the RESET pin would)
 *         quit                      exit cleanly
 *     EOF on stdin is not an exit request.
 *
 * Exit codes: 0 quit / SIGTERM / SIGINT / --max-seconds reached; 2 usage or firmware load error;
 * 3 the AVR crashed or stopped (invalid opcode, sleep with interrupts off, cli + endless loop with
 * no watchdog armed, e.g. main() returned).
 *
 * Timing: the I/O + pacing tick runs every 100 us of simulated time, so host bytes and "pin"
 * commands take effect on a 1600-cycle grid; with --speed 1 simulated time is at most ~0.2 ms ahead
 * of wall time (behind by more than 50 ms, e.g. after SIGSTOP, it stops catching up). Unpaced, it
 * runs ~4x real time on one core.
 *
 * simavr 1.6 differences from a real ATmega328P, measured with this harness (they matter when the
 * tests judge the shutter firmware):
 *   UART  a byte takes 11 bit times (simavr counts a parity bit even for 8N1): 115200 baud U2X moves
 *         ~10.7 kB/s instead of ~11.8 kB/s. A sent byte reaches the host when UDR0 is written, not
 *         when its stop bit ends. The receive fifo holds 64 bytes and this harness feeds it only
 *         on XON, so the AVR never sees an overrun (DOR0) however slow its ISR; bytes sent before
 *         RXEN0 is set are queued, not lost (only those sent while held in reset are lost).
 *         simavr's own usleep() on UCSR0A polling and its console echo are turned off here.
 *   Timer1 (OC1A = PB1, OC1B = PB2)
 *       * CTC (WGM12) with the COMPA ISR rewriting OCR1A: exact, the next match is (OCR1A+1)*N
 *         cycles after the previous one. But writing an OCR1A below the current TCNT1 gives an
 *         immediate match, where the chip runs to 0xFFFF and wraps (a 65536-tick glitch, 32.8 ms
 *         at clk/8, that the simulation does not show).
 *       * TOV1 is set at every TOP in CTC mode (the chip only sets it at 0xFFFF): TOIE1 would fire.
 *       * COM1x set/clear-on-match (COM1x1) leaves PORTB untouched, and any later PORTB write
 *         (e.g. sbi for PB0/PB5) forces OC1A/OC1B back to their PORTB bits: a glitch until the next
 *         match. Toggle mode (COM1x0) instead writes PORTB1/PORTB2 (reading PORTB shows the pin),
 *         so read-modify-write PORTB updates keep it; a plain PORTB = x overwrites it.
 *       * in CTC, OC1B with COM1B1 (clear on match) is also set again at every TOP (and cleared at
 *         TOP with set-on-match), i.e. it behaves like PWM; OC1A does not.
 *       * FOC1A/FOC1B (TCCR1C) are ignored: they cannot set the initial OC1x level.
 *       * OC1x drive the pin even when DDRB1/DDRB2 are 0: a missing DDR setup is not caught.
 *       * counting starts exactly at the TCCR1B write (no prescaler phase), and OCR1x writes before
 *         the timer ever ran log "mode 0 UNSUPPORTED" (harmless; this harness hides it).
 *   INT0 (PD2) rising edge: 11 cycles from the pin edge to the ISR's first instruction's effect.
 *         With ISC0 = 00 (the reset default) a low PD2 makes simavr poll the pin every cycle
 *         (even with INT0 masked): ~2.5x slower until PD2 goes high or ISC0 changes.
 *   SLEEP sleeps even when SMCR.SE is 0. A watchdog reset works (the harness survives it), but
 *         outputs keep their last logged level until the firmware drives them again (a reset done
 *         by this harness logs them low, as released pins with pull-downs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <simavr/avr_ioport.h>
#include <simavr/avr_uart.h>
#include <simavr/avr_watchdog.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_core.h>
#include <simavr/sim_cycle_timers.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_interrupts.h>
#include <simavr/sim_io.h>
#include <simavr/sim_irq.h>

#define OUT_CAP (64 * 1024)     /* AVR -> host bytes kept while the host does not read */
#define IN_CAP (64 * 1024)      /* host -> AVR bytes queued; beyond this the pty applies back-pressure */
#define TICK_HZ 10000           /* I/O + pacing tick: every 100 us of simulated time */
#define EDGE_FLUSH_NS 2000000LL /* flush the edge log at least every 2 ms of wall time */
#define BEHIND_REBASE_NS 50000000LL /* more than 50 ms behind wall time: stop trying to catch up */

enum stop_reason { RUNNING = 0, STOP_QUIT, STOP_SIGNAL, STOP_MAXTIME };

/* ---------------------------------------------------------------------------------------------- */
/* state */

static avr_t *g_avr;
static uint32_t g_freq = 16000000;
static double g_speed = 1.0;
static int g_verbose;
static avr_cycle_count_t g_tick_cycles;
static avr_cycle_count_t g_max_cycles; /* 0: no limit */
static volatile sig_atomic_t g_signal;
static int g_stop = RUNNING;

/* exact stamps for timer-driven edges: set while a cycle timer callback runs */
static int g_in_dispatch;
static avr_cycle_count_t g_dispatch_when;

/* pty */
static int g_master = -1;
static int g_inotify = -1;  /* IN_OPEN on the slave: sees every open, even a quick close + reopen */
static bool g_connected;    /* a host has the slave side open */
static bool g_reset_on_open = true;
static long g_reset_hold_ms = 50;
static bool g_hold_request; /* set by the tick, served by the main loop */
static bool g_reset_request; /* "reset" command: avr_reset() must not run inside a timer callback */
static bool g_holding;      /* AVR held in reset: host input is discarded */

/* AVR -> host ring buffer */
static uint8_t g_out[OUT_CAP];
static size_t g_out_head, g_out_len;
static bool g_out_overflow_warned;

/* host -> AVR ring buffer */
static uint8_t g_in[IN_CAP];
static size_t g_in_head, g_in_len;
static bool g_rx_ready; /* UART0 signalled XON (room in its receive fifo) */
static bool g_pumping;
static avr_irq_t *g_uart_in_irq;

/* counters */
static uint64_t g_tx_bytes, g_rx_bytes, g_tx_dropped, g_tx_discarded, g_rx_discarded, g_resets;

/* stdin commands */
static bool g_stdin_eof;
static char g_cmd[256];
static size_t g_cmd_len;

/* pacing */
static int64_t g_base_wall_ns;
static avr_cycle_count_t g_base_cycle;
static int64_t g_start_wall_ns;
static uint64_t g_rebases;

/* logging */
static FILE *g_edges;
static FILE *g_vcd;
static bool g_edges_dirty;
static bool g_uart_log; /* also log UART bytes to the edge file: "<cycle> RX|TX <byte>" */
static int64_t g_last_flush_ns;
static uint64_t g_vcd_last_t = UINT64_MAX;

struct logpin {
	char port;
	int bit;
	char vcd_id;
	int level;
	avr_irq_t *irq;
};
static struct logpin g_logpins[] = {
	{'B', 0, '!', 0, NULL}, {'B', 1, '"', 0, NULL}, {'B', 2, '#', 0, NULL},
	{'B', 5, '$', 0, NULL}, {'D', 7, '%', 0, NULL}, {'D', 2, '&', 0, NULL},
	{'D', 4, '\'', 0, NULL},
};
#define N_LOGPINS (sizeof(g_logpins) / sizeof(g_logpins[0]))

/* pins driven by the host ("pin" command), per port letter A..L */
struct drive {
	uint8_t mask, value;
};
static struct drive g_drive[12];

/* ---------------------------------------------------------------------------------------------- */
/* helpers */

static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx_(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bvsim: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cycles_to_s(avr_cycle_count_t c) { return (double)c / (double)g_freq; }

/* simavr's default logger sends some levels to stdout: ours keeps stdout for the PTY line only */
static void bv_logger(avr_t *avr, const int level, const char *format, va_list ap)
{
	int limit = g_verbose ? LOG_TRACE : LOG_WARNING;
	if (avr && avr->log < level)
		return;
	if (level > limit)
		return;
	char msg[512];
	vsnprintf(msg, sizeof(msg), format, ap);
	/* OCR1x written before the timer was ever started: harmless, but simavr warns */
	if (!g_verbose && strstr(msg, "avr_timer_write_ocr") && strstr(msg, "mode 0 UNSUPPORTED"))
		return;
	fputs(msg, stderr);
}

static avr_ioport_t *find_ioport(char name)
{
	for (avr_io_t *io = g_avr->io_port; io; io = io->next)
		if (io->kind && !strcmp(io->kind, "port") && ((avr_ioport_t *)io)->name == name)
			return (avr_ioport_t *)io;
	return NULL;
}

/* ---------------------------------------------------------------------------------------------- */
/* edge log + VCD */

static void vcd_header(void)
{
	fprintf(g_vcd, "$date bvsim $end\n$version bvsim (simavr) $end\n$timescale 1ps $end\n");
	fprintf(g_vcd, "$scope module avr $end\n");
	for (size_t i = 0; i < N_LOGPINS; i++)
		fprintf(g_vcd, "$var wire 1 %c P%c%d $end\n", g_logpins[i].vcd_id, g_logpins[i].port,
		        g_logpins[i].bit);
	fprintf(g_vcd, "$upscope $end\n$enddefinitions $end\n#0\n$dumpvars\n");
	for (size_t i = 0; i < N_LOGPINS; i++)
		fprintf(g_vcd, "0%c\n", g_logpins[i].vcd_id);
	fprintf(g_vcd, "$end\n");
	g_vcd_last_t = 0;
}

static void log_level(struct logpin *lp, int level, avr_cycle_count_t stamp)
{
	if (level == lp->level)
		return;
	lp->level = level;
	if (g_edges) {
		fprintf(g_edges, "%" PRIu64 " %c%d %d\n", (uint64_t)stamp, lp->port, lp->bit, level);
		g_edges_dirty = true;
	}
	if (g_vcd) {
		uint64_t t = (uint64_t)((unsigned __int128)stamp * 1000000000000ULL / g_freq);
		if (t != g_vcd_last_t) {
			fprintf(g_vcd, "#%" PRIu64 "\n", t);
			g_vcd_last_t = t;
		}
		fprintf(g_vcd, "%d%c\n", level, lp->vcd_id);
	}
}

static void pin_notify(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	struct logpin *lp = param;
	avr_cycle_count_t stamp = g_in_dispatch ? g_dispatch_when : g_avr->cycle;
	/* the timer's output compare raises the pin with AVR_IOPORT_OUTPUT (0x100) or'ed in */
	log_level(lp, (value & 0xff) ? 1 : 0, stamp);
}

static void flush_logs(void)
{
	if (g_edges)
		fflush(g_edges);
	if (g_vcd)
		fflush(g_vcd);
	g_edges_dirty = false;
	g_last_flush_ns = mono_ns();
}

/* ---------------------------------------------------------------------------------------------- */
/* UART bridge */

static void uart_output_notify(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)param;
	g_tx_bytes++;
	if (g_uart_log && g_edges) {
		fprintf(g_edges, "%" PRIu64 " TX %u\n", (uint64_t)g_avr->cycle, (unsigned)(value & 0xff));
		g_edges_dirty = true;
	}
	if (!g_connected) { /* nobody has the port open: the bytes go nowhere, as with USB serial */
		g_tx_discarded++;
		return;
	}
	if (g_out_len >= OUT_CAP) {
		g_tx_dropped++;
		if (!g_out_overflow_warned) {
			warnx_("warning: the host does not read the port: %d KiB buffered, dropping AVR "
			       "output",
			       OUT_CAP / 1024);
			g_out_overflow_warned = true;
		}
		return;
	}
	g_out[(g_out_head + g_out_len) % OUT_CAP] = (uint8_t)value;
	g_out_len++;
}

static void uart_pump(void)
{
	if (g_pumping || !g_uart_in_irq)
		return;
	g_pumping = true;
	while (g_rx_ready && g_in_len > 0 && !g_holding) {
		uint8_t b = g_in[g_in_head];
		g_in_head = (g_in_head + 1) % IN_CAP;
		g_in_len--;
		g_rx_bytes++;
		if (g_uart_log && g_edges) {
			fprintf(g_edges, "%" PRIu64 " RX %u\n", (uint64_t)g_avr->cycle, (unsigned)b);
			g_edges_dirty = true;
		}
		avr_raise_irq(g_uart_in_irq, b); /* may raise XOFF (fifo full), which clears g_rx_ready */
	}
	g_pumping = false;
}

static void uart_xon_notify(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)param;
	if (value) {
		g_rx_ready = true;
		if (g_in_len)
			uart_pump();
	}
}

static void uart_xoff_notify(avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)param;
	if (value)
		g_rx_ready = false;
}

static void out_flush(void)
{
	while (g_out_len > 0 && g_connected) {
		size_t chunk = g_out_len;
		if (g_out_head + chunk > OUT_CAP)
			chunk = OUT_CAP - g_out_head;
		ssize_t n = write(g_master, g_out + g_out_head, chunk);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EIO)
				warnx_("pty write: %s", strerror(errno));
			return;
		}
		g_out_head = (g_out_head + (size_t)n) % OUT_CAP;
		g_out_len -= (size_t)n;
		if (g_out_len == 0)
			g_out_overflow_warned = false;
	}
}

static void in_read(void)
{
	uint8_t buf[4096];
	for (;;) {
		size_t room = IN_CAP - g_in_len;
		if (room == 0 && !g_holding)
			return; /* leave the rest in the pty: the host's write() blocks, like a full USB fifo */
		size_t want = g_holding ? sizeof(buf) : (room < sizeof(buf) ? room : sizeof(buf));
		ssize_t n = read(g_master, buf, want);
		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return; /* EAGAIN, or EIO when the slave was closed (noticed by poll) */
		}
		if (g_holding) {
			g_rx_discarded += (uint64_t)n;
			continue;
		}
		for (ssize_t i = 0; i < n; i++)
			g_in[(g_in_head + g_in_len + (size_t)i) % IN_CAP] = buf[i];
		g_in_len += (size_t)n;
	}
}

/* ---------------------------------------------------------------------------------------------- */
/* pins, reset */

static int port_index(char port) { return (port >= 'A' && port <= 'L') ? port - 'A' : -1; }

static void apply_external(char port)
{
	int pi = port_index(port);
	avr_ioport_external_t ext = {.name = port, .mask = g_drive[pi].mask, .value = g_drive[pi].value};
	avr_ioctl(g_avr, AVR_IOCTL_IOPORT_SET_EXTERNAL(port), &ext);
}

/* level: 0, 1, or -1 to stop driving the pin */
static int drive_pin(char port, int bit, int level)
{
	int pi = port_index(port);
	avr_irq_t *irq = pi >= 0 && bit >= 0 && bit < 8
	                     ? avr_io_getirq(g_avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit)
	                     : NULL;
	if (!irq || !find_ioport(port)) {
		warnx_("pin %c%d: no such pin on %s", port, bit, g_avr->mmcu);
		return -1;
	}
	uint8_t m = (uint8_t)(1u << bit);
	if (level < 0) {
		g_drive[pi].mask &= (uint8_t)~m;
		apply_external(port);
		return 0;
	}
	/* declare the pin externally driven: otherwise a PORTx write (pull-up bit) re-raises it */
	g_drive[pi].mask |= m;
	if (level)
		g_drive[pi].value |= m;
	else
		g_drive[pi].value &= (uint8_t)~m;
	apply_external(port);
	avr_raise_irq(irq, (uint32_t)level);
	return 0;
}

static avr_cycle_count_t tick(avr_t *avr, avr_cycle_count_t when, void *param);

/* our own "io module": simavr calls its reset hook from avr_reset(), which also wipes every cycle
 * timer (ours included) and zeroes the I/O registers (PINx included) */
static void bv_io_reset(avr_io_t *io)
{
	(void)io;
	avr_cycle_timer_register(g_avr, g_tick_cycles, tick, NULL);
	g_rx_ready = false;
	g_in_head = g_in_len = 0;
	for (int pi = 0; pi < 12; pi++) {
		if (!g_drive[pi].mask)
			continue;
		avr_ioport_t *p = find_ioport((char)('A' + pi));
		if (p)
			g_avr->data[p->r_pin] |= (uint8_t)(g_drive[pi].mask & g_drive[pi].value);
	}
	g_resets++;
}

static avr_io_t g_bv_io = {
	.kind = "bvsim",
	.reset = bv_io_reset,
};

static void do_reset(void)
{
	/* pins are released during reset: outputs the host does not drive fall low (pull-down) */
	for (avr_io_t *io = g_avr->io_port; io; io = io->next) {
		if (!io->kind || strcmp(io->kind, "port"))
			continue;
		avr_ioport_t *p = (avr_ioport_t *)io;
		int pi = port_index(p->name);
		for (int b = 0; b < 8; b++) {
			if (pi >= 0 && (g_drive[pi].mask & (1u << b)))
				continue;
			avr_irq_t *irq = p->io.irq + b;
			if (irq->value & 0xff)
				avr_raise_irq(irq, 0);
		}
	}
	avr_reset(g_avr);
}

/* ---------------------------------------------------------------------------------------------- */
/* stdin commands */

static void command(char *line)
{
	char *p = line;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strlen(p);
	while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
		p[--n] = 0;
	if (!*p || *p == '#')
		return;
	char verb[16], pin[8], val[8];
	int k = sscanf(p, "%15s %7s %7s", verb, pin, val);
	if (!strcmp(verb, "quit") && k == 1) {
		g_stop = STOP_QUIT;
	} else if (!strcmp(verb, "reset") && k == 1) {
		g_reset_request = true;
	} else if (!strcmp(verb, "pin") && k == 3) {
		char port = pin[0];
		if (port >= 'a' && port <= 'z')
			port = (char)(port - 'a' + 'A');
		int bit = (pin[1] >= '0' && pin[1] <= '7' && !pin[2]) ? pin[1] - '0' : -1;
		int level = !strcmp(val, "1") ? 1 : !strcmp(val, "0") ? 0 : !strcmp(val, "z") ? -1 : -2;
		if (bit < 0 || level == -2) {
			warnx_("bad command '%s': expected 'pin <PORT><BIT> <0|1|z>', e.g. 'pin D2 1'", p);
			return;
		}
		drive_pin(port, bit, level);
	} else {
		warnx_("unknown command '%s' (commands: pin <PORT><BIT> <0|1|z>, reset, quit)", p);
	}
}

static void stdin_read(void)
{
	char buf[1024];
	ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
	if (n < 0) {
		if (errno != EINTR && errno != EAGAIN)
			g_stdin_eof = true;
		return;
	}
	if (n == 0) {
		g_stdin_eof = true; /* keep running: the test may close stdin */
		return;
	}
	for (ssize_t i = 0; i < n && !g_stop; i++) {
		if (buf[i] == '\n') {
			g_cmd[g_cmd_len] = 0;
			command(g_cmd);
			g_cmd_len = 0;
		} else if (g_cmd_len < sizeof(g_cmd) - 1) {
			g_cmd[g_cmd_len++] = buf[i];
		}
	}
}

/* ---------------------------------------------------------------------------------------------- */
/* I/O service, pacing */

static void on_host_open(void)
{
	g_connected = true;
	g_tx_discarded += g_out_len; /* what the previous host did not read is gone */
	g_out_len = 0;
	if (g_verbose)
		warnx_("host opened the port");
	if (g_reset_on_open)
		g_hold_request = true;
}

/* true when the host opened the slave since the last call (inotify IN_OPEN) */
static bool slave_opened(void)
{
	bool opened = false;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(g_inotify, buf, sizeof(buf));
		if (n <= 0)
			return opened;
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			if (ev->mask & IN_OPEN)
				opened = true;
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void service_io(void)
{
	struct pollfd fds[3] = {
		{.fd = g_master, .events = POLLIN},
		{.fd = g_stdin_eof ? -1 : STDIN_FILENO, .events = POLLIN},
		{.fd = g_inotify, .events = POLLIN},
	};
	int ready = poll(fds, 3, 0);
	if (ready > 0 && (fds[2].revents & POLLIN) && slave_opened()) {
		g_connected = false; /* so that on_host_open() runs below, even if no HUP was seen */
		if (!(fds[0].revents & POLLHUP))
			on_host_open();
	}
	if (ready > 0) {
		if (fds[0].revents & POLLHUP) {
			if (g_connected) {
				g_connected = false;
				if (g_verbose)
					warnx_("host closed the port");
				g_tx_discarded += g_out_len;
				g_out_len = 0;
			}
		} else if (!g_connected) {
			g_connected = true;
			if (g_inotify < 0)
				on_host_open();
		}
		if (g_connected && (fds[0].revents & POLLIN))
			in_read();
		if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
			stdin_read();
	} else if (!g_connected) {
		g_connected = true; /* no POLLHUP: the slave side is open */
		if (g_inotify < 0)
			on_host_open();
	}
	out_flush();
	uart_pump();
	if (g_edges_dirty && mono_ns() - g_last_flush_ns >= EDGE_FLUSH_NS)
		flush_logs();
}

/* sleep up to `ns` nanoseconds, waking early (and serving I/O) when the host or stdin has input */
static void wait_io(int64_t ns)
{
	if (g_edges_dirty)
		flush_logs();
	struct pollfd fds[3] = {
		{.fd = g_connected ? g_master : -1, .events = POLLIN},
		{.fd = g_stdin_eof ? -1 : STDIN_FILENO, .events = POLLIN},
		{.fd = g_inotify, .events = POLLIN},
	};
	struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
	if (ppoll(fds, 3, &ts, NULL) > 0)
		service_io();
}

static void rebase(avr_cycle_count_t cycle)
{
	g_base_wall_ns = mono_ns();
	g_base_cycle = cycle;
}

static void pace(avr_cycle_count_t when)
{
	if (g_speed <= 0)
		return;
	if (when < g_base_cycle)
		rebase(when);
	for (;;) {
		int64_t now = mono_ns();
		int64_t target =
		    g_base_wall_ns + (int64_t)((double)(when - g_base_cycle) * 1e9 / g_freq / g_speed);
		int64_t ahead = target - now;
		if (ahead < -BEHIND_REBASE_NS) { /* too slow, or we were SIGSTOPped: forget the debt */
			rebase(when);
			g_rebases++;
			return;
		}
		if (ahead < 200000 || g_stop || g_signal || g_hold_request || g_reset_request)
			return;
		wait_io(ahead);
	}
}

static bool watchdog_armed(void)
{
	for (avr_io_t *io = g_avr->io_port; io; io = io->next) {
		if (io->kind && !strcmp(io->kind, "watchdog")) {
			avr_watchdog_t *w = (avr_watchdog_t *)io;
			return avr_regbit_get(g_avr, w->wde) || avr_regbit_get(g_avr, w->watchdog.enable);
		}
	}
	return false;
}

/* endless loop with interrupts off ("cli; rjmp ." as after main() returns) and no watchdog to
 * get out of it (cli + wdt_enable + for(;;) is the usual software reset): the AVR is dead */
static bool avr_is_dead(void)
{
	if (g_avr->state != cpu_Running || g_avr->sreg[S_I] || g_avr->pc + 1 > g_avr->flashend)
		return false;
	uint16_t op = (uint16_t)(g_avr->flash[g_avr->pc] | (g_avr->flash[g_avr->pc + 1] << 8));
	return op == 0xCFFF /* rjmp .-2 */ && !watchdog_armed();
}

static bool g_dead;

static avr_cycle_count_t tick(avr_t *avr, avr_cycle_count_t when, void *param)
{
	(void)avr;
	(void)param;
	service_io();
	pace(when);
	if (g_max_cycles && when >= g_max_cycles && !g_stop)
		g_stop = STOP_MAXTIME;
	if (avr_is_dead())
		g_dead = true;
	return when + g_tick_cycles;
}

/* ---------------------------------------------------------------------------------------------- */
/* run loop: avr_callback_run_raw() and avr_cycle_timer_process() of simavr 1.6, except that the
 * cycle a timer callback was due is recorded (exact edge stamps) and that sleeping never waits on
 * the wall clock (pacing is done by the tick). */

static avr_cycle_count_t limited_sleep(avr_t *avr, avr_cycle_count_t sleep)
{
	avr_cycle_count_t n = avr->run_cycle_limit >= sleep ? sleep : avr->run_cycle_limit;
	avr->run_cycle_count = n ? n : 1;
	return sleep;
}

static void timer_insert(avr_t *avr, avr_cycle_timer_slot_p t, avr_cycle_count_t when)
{
	avr_cycle_timer_pool_t *pool = &avr->cycle_timers;
	t->when = when;
	avr_cycle_timer_slot_p loop = pool->timer, last = NULL;
	while (loop && loop->when <= when) {
		last = loop;
		loop = loop->next;
	}
	if (last) {
		t->next = last->next;
		last->next = t;
	} else {
		t->next = pool->timer;
		pool->timer = t;
	}
}

static avr_cycle_count_t timer_process(avr_t *avr)
{
	avr_cycle_timer_pool_t *pool = &avr->cycle_timers;
	while (pool->timer) {
		avr_cycle_timer_slot_p t = pool->timer;
		avr_cycle_count_t when = t->when;
		if (when > avr->cycle)
			return limited_sleep(avr, when - avr->cycle);
		pool->timer = t->next;
		t->next = NULL;
		do {
			g_in_dispatch = 1;
			g_dispatch_when = when;
			avr_cycle_count_t w = t->timer(avr, when, t->param);
			g_in_dispatch = 0;
			when = w > when ? w : 0;
		} while (when && when <= avr->cycle);
		if (when) {
			timer_insert(avr, t, when);
		} else {
			t->next = pool->timer_free;
			pool->timer_free = t;
		}
	}
	return limited_sleep(avr, 1000);
}

static void bv_run(avr_t *avr)
{
	avr_flashaddr_t new_pc = avr->pc;
	if (avr->state == cpu_Running)
		new_pc = avr_run_one(avr);
	avr_cycle_count_t sleep = timer_process(avr);
	avr->pc = new_pc;
	if (avr->state == cpu_Sleeping) {
		if (!avr->sreg[S_I]) {
			avr->state = cpu_Done;
			return;
		}
		avr->cycle += 1 + sleep;
	}
	if ((avr->state == cpu_Running || avr->state == cpu_Sleeping) && avr->interrupt_state)
		avr_service_interrupts(avr);
}

/* ---------------------------------------------------------------------------------------------- */

static void on_signal(int sig) { g_signal = sig; }

static void hold_in_reset(void)
{
	int64_t hold_ns = g_reset_hold_ms * 1000000LL;
	if (g_verbose)
		warnx_("host opened the port: resetting the AVR (held %ld ms)", g_reset_hold_ms);
	g_holding = true;
	g_in_head = g_in_len = 0;
	int64_t end = mono_ns() + hold_ns;
	while (!g_stop && !g_signal) {
		int64_t left = end - mono_ns();
		if (left <= 0)
			break;
		wait_io(left < 1000000 ? left : 1000000);
		service_io();
	}
	g_holding = false;
	g_hold_request = false;
	/* simulated time passes while the board is in reset (scaled like the rest) */
	double sim_s = g_speed > 0 ? (double)hold_ns * 1e-9 * g_speed : (double)hold_ns * 1e-9;
	g_avr->cycle += (avr_cycle_count_t)(sim_s * g_freq);
	do_reset();
	rebase(g_avr->cycle);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bvsim [--mcu atmega328p] [--freq 16000000] [--speed X] [--edges FILE]\n"
	        "             [--vcd FILE] [--max-seconds S] [--no-reset-on-open]\n"
	        "             [--reset-hold-ms MS] [--uart-log] [--verbose] FIRMWARE.elf\n"
	        "  --speed X          simulated seconds per wall second (1, default; 0 = unpaced)\n"
	        "  --edges FILE       log level changes of PB0 PB1 PB2 PB5 PD7 PD2 PD4\n"
	        "  --uart-log         also log UART bytes to the edge file: '<cycle> RX|TX <byte>'\n"
	        "                     (RX: handed to the AVR's UART, TX: written to UDR0)\n"
	        "  --vcd FILE         also write them as a VCD waveform\n"
	        "  --max-seconds S    exit 0 after S seconds of simulated time\n"
	        "  --no-reset-on-open do not reset the AVR when a host opens the port\n"
	        "  --reset-hold-ms MS how long the AVR is held in reset on open (default 50)\n"
	        "stdin commands: 'pin <PORT><BIT> <0|1|z>', 'reset', 'quit'\n");
}

static bool parse_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	const char *mcu = NULL, *edges_path = NULL, *vcd_path = NULL;
	double max_seconds = 0, freq_d = 0;
	static const struct option opts[] = {
		{"mcu", required_argument, NULL, 'm'},
		{"freq", required_argument, NULL, 'f'},
		{"speed", required_argument, NULL, 's'},
		{"edges", required_argument, NULL, 'e'},
		{"vcd", required_argument, NULL, 'v'},
		{"max-seconds", required_argument, NULL, 't'},
		{"no-reset-on-open", no_argument, NULL, 'n'},
		{"reset-hold-ms", required_argument, NULL, 'r'},
		{"verbose", no_argument, NULL, 'V'},
		{"uart-log", no_argument, NULL, 'u'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	double d;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm': mcu = optarg; break;
		case 'f':
			if (!parse_double(optarg, &freq_d) || freq_d < 1000 || freq_d > 100e6) {
				warnx_("--freq: expected a frequency in Hz (e.g. 16000000), got '%s'", optarg);
				return 2;
			}
			break;
		case 's':
			if (!parse_double(optarg, &g_speed) || g_speed < 0) {
				warnx_("--speed: expected a number >= 0 (1 = real time, 0 = unpaced), got '%s'",
				       optarg);
				return 2;
			}
			break;
		case 'e': edges_path = optarg; break;
		case 'u': g_uart_log = true; break;
		case 'v': vcd_path = optarg; break;
		case 't':
			if (!parse_double(optarg, &max_seconds) || max_seconds <= 0) {
				warnx_("--max-seconds: expected a number > 0, got '%s'", optarg);
				return 2;
			}
			break;
		case 'n': g_reset_on_open = false; break;
		case 'r':
			if (!parse_double(optarg, &d) || d < 0 || d > 10000) {
				warnx_("--reset-hold-ms: expected 0..10000, got '%s'", optarg);
				return 2;
			}
			g_reset_hold_ms = (long)d;
			break;
		case 'V': g_verbose = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	const char *elf_path = argv[optind];
	avr_global_logger_set(bv_logger);

	/* ---- firmware */
	struct stat st;
	if (stat(elf_path, &st) != 0 || !S_ISREG(st.st_mode)) {
		warnx_("cannot load firmware '%s': %s", elf_path,
		       errno ? strerror(errno) : "not a regular file");
		return 2;
	}
	elf_firmware_t fw;
	memset(&fw, 0, sizeof(fw));
	if (elf_read_firmware(elf_path, &fw) != 0 || fw.flashsize == 0) {
		warnx_("cannot load firmware '%s': not an AVR ELF file with code (build it with avr-gcc)",
		       elf_path);
		return 2;
	}
	if (!mcu)
		mcu = fw.mmcu[0] ? fw.mmcu : "atmega328p";
	if (freq_d > 0)
		g_freq = (uint32_t)freq_d;
	else if (fw.frequency)
		g_freq = fw.frequency;
	fw.frequency = g_freq;
	g_avr = avr_make_mcu_by_name(mcu);
	if (!g_avr) {
		warnx_("unknown MCU '%s' (simavr has no such core)", mcu);
		return 2;
	}
	avr_init(g_avr);
	g_avr->log = g_verbose ? LOG_TRACE : LOG_WARNING;
	avr_load_firmware(g_avr, &fw);
	g_avr->frequency = g_freq;
	g_avr->run = bv_run;
	g_tick_cycles = g_freq / TICK_HZ ? g_freq / TICK_HZ : 1;
	g_max_cycles = max_seconds > 0 ? (avr_cycle_count_t)(max_seconds * g_freq) : 0;

	/* ---- logs */
	if (edges_path) {
		g_edges = fopen(edges_path, "w");
		if (!g_edges) {
			warnx_("cannot write the edge log '%s': %s", edges_path, strerror(errno));
			return 2;
		}
		setvbuf(g_edges, NULL, _IOFBF, 1 << 16);
		fprintf(g_edges, "# bvsim edges freq=%" PRIu32 "\n", g_freq);
		fflush(g_edges);
	}
	if (vcd_path) {
		g_vcd = fopen(vcd_path, "w");
		if (!g_vcd) {
			warnx_("cannot write the VCD file '%s': %s", vcd_path, strerror(errno));
			return 2;
		}
		setvbuf(g_vcd, NULL, _IOFBF, 1 << 16);
		vcd_header();
	}
	for (size_t i = 0; i < N_LOGPINS; i++) {
		struct logpin *lp = &g_logpins[i];
		lp->irq = avr_io_getirq(g_avr, AVR_IOCTL_IOPORT_GETIRQ(lp->port), lp->bit);
		if (lp->irq)
			avr_irq_register_notify(lp->irq, pin_notify, lp);
		else
			warnx_("warning: %s has no pin P%c%d, not logged", mcu, lp->port, lp->bit);
	}

	/* ---- UART0 <-> pty */
	uint32_t flags = 0;
	if (avr_ioctl(g_avr, AVR_IOCTL_UART_GET_FLAGS('0'), &flags) == 0) {
		/* no console echo of UART lines, no usleep() when the firmware polls UCSR0A */
		flags &= ~(uint32_t)(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
		avr_ioctl(g_avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
	}
	g_uart_in_irq = avr_io_getirq(g_avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	if (g_uart_in_irq) {
		avr_irq_register_notify(avr_io_getirq(g_avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
		                        uart_output_notify, NULL);
		avr_irq_register_notify(avr_io_getirq(g_avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
		                        uart_xon_notify, NULL);
		avr_irq_register_notify(avr_io_getirq(g_avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
		                        uart_xoff_notify, NULL);
	} else {
		warnx_("warning: %s has no UART0, the pty stays silent", mcu);
	}

	int slave = -1;
	char slave_name[256];
	struct termios tio;
	memset(&tio, 0, sizeof(tio));
	cfmakeraw(&tio);
	cfsetspeed(&tio, B115200);
	if (openpty(&g_master, &slave, slave_name, &tio, NULL) != 0) {
		warnx_("openpty failed: %s", strerror(errno));
		return 2;
	}
	tcgetattr(slave, &tio);
	cfmakeraw(&tio);
	tcsetattr(slave, TCSANOW, &tio);
	g_inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (g_inotify >= 0 && inotify_add_watch(g_inotify, slave_name, IN_OPEN) < 0) {
		close(g_inotify);
		g_inotify = -1; /* fall back to POLLHUP transitions: misses a quick close + reopen */
	}
	close(slave); /* the host opens it; POLLHUP on the master tells whether one has it open */
	fcntl(g_master, F_SETFL, fcntl(g_master, F_GETFL) | O_NONBLOCK);
	fcntl(g_master, F_SETFD, FD_CLOEXEC);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	avr_register_io(g_avr, &g_bv_io);
	avr_cycle_timer_register(g_avr, g_tick_cycles, tick, NULL);

	printf("PTY %s\n", slave_name);
	fflush(stdout);
	warnx_("%s on %s at %" PRIu32 " Hz, UART0 on %s, speed %g%s", elf_path, mcu, g_freq, slave_name,
	       g_speed, g_reset_on_open ? ", reset on open" : "");

	/* ---- run */
	g_start_wall_ns = mono_ns();
	g_last_flush_ns = g_start_wall_ns;
	rebase(g_avr->cycle);
	int rc = 0;
	int state = cpu_Running;
	while (!g_stop && !g_signal) {
		state = avr_run(g_avr);
		if (state == cpu_Done || state == cpu_Crashed || g_dead) {
			rc = 3;
			break;
		}
		if (g_hold_request)
			hold_in_reset();
		if (g_reset_request) {
			g_reset_request = false;
			do_reset();
		}
	}
	int64_t wall = mono_ns() - g_start_wall_ns;

	/* ---- exit */
	if (rc == 3) {
		if (g_dead)
			warnx_("the AVR stopped: endless loop with interrupts disabled at pc=0x%04x "
			       "(did main() return?), cycle %" PRIu64 " (%.6f s)",
			       (unsigned)g_avr->pc, (uint64_t)g_avr->cycle, cycles_to_s(g_avr->cycle));
		else if (state == cpu_Done)
			warnx_("the AVR stopped: SLEEP with interrupts disabled at pc=0x%04x, cycle %" PRIu64
			       " (%.6f s)",
			       (unsigned)g_avr->pc, (uint64_t)g_avr->cycle, cycles_to_s(g_avr->cycle));
		else
			warnx_("the AVR crashed (invalid opcode, or execution ran off the end of flash) at "
			       "pc=0x%04x, cycle %" PRIu64 " (%.6f s)",
			       (unsigned)g_avr->pc, (uint64_t)g_avr->cycle, cycles_to_s(g_avr->cycle));
	}
	out_flush();
	flush_logs();
	if (g_edges)
		fclose(g_edges);
	if (g_vcd)
		fclose(g_vcd);
	const char *why = rc == 3              ? "AVR stopped"
	                  : g_signal           ? strsignal(g_signal)
	                  : g_stop == STOP_QUIT ? "quit"
	                                        : "max-seconds reached";
	double sim_s = cycles_to_s(g_avr->cycle);
	warnx_("exit (%s): %.3f s simulated in %.3f s wall (x%.2f), uart tx %" PRIu64 " B rx %" PRIu64
	       " B, tx dropped %" PRIu64 " B (host not reading) discarded %" PRIu64
	       " B (port closed), rx discarded %" PRIu64 " B (in reset), resets %" PRIu64
	       ", pacing rebases %" PRIu64,
	       why, sim_s, wall * 1e-9, wall > 0 ? sim_s / (wall * 1e-9) : 0.0, g_tx_bytes, g_rx_bytes,
	       g_tx_dropped, g_tx_discarded, g_rx_discarded, g_resets, g_rebases);
	close(g_master);
	return rc;
}
