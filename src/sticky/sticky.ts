/**
 * Sticky sessions: a cookie that names the upstream a client was sent to, so
 * its next requests go to the same one while it is available.
 *
 * The cookie value for upstream i is `<id>.<mac>`:
 *   id  = base64url(HMAC-SHA256(secret, "switchyard sticky id\0" + address))[first 9 bytes]   12 chars
 *   mac = base64url(HMAC-SHA256(secret, "switchyard sticky mac\0" + id))[first 12 bytes]      16 chars
 * The id never reveals the address (it is a keyed hash of it) and is stable
 * across restarts and reloads while the secret and the address stay the same,
 * whatever the upstream's position in the list. The mac makes values
 * unforgeable: without the secret a client can only replay values it was given.
 *
 * Every upstream's value and Set-Cookie line are computed when the table is
 * built; route() finds the candidate by the start of its id (ids are not
 * secret) and compares the whole value in constant time, so no HMAC runs per
 * request and nothing is allocated. A tampered, truncated, foreign or unknown value routes nowhere
 * (-1); it is never an error.
 */
import { createHmac, randomBytes } from 'node:crypto'
import type { StickyConfig } from '../config/types'
import type { UpstreamEntry } from '../shared/state'
import { SwitchyardError } from '../errors'
import { cookieScan, locateCookie } from './cookie'

export interface Sticky {
  /** Index into the table this was built for, or -1. Does not check the upstream's health. */
  route (cookieHeader: string | null): number
  /** `Set-Cookie: ...\r\n` pinning a client to table[index] ('' for an index out of range). */
  setCookieLine (index: number): string
}

const ID_BYTES = 9
const MAC_BYTES = 12
const ID_LENGTH = 12 // base64url of 9 bytes
const MAC_LENGTH = 16 // base64url of 12 bytes
const VALUE_LENGTH = ID_LENGTH + 1 + MAC_LENGTH
/** Occurrences of the cookie name tried per header (a client may hold one per Path). */
const MAX_OCCURRENCES = 8

/**
 * The secret every thread must share: the configured one, else a random one.
 * Call once, in the primary, and hand the result to every worker.
 */
export function resolveStickySecret (config: StickyConfig): string {
  return config.secret ?? randomBytes(32).toString('base64url')
}

/** The cookie value that pins a client to `address` under `secret`. */
export function stickyCookieValue (secret: string, address: string): string {
  const id = createHmac('sha256', secret).update('switchyard sticky id\0' + address).digest().subarray(0, ID_BYTES).toString('base64url')
  const mac = createHmac('sha256', secret).update('switchyard sticky mac\0' + id).digest().subarray(0, MAC_BYTES).toString('base64url')
  return id + '.' + mac
}

/**
 * Build the router for `table`. `secret` defaults to config.secret; when the
 * config has none, pass the one the primary made with resolveStickySecret
 * (a secret made here would differ per thread). Throws SWY_ERR_CONFIG_INVALID
 * without one.
 */
export function createSticky (config: StickyConfig, table: readonly UpstreamEntry[], secret: string | undefined = config.secret): Sticky {
  if (secret === undefined || secret === '') {
    throw new SwitchyardError('SWY_ERR_CONFIG_INVALID', 'sticky sessions need a secret: resolveStickySecret() in the primary, shared with every worker')
  }
  return new StickyRouter(config, table, secret)
}

class StickyRouter implements Sticky {
  private readonly cookieName: string
  /** Per table position: the full cookie value and the Set-Cookie line. */
  private readonly values: string[]
  private readonly setCookieLines: string[]
  /** Open-addressing index of values by their id's first characters: table position + 1, 0 = empty. */
  private readonly idSlots: Int32Array
  private readonly idMask: number
  /** 32 - log2(idSlots.length): Fibonacci hashing keeps the top bits. */
  private readonly idShift: number

  constructor (config: StickyConfig, table: readonly UpstreamEntry[], secret: string) {
    this.cookieName = config.cookie
    // RFC 6265 §4.1.1: Path=/ so every request carries it; HttpOnly: scripts
    // have no business with it; SameSite=Lax: not sent on cross-site subresource requests
    const attributes = '; Path=/; HttpOnly; SameSite=Lax' + (config.maxAgeSeconds !== undefined ? '; Max-Age=' + String(config.maxAgeSeconds) : '')
    // flat one-byte strings: route() reads them char by char on every request,
    // and a concatenation result would be a rope behind an indirection
    this.values = table.map((entry) => Buffer.from(stickyCookieValue(secret, entry.address), 'latin1').toString('latin1'))
    this.setCookieLines = this.values.map((value) => 'Set-Cookie: ' + config.cookie + '=' + value + attributes + '\r\n')
    let size = 8
    while (size < table.length * 2) size *= 2
    this.idSlots = new Int32Array(size)
    this.idMask = size - 1
    this.idShift = 32 - Math.log2(size)
    this.values.forEach((value, index) => {
      let slot = prefixHash(value, 0) >>> this.idShift
      while (this.idSlots[slot] !== 0) slot = (slot + 1) & this.idMask
      this.idSlots[slot] = index + 1
    })
  }

  route (cookieHeader: string | null): number {
    if (cookieHeader === null) return -1
    let from = 0
    for (let n = 0; n < MAX_OCCURRENCES; n++) {
      if (locateCookie(cookieHeader, this.cookieName, from) === -1) return -1
      const index = this.verify(cookieHeader, cookieScan.start, cookieScan.end)
      if (index !== -1) return index
      from = cookieScan.next
    }
    return -1
  }

  setCookieLine (index: number): string {
    return index >= 0 && index < this.setCookieLines.length ? this.setCookieLines[index] : ''
  }

  /** The table position whose value is exactly header[start, end), or -1. */
  private verify (header: string, start: number, end: number): number {
    if (end - start !== VALUE_LENGTH) return -1
    const prefix = prefixHash(header, start)
    let slot = prefix >>> this.idShift
    for (;;) {
      const index = this.idSlots[slot] - 1
      if (index === -1) return -1
      const value = this.values[index]
      // the id is no secret: skip other upstreams' ids cheaply, then compare
      // the whole value in constant time
      if (prefixHash(value, 0) === prefix && sameValue(header, start, value)) return index
      slot = (slot + 1) & this.idMask
    }
  }
}

/**
 * An id's first 4 characters (24 of its 72 keyed-hash bits) times the golden
 * ratio: the index takes the top bits (Fibonacci hashing).
 */
function prefixHash (s: string, start: number): number {
  const prefix = (s.charCodeAt(start) << 21) ^ (s.charCodeAt(start + 1) << 14) ^ (s.charCodeAt(start + 2) << 7) ^ s.charCodeAt(start + 3)
  return Math.imul(prefix, 0x9e3779b1) >>> 0
}

/**
 * header[start, start + VALUE_LENGTH) === value, in time independent of where
 * they differ (what crypto.timingSafeEqual does, without copying the header
 * into a Buffer): nothing about the mac leaks through response timing.
 */
function sameValue (header: string, start: number, value: string): boolean {
  let difference = 0
  for (let i = 0; i < VALUE_LENGTH; i++) difference |= header.charCodeAt(start + i) ^ value.charCodeAt(i)
  return difference === 0
}
