/**
 * Which address a request is charged to. Behind a load balancer or CDN every
 * connection comes from the same few proxy addresses; those proxies append the
 * address they saw to X-Forwarded-For. Only entries written by proxies we trust
 * mean anything: a client can put whatever it likes in the header, but it can
 * only add to its left end, because each trusted proxy appends on the right.
 *
 * So, when the socket peer is in `trustProxy`, walk X-Forwarded-For from the
 * right, skipping trusted addresses, and take the first untrusted one: the
 * address the outermost trusted proxy saw. If every entry is trusted, the
 * leftmost is the client. An entry that is not an IP literal (e.g. nginx's
 * "unknown") stops the walk at the last trusted address seen: anything further
 * left could have been written by the client. (This is how Express's
 * `trust proxy` / proxy-addr and nginx's real_ip_recursive behave.)
 *
 * Several X-Forwarded-For fields must be joined with "," before the call
 * (RFC 9110 §5.3), in order. With no trustProxy the header is never parsed.
 */
import { isIP } from 'node:net'
import { CidrSet } from '../net/cidr'

export type ClientIpResolver = (socketIp: string, xForwardedFor: string | null) => string

export function createClientIpResolver (trustProxy: readonly string[]): ClientIpResolver {
  if (trustProxy.length === 0) return socketAddress
  // CidrSet.has parses into a scratch buffer: no allocation, no memo needed
  const trusted = new CidrSet(trustProxy)

  return function resolveClientIp (socketIp: string, xForwardedFor: string | null): string {
    if (xForwardedFor === null || !trusted.has(socketIp)) return socketIp
    let lastTrusted = socketIp
    let end = xForwardedFor.length
    while (end > 0) {
      const comma = xForwardedFor.lastIndexOf(',', end - 1)
      let start = comma + 1
      let stop = end
      while (start < stop && isOws(xForwardedFor.charCodeAt(start))) start++
      while (stop > start && isOws(xForwardedFor.charCodeAt(stop - 1))) stop--
      if (stop > start) {
        const hop = xForwardedFor.slice(start, stop)
        if (isIP(hop) === 0) return lastTrusted
        if (!trusted.has(hop)) return hop
        lastTrusted = hop
      }
      if (comma < 0) break
      end = comma
    }
    return lastTrusted
  }
}

function socketAddress (socketIp: string): string {
  return socketIp
}

/** Optional whitespace around list elements (RFC 9110 §5.6.1, §5.6.3). */
function isOws (c: number): boolean {
  return c === 0x20 || c === 0x09
}
