/**
 * A TLS client's reset, which node reports as a half-close.
 *
 * node 20's server-side TLSSocket emits 'end' when its TCP connection is
 * reset after the client's last bytes (the event a half-close gives), and the
 * writes that follow neither fail nor drain: they stay queued in the TLS
 * layer. Since a half-closed client still gets its responses (RFC 9112 §9.6,
 * `allowHalfOpen`), such a connection, and the upstream connection serving
 * it, were held until a timeout (30 s for a large response, 60 s for one that
 * was all queued, up to an hour for a tunnel).
 * A plain TCP socket reports the same reset as an error at once.
 *
 * The TCP state tells the two apart when the 'end' comes: after a FIN, while
 * our side is open, the socket is in CLOSE_WAIT (it can still send); after a
 * reset it is CLOSE, and nothing can be sent on it any more. CLOSE also
 * follows a FIN once our own FIN was acknowledged (TIME_WAIT, LAST_ACK): every
 * byte before it was delivered then, so closing loses nothing either.
 *
 * What this relies on, each feature-detected (without any of them the
 * descriptor is -1 and 'end' means a half-close, as before), and pinned by
 * test/unit/peer-reset.test.ts, which fails if one changes:
 * - the raw TCP socket under a server TLSSocket made from a net.Socket
 *   (`_parent`, which src/net/accept.ts reads already) keeps its handle, and
 *   the handle's `fd` names the connection (read by direct-write.ts's
 *   handleDescriptor);
 * - Linux's TCP_INFO, through the addon's `tcpState`.
 */
import type * as net from 'node:net'
import { optionalHandoff } from '../primary/handoff'
import { handleDescriptor } from './direct-write'

/** Linux's TCP_CLOSE (include/net/tcp_states.h): no connection left. */
const TCP_CLOSE = 7

let tcpState: ((fd: number) => number) | null | undefined

function loadTcpState (): ((fd: number) => number) | null {
  if (tcpState === undefined) {
    const addon = optionalHandoff()
    tcpState = addon !== null && typeof addon.tcpState === 'function' ? addon.tcpState : null
  }
  return tcpState
}

/**
 * The descriptor of `raw`, the TCP socket under a TLS client connection, to
 * ask about its state later; -1 when it cannot be known (then a reset stays
 * taken for a half-close). Valid while the TLS socket is not destroyed.
 */
export function tcpDescriptor (raw: net.Socket): number {
  return loadTcpState() === null ? -1 : handleDescriptor(raw)
}

/** Is the TCP connection of `fd` (from tcpDescriptor, -1 for none) gone, reset or fully closed? */
export function connectionGone (fd: number): boolean {
  return fd !== -1 && (tcpState as (fd: number) => number)(fd) === TCP_CLOSE
}
