/* units.h - quantities with their units written out, as operators write them in YAML.
 *
 * bytes:    "80GiB", "1.5TB", "512MiB", "1TiB", "4096" (plain = bytes). SI (kB, MB, GB, TB,
 *           PB: powers of 1000) and IEC (KiB, MiB, GiB, TiB, PiB: powers of 1024).
 * bitrate:  "400Gbps", "25Gbps", "100Mbps", "10kbps", "1Tbps" -> bits per second.
 * duration: "90s", "30m", "2h", "7d", "1h30m", plain integer = seconds.
 * price:    "210.0", "12.345" -> thousandths of a currency unit (at most 3 decimals).
 * Decimal fractions are exact to the unit; overflow of uint64 is an error.
 */
#ifndef CPN_UNITS_H
#define CPN_UNITS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

int cpn_parse_bytes(const char *text, uint64_t *out) CPN_WUR;
int cpn_parse_bitrate(const char *text, uint64_t *out) CPN_WUR;
int cpn_parse_duration(const char *text, uint64_t *seconds) CPN_WUR;
int cpn_parse_price(const char *text, uint64_t *milli) CPN_WUR;

/* Human forms for tables: "80GiB", "400Gbps", "2h0m", "210.000". Truncate safely. */
void cpn_fmt_bytes(uint64_t bytes, char *out, size_t cap);
void cpn_fmt_bitrate(uint64_t bps, char *out, size_t cap);
void cpn_fmt_duration(uint64_t seconds, char *out, size_t cap);
void cpn_fmt_price(uint64_t milli, char *out, size_t cap);

#endif
