/**
 * Byte constants and 256-entry lookup tables for the parsers (undici/llhttp
 * style): one array read classifies a byte.
 */

export const CR = 0x0d
export const LF = 0x0a
export const SP = 0x20
export const HTAB = 0x09
export const COLON = 0x3a
export const SEMICOLON = 0x3b
export const COMMA = 0x2c
export const DQUOTE = 0x22
export const BACKSLASH = 0x5c
export const SLASH = 0x2f
export const EQUALS = 0x3d
export const DOT = 0x2e
export const PERCENT = 0x25
export const QUESTION = 0x3f

function table (accept: (b: number) => boolean): Uint8Array {
  const t = new Uint8Array(256)
  for (let b = 0; b < 256; b++) t[b] = accept(b) ? 1 : 0
  return t
}

const TCHAR_SYMBOLS = "!#$%&'*+-.^_`|~"

/** RFC 9110 §5.6.2 tchar: the bytes of a token (method, field name, coding). */
export const TOKEN = table((b) =>
  (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ||
  TCHAR_SYMBOLS.includes(String.fromCharCode(b)))

/**
 * RFC 9110 §5.5 field-value bytes: VCHAR, obs-text, SP, HTAB. Everything else
 * (NUL, other CTLs, bare CR, DEL) is rejected: §5.5 "a recipient of CR, LF, or
 * NUL within a field value MUST either reject the message or replace ... with SP".
 */
export const FIELD_VALUE = table((b) => b === HTAB || (b >= 0x20 && b !== 0x7f))

/**
 * Request-target bytes (RFC 9112 §3.2, RFC 3986): visible ASCII only. No SP,
 * no CTL, no DEL, no obs-text (raw non-ASCII must be percent-encoded), and no
 * '#': no request-target form has a fragment (RFC 9110 §7.1: the target URI
 * excludes it), so a '#' would only let two parsers disagree on the path.
 */
export const TARGET = table((b) => b > 0x20 && b < 0x7f && b !== 0x23)

/** Hex digit value, or 0xff. */
export const HEX = (() => {
  const t = new Uint8Array(256).fill(0xff)
  for (let i = 0; i < 10; i++) t[0x30 + i] = i
  for (let i = 0; i < 6; i++) { t[0x41 + i] = 10 + i; t[0x61 + i] = 10 + i }
  return t
})()

/** ASCII lower-casing for case-insensitive compares of names. */
export const LOWER = (() => {
  const t = new Uint8Array(256)
  for (let b = 0; b < 256; b++) t[b] = b >= 0x41 && b <= 0x5a ? b + 0x20 : b
  return t
})()

/** Case-insensitive compare of buf[start, start+lower.length) with a lower-case ASCII constant. */
export function equalsLower (buf: Uint8Array, start: number, end: number, lower: Uint8Array): boolean {
  const n = lower.length
  if (end - start !== n) return false
  for (let i = 0; i < n; i++) if (LOWER[buf[start + i]] !== lower[i]) return false
  return true
}

export function ascii (s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0))
}
