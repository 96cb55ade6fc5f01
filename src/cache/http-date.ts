/**
 * HTTP-date (RFC 9110 §5.6.7) to epoch milliseconds, without Date.parse:
 * Date.parse accepts far more than HTTP allows and reads asctime dates as
 * local time. A recipient MUST accept all three formats:
 *
 *   IMF-fixdate   Sun, 06 Nov 1994 08:49:37 GMT
 *   rfc850-date   Sunday, 06-Nov-94 08:49:37 GMT   (obsolete)
 *   asctime-date  Sun Nov  6 08:49:37 1994         (obsolete)
 *
 * Returns NaN for anything else; callers decide what an invalid date means
 * (RFC 9111 §5.3: an invalid Expires, "0" especially, is a time in the past).
 * `nowMs` is the recipient's clock, which the rfc850 two-digit year is read
 * against: always the real time of receipt, never 0 (relative to 1970, every
 * "…-26" date would be 1926).
 */

const MONTHS = 'JanFebMarAprMayJunJulAugSepOctNovDec'

export function parseHttpDate (value: string, nowMs: number): number {
  let s = 0
  let e = value.length
  while (s < e && (value.charCodeAt(s) === 0x20 || value.charCodeAt(s) === 0x09)) s++
  while (e > s && (value.charCodeAt(e - 1) === 0x20 || value.charCodeAt(e - 1) === 0x09)) e--
  const comma = value.indexOf(',', s)
  if (comma < 0 || comma >= e) return asctime(value, s, e)
  if (comma === s + 3) return imfFixdate(value, comma + 1, e)
  return rfc850(value, comma + 1, e, nowMs)
}

/** " 06 Nov 1994 08:49:37 GMT" from `at` (just past the comma). */
function imfFixdate (v: string, at: number, end: number): number {
  if (end - at !== 25 || v.charCodeAt(at) !== 0x20 || v.charCodeAt(at + 3) !== 0x20 ||
    v.charCodeAt(at + 7) !== 0x20 || v.charCodeAt(at + 12) !== 0x20 || !isGmt(v, at + 21)) return NaN
  return build(digits(v, at + 8, 4), month(v, at + 4), digits(v, at + 1, 2), v, at + 13)
}

/** " 06-Nov-94 08:49:37 GMT" */
function rfc850 (v: string, at: number, end: number, nowMs: number): number {
  if (end - at !== 23 || v.charCodeAt(at) !== 0x20 || v.charCodeAt(at + 3) !== 0x2d ||
    v.charCodeAt(at + 7) !== 0x2d || v.charCodeAt(at + 10) !== 0x20 || !isGmt(v, at + 19)) return NaN
  const yy = digits(v, at + 8, 2)
  if (yy < 0) return NaN
  // RFC 9110 §5.6.7: a two-digit year is read in the current century, unless that
  // timestamp "appears to be more than 50 years in the future": then it is the most
  // recent past year with the same last two digits. Compared as instants, not years
  // (in 2026, 76 is 2076 until the moment 2076-11-06 08:49:37 is over 50 years away).
  const now = new Date(Number.isFinite(nowMs) ? nowMs : 0)
  const thisYear = now.getUTCFullYear()
  const century = thisYear - (thisYear % 100)
  const mon = month(v, at + 4)
  const day = digits(v, at + 1, 2)
  const ms = build(century + yy, mon, day, v, at + 11)
  if (Number.isNaN(ms)) return ms
  now.setUTCFullYear(thisYear + 50)
  return ms > now.getTime() ? build(century + yy - 100, mon, day, v, at + 11) : ms
}

/** "Sun Nov  6 08:49:37 1994" */
function asctime (v: string, s: number, end: number): number {
  if (end - s !== 24 || v.charCodeAt(s + 3) !== 0x20 || v.charCodeAt(s + 7) !== 0x20 ||
    v.charCodeAt(s + 10) !== 0x20 || v.charCodeAt(s + 19) !== 0x20) return NaN
  const day = v.charCodeAt(s + 8) === 0x20 ? digits(v, s + 9, 1) : digits(v, s + 8, 2)
  return build(digits(v, s + 20, 4), month(v, s + 4), day, v, s + 11)
}

/** "hh:mm:ss" at `t`, then Date.UTC after range checks. */
function build (year: number, mon: number, day: number, v: string, t: number): number {
  if (v.charCodeAt(t + 2) !== 0x3a || v.charCodeAt(t + 5) !== 0x3a) return NaN
  const h = digits(v, t, 2)
  const m = digits(v, t + 3, 2)
  const sec = digits(v, t + 6, 2)
  if (year < 0 || mon < 0 || day < 1 || day > 31 || h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 60) return NaN
  return Date.UTC(year, mon, day, h, m, sec)
}

function digits (v: string, at: number, count: number): number {
  let n = 0
  for (let i = 0; i < count; i++) {
    const d = v.charCodeAt(at + i) - 0x30
    if (!(d >= 0 && d <= 9)) return -1
    n = n * 10 + d
  }
  return n
}

/** 0..11, or -1; month names are case-sensitive (RFC 9110 §5.6.7). */
function month (v: string, at: number): number {
  for (let m = 0; m < 12; m++) {
    if (v.charCodeAt(at) === MONTHS.charCodeAt(m * 3) && v.charCodeAt(at + 1) === MONTHS.charCodeAt(m * 3 + 1) &&
      v.charCodeAt(at + 2) === MONTHS.charCodeAt(m * 3 + 2)) return m
  }
  return -1
}

function isGmt (v: string, at: number): boolean {
  return v.charCodeAt(at) === 0x20 && v.charCodeAt(at + 1) === 0x47 && v.charCodeAt(at + 2) === 0x4d && v.charCodeAt(at + 3) === 0x54
}
