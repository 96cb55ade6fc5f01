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

/** Distinct addresses whose trust is remembered before the memo is cleared. */
const TRUST_MEMO_SIZE = 1024

export function createClientIpResolver (trustProxy: readonly string[]): ClientIpResolver {
  if (trustProxy.length === 0) return socketAddress
  const trusted = new CidrSet(trustProxy)
  // CidrSet.has parses the address each time; the same few proxy addresses come
  // back on every request, so remember the answers (bounded: cleared when full)
  const memo = new Map<string, boolean>()
  const isTrusted = (address: string): boolean => {
    let answer = memo.get(address)
    if (answer === undefined) {
      answer = trusted.has(address)
      if (memo.size >= TRUST_MEMO_SIZE) memo.clear()
      memo.set(address, answer)
    }
    return answer
  }

  return function resolveClientIp (socketIp: string, xForwardedFor: string | null): string {
    if (xForwardedFor === null || !isTrusted(socketIp)) return socketIp
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
        if (!isTrusted(hop)) return hop
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
