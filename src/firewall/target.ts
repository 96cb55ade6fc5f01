/**
 * Where the path and the query sit inside a raw request-target, and one pass
 * over each that says whether anything slower is needed: decoding,
 * normalising, the built-in signatures. Flags are returned as a bit set;
 * nothing here allocates.
 */
import { SIGNATURE_BYTE } from './builtin'
import { SLASH, BACKSLASH, DOT, PERCENT, QUESTION, SEMICOLON } from '../http/tables'

// ---- path flags ---------------------------------------------------------------
/** '%' or a non-ASCII char: the path must go through the decoder. */
export const P_DECODE = 1
/** '\', an empty segment ('//'), or a '.' / '..' segment: the path must be normalised. */
export const P_NORMALISE = 2
/** A '..' segment (or '..;params', which Tomcat reads as '..'). */
export const P_TRAVERSAL = 4
export const P_NUL = 8
/** A byte some script signature needs (see SIGNATURE_BYTE). */
export const P_SUSPICIOUS = 16

// ---- query flags --------------------------------------------------------------
export const Q_DECODE = 1
export const Q_NUL = 2
/** A byte some signature needs, or '..'. */
export const Q_SUSPICIOUS = 4

/**
 * Index where the path begins (RFC 9112 §3.2): 0 for origin-form and
 * asterisk-form; for absolute-form ('http://host/p') the first '/', '\' or
 * '?' after the authority, or the end (an empty path, read as '/').
 */
export function pathStartOf (target: string): number {
  if (target.charCodeAt(0) === SLASH) return 0
  const scheme = target.indexOf('://')
  if (scheme === -1) return 0
  let i = scheme + 3
  for (; i < target.length; i++) {
    const c = target.charCodeAt(i)
    // WHATWG URL: in http(s) URLs '\' ends the authority like '/'
    if (c === SLASH || c === BACKSLASH || c === QUESTION) break
  }
  return i
}

/** Flags for the path target[start, end). */
export function scanPath (target: string, start: number, end: number): number {
  let flags = 0
  let segmentStart = start
  for (let i = start; i < end; i++) {
    const c = target.charCodeAt(i)
    if (c === SLASH || c === BACKSLASH) {
      if (c === BACKSLASH) flags |= P_NORMALISE
      // the first separator opens the path; a segment ends at every later one
      if (i > start) flags |= segmentFlags(target, segmentStart, i, false)
      segmentStart = i + 1
    } else if (c >= 0x80) {
      flags |= P_DECODE | P_SUSPICIOUS
    } else {
      if (c === PERCENT) flags |= P_DECODE
      else if (c === 0) flags |= P_NUL
      else if (c === SEMICOLON) flags |= P_NORMALISE // path parameters go before rules match (decode.ts)
      if (SIGNATURE_BYTE[c] === 1) flags |= P_SUSPICIOUS
    }
  }
  if (segmentStart > start) flags |= segmentFlags(target, segmentStart, end, true)
  return flags
}

/** A segment that is empty (unless last: a trailing slash), '.', '..' or '..;...'. */
function segmentFlags (target: string, start: number, end: number, last: boolean): number {
  const length = end - start
  if (length === 0) return last ? 0 : P_NORMALISE
  if (target.charCodeAt(start) !== DOT) return 0
  if (length === 1) return P_NORMALISE
  if (target.charCodeAt(start + 1) !== DOT) return 0
  if (length === 2) return P_NORMALISE | P_TRAVERSAL
  return target.charCodeAt(start + 2) === SEMICOLON ? P_NORMALISE | P_TRAVERSAL : 0
}

/** Flags for the query target[start, end) (after the '?'). */
export function scanQuery (target: string, start: number, end: number): number {
  let flags = 0
  let previous = 0
  for (let i = start; i < end; i++) {
    const c = target.charCodeAt(i)
    if (c >= 0x80) {
      flags |= Q_DECODE | Q_SUSPICIOUS
    } else {
      if (c === PERCENT) flags |= Q_DECODE
      else if (c === 0) flags |= Q_NUL
      if (SIGNATURE_BYTE[c] === 1 || (c === DOT && previous === DOT)) flags |= Q_SUSPICIOUS
    }
    previous = c
  }
  return flags
}
