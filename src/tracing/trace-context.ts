/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent`
 * field parsed from bytes into a reused record, and the sampling decision.
 *
 *   traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
 *                ver trace-id (32 hex)               parent-id (16 hex) flags
 *
 * §3.2.2: lower-case hex only; an all-zero trace-id or parent-id is invalid;
 * version ff is invalid; a higher version than 00 is parsed as 00 when its
 * first fields have the 00 layout (§3.2.4 "parse the fields it knows").
 */

/** One parsed traceparent (reused per connection). */
export class TraceParent {
  valid = false
  traceId = ''
  parentId = ''
  sampled = false

  reset (): void {
    this.valid = false
    this.traceId = ''
    this.parentId = ''
    this.sampled = false
  }
}

function isLowerHex (s: string, from: number, to: number): boolean {
  let nonZero = false
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x30 && c <= 0x39) { if (c !== 0x30) nonZero = true } else if (c >= 0x61 && c <= 0x66) nonZero = true
    else return false
  }
  return nonZero
}

/** Parse `value` (a traceparent field value, or null when absent) into `out`; false when invalid or absent. */
export function parseTraceParent (value: string | null, out: TraceParent): boolean {
  out.reset()
  if (value === null) return false
  const v = value.trim()
  // 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55
  if (v.length < 55 || v.charCodeAt(2) !== 0x2d || v.charCodeAt(35) !== 0x2d || v.charCodeAt(52) !== 0x2d) return false
  const version = v.slice(0, 2)
  if (version === 'ff' || !/^[0-9a-f]{2}$/.test(version)) return false
  // version 00 is exactly 55 characters; a later version may append '-' and more
  if (version === '00' ? v.length !== 55 : (v.length > 55 && v.charCodeAt(55) !== 0x2d)) return false
  if (!isLowerHex(v, 3, 35) || !isLowerHex(v, 36, 52)) return false
  const flags = v.slice(53, 55)
  if (!/^[0-9a-f]{2}$/.test(flags)) return false
  out.valid = true
  out.traceId = v.slice(3, 35)
  out.parentId = v.slice(36, 52)
  out.sampled = (parseInt(flags, 16) & 1) === 1
  return true
}

/**
 * The trace-ID ratio decision (OpenTelemetry's TraceIdRatioBased sampler):
 * deterministic in the trace ID, so every hop with the same ratio agrees.
 * The low 8 bytes of the ID, as an unsigned number, under ratio * 2^64 —
 * computed on the last 13 hex digits (52 bits, exact in a double).
 */
export function sampledByRatio (traceId: string, ratio: number): boolean {
  if (ratio >= 1) return true
  if (ratio <= 0) return false
  const low = parseInt(traceId.slice(19), 16) // 13 hex digits
  return low < ratio * 2 ** 52
}
