/**
 * Request IDs (config.requestId): every request carries one ID, in the
 * configured header (default X-Request-Id), to the upstream, back to the
 * client and into the access log, so one request can be followed through
 * every hop's logs.
 *
 * An incoming ID is kept when it is sane: 1-128 characters from a URL-safe
 * set (letters, digits and `-_.:+/=@`), one field line. Anything else (too
 * long, spaces, quotes, control bytes, two lines) is dropped and replaced:
 * it would go into log lines and into the response. A new ID is this
 * thread's random prefix (drawn once, at start) and a counter, in base 36:
 * one string concatenation per request, no UUID, no randomness per request.
 */
import { randomBytes } from 'node:crypto'
import type { HeadParser } from '../http/head-parser'
import { LOWER } from '../http/tables'
import type { RequestIdConfig } from '../config/types'

export const MAX_REQUEST_ID_LENGTH = 128

/** 1 for a character a kept ID may hold. */
const ID_CHAR = new Uint8Array(128)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:+/=@') ID_CHAR[c.charCodeAt(0)] = 1

export function saneRequestId (id: string): boolean {
  const n = id.length
  if (n === 0 || n > MAX_REQUEST_ID_LENGTH) return false
  for (let i = 0; i < n; i++) {
    const c = id.charCodeAt(i)
    if (c >= 128 || ID_CHAR[c] === 0) return false
  }
  return true
}

/** The per-request fields request IDs fill in (on Exchange). */
export interface RequestIdTarget {
  /** The request's ID ('' while request IDs are off). */
  requestId: string
  /** The field line that carries a new ID upstream; '' when the client's own is forwarded as received. */
  requestIdLine: string
}

/** One per thread (ctx.requestIds), null when request IDs are off. */
export class RequestIds {
  /** The header, lower case (as the parser looks it up). */
  header = ''
  /** `Name: ` as the field line starts (the configured spelling). */
  linePrefix = ''
  private readonly prefix: string
  private counter = 0

  constructor (config: RequestIdConfig, prefix = randomBytes(6).toString('base64url')) {
    this.prefix = prefix + '-'
    this.configure(config)
  }

  /** Reload: a new header name; the prefix and counter go on, so no ID repeats. */
  configure (config: RequestIdConfig): void {
    this.header = config.header.toLowerCase()
    this.linePrefix = canonicalName(config.header) + ': '
  }

  /**
   * Phase: request ID. The client's sane ID is kept (and forwarded with its
   * own field line); otherwise its lines are marked not to be forwarded and a
   * new ID goes upstream in a line of ours.
   */
  assign (p: HeadParser, out: RequestIdTarget): void {
    const incoming = p.header(this.header)
    if (incoming !== null && saneRequestId(incoming)) {
      out.requestId = incoming
      out.requestIdLine = ''
      return
    }
    if (incoming !== null) skipFields(p, this.header)
    // The line is made first and the ID cut out of it: slice() flattens the line once (it is written
    // upstream and to the client as it is), and the ID is a slice of those bytes. Made the other way
    // round, an ID of 13 characters or more is a cons string that the access log's builder has to
    // flatten again, a second copy per request (V8 joins such strings lazily).
    const line = this.linePrefix + this.prefix + (++this.counter).toString(36) + '\r\n'
    out.requestIdLine = line
    out.requestId = line.slice(this.linePrefix.length, line.length - 2)
  }

  /** The field line for the response to the client. */
  responseLine (id: string): string {
    return this.linePrefix + id + '\r\n'
  }
}

/** Mark every field line named `lowerName` not to be forwarded (serialize.ts skips them). */
export function skipFields (p: HeadParser, lowerName: string): void {
  const n = lowerName.length
  const buf = p.buf
  outer:
  for (let i = 0; i < p.headerCount; i++) {
    const s = p.nameStart(i)
    if (p.nameEnd(i) - s !== n) continue
    for (let j = 0; j < n; j++) if (LOWER[buf[s + j]] !== lowerName.charCodeAt(j)) continue outer
    p.fieldSkip[i] = 1
  }
}

/** x-request-id -> X-Request-Id (how the field is usually written; names are case-insensitive anyway). */
function canonicalName (name: string): string {
  return name.split('-').map((w) => w.length === 0 ? w : w[0].toUpperCase() + w.slice(1)).join('-')
}

/** The thread's request IDs after a (re)load: null when off, the same generator (prefix, counter) when on. */
export function requestIdsFor (config: RequestIdConfig, current: RequestIds | null): RequestIds | null {
  if (!config.enabled) return null
  if (current === null) return new RequestIds(config)
  current.configure(config)
  return current
}
