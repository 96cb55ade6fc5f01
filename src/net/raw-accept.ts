/**
 * Accepted connections as handles, before node wraps them in a net.Socket.
 *
 * A net.Server turns every connection libuv accepts into a net.Socket (a
 * Duplex with its stream state, a getpeername, listeners) and emits
 * 'connection'. The primary then had no use for most of it: in worker mode it
 * read the peer, duplicated the descriptor for a worker and destroyed the
 * socket; in sequential mode it did the same to wrap the duplicate again with
 * the read arena (src/net/read-arena.ts). With `Connection: close` traffic that
 * socket's construction and teardown were about a fifth of a new connection's
 * CPU. Taking the accepted handle itself, worker mode duplicates its descriptor
 * and closes it, and sequential mode wraps it once, reading into the arena.
 *
 * What this relies on that node does not document, all of it here:
 * - a listening net.Server's `_handle.onconnection(err, clientHandle)`, the
 *   callback libuv's accept reaches (node's own `onconnection` in lib/net.js);
 * - the client handle's `fd`, `getpeername(out)` and `close()` (TCPWrap);
 * - `new net.Socket({ handle })`, as node's `onconnection` builds its sockets.
 * takeAccepts() checks the server's side when it installs itself and the
 * client handle's on every connection; anything unexpected (and every accept
 * error) goes to node's own callback, which builds the socket and emits
 * 'connection' (or 'error') as before, so the server's listeners stay the
 * fallback. test/unit/raw-accept.test.ts pins each of these and fails if one
 * changes.
 *
 * Connections taken here are not counted in the server's `_connections`
 * (nothing of ours reads it: each thread counts its clients itself), and
 * `server.close()` does not wait for them: the drain at stop reaches them
 * through each thread's listeners (ListenerRuntime.open, src/net/accept.ts),
 * and worker mode's descriptors were never the server's. Nor is node's `net.server.socket`
 * diagnostics channel published for them.
 */
import * as net from 'node:net'

/** An accepted connection's handle (node's TCPWrap), as far as it is used here. */
export interface AcceptedHandle {
  readonly fd: number
  getpeername (out: PeerName): number
  close (): void
}

/** What getpeername() fills in. */
export interface PeerName {
  address?: string
  port?: number
  family?: string
}

export type OnAcceptedHandle = (handle: AcceptedHandle, listener: number) => void

type NodeOnConnection = (this: ServerHandle, err: number, client: unknown) => void

const kTaker = Symbol('switchyard.rawAccept')

interface ServerHandle {
  onconnection: NodeOnConnection
  [kTaker]?: Taker
}

interface Taker {
  readonly listener: number
  readonly onHandle: OnAcceptedHandle
  readonly nodeOnConnection: NodeOnConnection
}

/**
 * From now on, hand `server`'s accepted connections to `onHandle` as handles
 * (`listener`: passed along). Call once the server listens. false, and
 * nothing changed, when this node's server handle is not what this relies on:
 * its connections keep coming as 'connection' events.
 */
export function takeAccepts (server: net.Server, listener: number, onHandle: OnAcceptedHandle): boolean {
  const handle = (server as unknown as { _handle?: ServerHandle | null })._handle
  if (handle === null || handle === undefined || typeof handle.onconnection !== 'function') return false
  if (handle[kTaker] !== undefined) return true
  handle[kTaker] = { listener, onHandle, nodeOnConnection: handle.onconnection }
  handle.onconnection = onRawConnection
  return true
}

function onRawConnection (this: ServerHandle, err: number, client: unknown): void {
  const taker = this[kTaker] as Taker
  if (err === 0 && isAcceptedHandle(client)) { taker.onHandle(client, taker.listener); return }
  taker.nodeOnConnection.call(this, err, client) // node's path: 'error', or a net.Socket and 'connection'
}

/** Does `client` have what this module uses of an accepted TCP handle? */
export function isAcceptedHandle (client: unknown): client is AcceptedHandle {
  if (typeof client !== 'object' || client === null) return false
  const h = client as { fd?: unknown, getpeername?: unknown, close?: unknown }
  return typeof h.fd === 'number' && h.fd >= 0 && typeof h.getpeername === 'function' && typeof h.close === 'function'
}

const peer: PeerName = { address: undefined, port: undefined, family: undefined }

/** The connection's peer ("ip", port), read into one reused object; address undefined when it is gone. */
export function peerOf (handle: AcceptedHandle): PeerName {
  peer.address = undefined
  peer.port = undefined
  peer.family = undefined
  handle.getpeername(peer)
  return peer
}

/**
 * A net.Socket on an accepted handle, reading at once (into `onread`'s
 * buffer when given), as node's own accept would make it.
 */
export function socketOnHandle (handle: AcceptedHandle, onread: net.OnReadOpts | undefined): net.Socket {
  const options = onread !== undefined
    ? { handle, readable: true, writable: true, allowHalfOpen: true, onread }
    : { handle, readable: true, writable: true, allowHalfOpen: true }
  return new net.Socket(options as net.SocketConstructorOpts)
}
