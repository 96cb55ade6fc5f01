/**
 * From an accepted TCP socket to the request path, on the thread that serves
 * it (a worker, or the primary in sequential mode). A connection goes through
 * at most three steps, each only when its listener has it on:
 *
 *   PROXY protocol header (trusted peers only) -> TLS handshake -> ClientConnection
 *
 * The listener's runtime (ListenerRuntime) is built once per thread from the
 * config and the primary's TLS material; connections find it by the index the
 * primary sent with them. Failures at either step close only that connection,
 * are counted per listener and reason in shared memory, and log one line.
 */
import type * as net from 'node:net'
import type * as tls from 'node:tls'
import type { ListenerConfig } from '../config/types'
import { listenerName } from '../config/listeners'
import type { ProxyContext } from '../proxy/context'
import { ClientConnection, onClientRead } from '../proxy/client'
import { arenaRead } from './read-arena'
import { tcpDescriptor } from './peer-reset'
import { directDescriptor, sendLastWord } from './direct-write'
import { errorReply } from '../http/replies'
import { TlsTerminator, type TlsListenerMaterial, type TlsMaterial } from '../tls/terminator'
import {
  L_OPEN_CONNECTIONS, L_HANDSHAKES_OK, L_HANDSHAKES_RESUMED, L_HANDSHAKE_ERRORS, TLS_ERROR_REASONS, L_PROXY_REJECTED, L_REFUSED,
  L_REFUSED_PER_CLIENT, W_ACCEPTED_OPEN,
} from '../shared/layout'
import { logger } from '../log'
import { CidrSet } from './cidr'
import { ProxyHeaderParser, PP_ERROR, PP_INCOMPLETE } from './proxy-protocol'
import { acquireClient, releaseClient, CLIENT_REFUSED } from './client-table'
import type { ErrorCode } from '../errors'

export type TlsErrorReason = typeof TLS_ERROR_REASONS[number]

/** One listener as a thread serves it. */
export class ListenerRuntime {
  readonly index: number
  readonly name: string
  /** 'https' when connections arrive over TLS: X-Forwarded-Proto and Forwarded proto= say so. */
  readonly proto: 'http' | 'https'
  /** The `Location` authority suffix for httpsRedirect (':8443', or '' for 443); null when off. */
  redirectPort: string | null = null
  tls: TlsTerminator | null = null
  /** proxyProtocol.trustedCidrs: peers that must send a PROXY header (and only they may); null when off. */
  proxyTrusted: CidrSet | null = null
  readonly ctx: ProxyContext
  /** Its connections accepted on this thread and not yet closed, in a TLS handshake or a PROXY header included (the drain at stop). */
  readonly open = new Set<net.Socket>()

  constructor (ctx: ProxyContext, index: number, config: ListenerConfig) {
    this.ctx = ctx
    this.index = index
    this.name = listenerName(config)
    this.proto = config.tls !== undefined ? 'https' : 'http'
  }
}

const kListener = Symbol('switchyard.listener')
/** The worker slot whose W_ACCEPTED_OPEN counts the connection (-1: not counted, no slot yet). */
const kCountedIn = Symbol('switchyard.countedIn')
/** Its client's entry in the client connection table (client-table.ts), -1 when not counted there. */
const kClientEntry = Symbol('switchyard.clientEntry')
const kClientIp = Symbol('switchyard.clientIp')
const kClientPort = Symbol('switchyard.clientPort')
interface AcceptedSocket extends net.Socket {
  [kListener]: ListenerRuntime
  [kClientIp]: string
  /** The client's port: the socket's, or the PROXY header's source port. */
  [kClientPort]: number
  [kCountedIn]: number
  [kClientEntry]: number
}

/**
 * The thread's listeners for `config`: kept across reloads (their TLS servers
 * hold the contexts), settings refreshed. `tlsPort` is the bound port of the
 * first TLS listener (the httpsRedirect target), 0 when there is none.
 */
export function installListeners (ctx: ProxyContext, listeners: readonly ListenerConfig[], material: TlsMaterial | null, tlsPort: number): void {
  const runtimes: ListenerRuntime[] = []
  for (let i = 0; i < listeners.length; i++) {
    const l = listeners[i]
    const previous = ctx.listeners[i]
    const runtime = previous !== undefined && previous.name === listenerName(l) && (previous.proto === 'https') === (l.tls !== undefined)
      ? previous
      : new ListenerRuntime(ctx, i, l)
    runtime.proxyTrusted = l.proxyProtocol !== undefined ? new CidrSet(l.proxyProtocol.trustedCidrs) : null
    runtime.redirectPort = l.httpsRedirect && tlsPort !== 0 ? (tlsPort === 443 ? '' : `:${tlsPort}`) : null
    runtimes.push(runtime)
  }
  ctx.listeners = runtimes
  if (material !== null) applyTlsMaterial(ctx, material)
}

/** New certificates or ticket keys from the primary (start, reload, ACME, rotation). */
export function applyTlsMaterial (ctx: ProxyContext, material: TlsMaterial): void {
  for (const runtime of ctx.listeners) {
    const m: TlsListenerMaterial | null | undefined = material.listeners[runtime.index]
    if (m === null || m === undefined || m.certificates.length === 0) continue
    if (runtime.tls === null) runtime.tls = new TlsTerminator(m, material.ticketKeys, ctx.config.timeouts.clientHeaderMs, onHandshake, onHandshakeError)
    else runtime.tls.update(m, material.ticketKeys)
  }
}

/** Plain HTTP with no PROXY header to read first: the request path reads this listener's sockets into the read arena. */
const CLIENT_READ = arenaRead(onClientRead)

/**
 * Options for wrapping a descriptor from listener `index` that a worker was
 * handed: a plain listener's sockets read into the thread's read arena
 * (src/net/read-arena.ts); TLS and PROXY protocol listeners read with 'data'.
 */
export function adoptedSocketOptions (ctx: ProxyContext, index: number, fd: number): net.SocketConstructorOpts & { onread?: net.OnReadOpts } {
  return readsIntoArena(ctx, index)
    ? { fd, readable: true, writable: true, allowHalfOpen: true, onread: CLIENT_READ }
    : { fd, readable: true, writable: true, allowHalfOpen: true }
}

/** How listener `index`'s client sockets read: into the read arena (its `onread`), or undefined for 'data'. */
export function clientOnRead (ctx: ProxyContext, index: number): net.OnReadOpts | undefined {
  return readsIntoArena(ctx, index) ? CLIENT_READ : undefined
}

/** Does the request path read listener `index`'s sockets into the read arena (plain HTTP, no PROXY header)? */
export function readsIntoArena (ctx: ProxyContext, index: number): boolean {
  const listener = ctx.listeners[index] ?? ctx.listeners[0]
  return listener === undefined || (listener.proto === 'http' && listener.proxyTrusted === null)
}

/** A connected socket from listener `index`: run its listener's steps, then the request path. */
export function acceptConnection (ctx: ProxyContext, index: number, socket: net.Socket, peerIp: string): void {
  const listener = ctx.listeners[index] ?? ctx.listeners[0]
  // phase: the connection cap, before anything is read (a TLS handshake costs far more than this sum);
  // counted, then compared: threads accepting at once cannot all pass it
  const slot = ctx.workerSlot
  if (slot !== -1) ctx.state.addWorker(slot, W_ACCEPTED_OPEN, 1)
  const cap = ctx.config.limits.maxConnections
  if (cap > 0 && ctx.state.acceptedOpen() > cap) {
    if (slot !== -1) ctx.state.addWorker(slot, W_ACCEPTED_OPEN, -1)
    refuseConnection(listener, socket, REFUSED_TOTAL, cap, '')
    return
  }
  const s = socket as AcceptedSocket
  s[kListener] = listener
  s[kClientPort] = socket.remotePort ?? 0
  s[kCountedIn] = slot
  s[kClientEntry] = -1
  ctx.state.addListener(listener.index, L_OPEN_CONNECTIONS, 1)
  listener.open.add(socket)
  socket.once('close', onAcceptedClose)
  // an IPv4 peer on a dual-stack socket reads '::ffff:1.2.3.4': it is 1.2.3.4
  const ip = peerIp.startsWith('::ffff:') && peerIp.includes('.') ? peerIp.slice(7) : peerIp
  if (listener.proxyTrusted === null) { afterProxyHeader(listener, s, ip); return }
  if (!listener.proxyTrusted.has(ip)) { rejectProxy(listener, s, ip, 'the peer is not in proxyProtocol.trustedCidrs'); return }
  new ProxyHeaderReader(listener, s, ip) // eslint-disable-line no-new
}

/** Which cap refused a connection: limits.maxConnections, limits.maxConnectionsPerClient. */
const REFUSED_TOTAL = 0
const REFUSED_PER_CLIENT = 1
const REFUSED_FIELD = [L_REFUSED, L_REFUSED_PER_CLIENT]
const REFUSED_KEY = ['maxConnections', 'maxConnectionsPerClient']
/** Refusals since the last log line, and when that line was written (one line a second at most, per thread and cap). */
const refusedUnlogged = [0, 0]
const refusalLoggedAt = [0, 0]

/**
 * A cap reached: close at once, count it on the listener (switchyard_connections_refused_total), and log at
 * most one line a second per cap on this thread, with how many were refused since the last one (and the
 * client of this one, for the per-client cap).
 */
function refuseConnection (listener: ListenerRuntime, socket: net.Socket, which: number, cap: number, client: string): void {
  socket.destroy()
  listener.ctx.state.addListener(listener.index, REFUSED_FIELD[which], 1)
  refusedUnlogged[which]++
  const now = Date.now()
  if (now - refusalLoggedAt[which] < 1000) return
  logger.warn({ code: 'SWY_ERR_CONNECTION_LIMIT' satisfies ErrorCode, listener: listener.name, limit: REFUSED_KEY[which], value: cap, refused: refusedUnlogged[which], client: client === '' ? undefined : client },
    `limits.${REFUSED_KEY[which]} reached: new connections closed`)
  refusedUnlogged[which] = 0
  refusalLoggedAt[which] = now
}

/**
 * Phase: the PROXY protocol header (trusted peers only), read before any
 * other byte (TLS included). Bounded by timeouts.clientHeaderMs and by the
 * parser's size limits; bytes after the header go back into the socket for
 * the next step.
 */
class ProxyHeaderReader {
  readonly listener: ListenerRuntime
  readonly socket: AcceptedSocket
  readonly peerIp: string
  readonly parser = new ProxyHeaderParser()
  readonly timer: NodeJS.Timeout

  constructor (listener: ListenerRuntime, socket: AcceptedSocket, peerIp: string) {
    this.listener = listener
    this.socket = socket
    this.peerIp = peerIp
    ;(socket as unknown as Record<symbol, ProxyHeaderReader>)[kReader] = this
    socket.on('data', onProxyData)
    socket.on('end', onProxyEnd)
    socket.on('error', onProxyError)
    this.timer = setTimeout(onProxyTimeout, listener.ctx.config.timeouts.clientHeaderMs, this)
  }

  onData (chunk: Buffer): void {
    const r = this.parser.execute(chunk, 0, chunk.length)
    if (r === PP_INCOMPLETE) return
    this.detach()
    if (r === PP_ERROR) { rejectProxy(this.listener, this.socket, this.peerIp, this.parser.error); return }
    const socket = this.socket
    socket.pause()
    if (r < chunk.length) socket.unshift(chunk.subarray(r))
    const p = this.parser
    if (!p.local) socket[kClientPort] = p.sourcePort
    afterProxyHeader(this.listener, socket, p.local ? this.peerIp : p.sourceAddress)
    // a plain listener's ClientConnection reads with 'data', which does not resume a paused socket
    if (this.listener.tls === null && !socket.destroyed) socket.resume()
  }

  detach (): void {
    clearTimeout(this.timer)
    const socket = this.socket
    socket.off('data', onProxyData)
    socket.off('end', onProxyEnd)
    socket.off('error', onProxyError)
  }
}

const kReader = Symbol('switchyard.proxyHeader')
function reader (socket: net.Socket): ProxyHeaderReader { return (socket as unknown as Record<symbol, ProxyHeaderReader>)[kReader] }
function onProxyData (this: net.Socket, chunk: Buffer): void { reader(this).onData(chunk) }
function onProxyEnd (this: net.Socket): void {
  const r = reader(this)
  r.detach()
  rejectProxy(r.listener, r.socket, r.peerIp, 'the connection ended before a complete PROXY header')
}
function onProxyError (this: net.Socket): void { reader(this).detach() }
function onProxyTimeout (r: ProxyHeaderReader): void {
  r.detach()
  rejectProxy(r.listener, r.socket, r.peerIp, 'no complete PROXY header within timeouts.clientHeaderMs')
}

function rejectProxy (listener: ListenerRuntime, socket: net.Socket, peerIp: string, reason: string): void {
  listener.ctx.state.addListener(listener.index, L_PROXY_REJECTED, 1)
  logger.warn({ code: 'SWY_ERR_PROXY_PROTOCOL' satisfies ErrorCode, listener: listener.name, peer: peerIp, reason }, 'PROXY protocol header refused; connection closed')
  socket.destroy()
}

function afterProxyHeader (listener: ListenerRuntime, socket: AcceptedSocket, clientIp: string): void {
  // phase: the per-client cap, once the client's address is known (the PROXY header's, where there is one)
  const perClient = listener.ctx.config.limits.maxConnectionsPerClient
  if (perClient > 0 && socket[kCountedIn] !== -1) {
    const entry = acquireClient(listener.ctx.state, socket[kCountedIn], clientIp, perClient)
    if (entry === CLIENT_REFUSED) { refuseConnection(listener, socket, REFUSED_PER_CLIENT, perClient, clientIp); return }
    if (entry >= 0) socket[kClientEntry] = entry
  }
  const terminator = listener.tls
  if (terminator === null) {
    if (listener.proto === 'https') { socket.destroy(); return } // no certificate yet: nothing to serve with
    new ClientConnection(listener.ctx, socket, clientIp, listener).clientPort = socket[kClientPort]
    return
  }
  socket[kClientIp] = clientIp
  // a client that ends (FIN) mid-handshake can never complete it: without this the half-open
  // TLSSocket would wait for the handshake deadline; onHandshake turns half-open back on for HTTP
  socket.allowHalfOpen = false
  terminator.accept(socket)
}

function onAcceptedClose (this: AcceptedSocket): void {
  const listener = this[kListener]
  if (this[kCountedIn] !== -1) listener.ctx.state.addWorker(this[kCountedIn], W_ACCEPTED_OPEN, -1)
  if (this[kClientEntry] !== -1) releaseClient(listener.ctx.state, this[kClientEntry], this[kCountedIn])
  listener.ctx.state.addListener(listener.index, L_OPEN_CONNECTIONS, -1)
  listener.open.delete(this)
}

/** Connections the thread's listeners accepted that are still open (see ListenerRuntime.open). */
export function openAccepted (ctx: ProxyContext): number {
  let n = 0
  for (const listener of ctx.listeners) n += listener.open.size
  return n
}

/** Destroy every connection the thread's listeners accepted that is still open (the end of a drain). */
export function destroyAccepted (ctx: ProxyContext): void {
  for (const listener of ctx.listeners) for (const socket of listener.open) socket.destroy()
}

/** The raw TCP socket under a server-side TLSSocket (node keeps it as `_parent`). */
function rawOf (socket: tls.TLSSocket): AcceptedSocket | null {
  const parent = (socket as unknown as { _parent: AcceptedSocket | null })._parent
  return parent !== null && parent !== undefined && parent[kListener] !== undefined ? parent : null
}

function onHandshake (socket: tls.TLSSocket): void {
  const raw = rawOf(socket)
  if (raw === null) { socket.destroy(); return }
  const listener = raw[kListener]
  socket.allowHalfOpen = true // RFC 9112 §9.6: a client's half-close still gets its responses
  const state = listener.ctx.state
  state.addListener(listener.index, L_HANDSHAKES_OK, 1)
  if (socket.isSessionReused()) state.addListener(listener.index, L_HANDSHAKES_RESUMED, 1)
  const client = new ClientConnection(listener.ctx, socket, raw[kClientIp], listener)
  client.clientPort = raw[kClientPort]
  client.tcpFd = tcpDescriptor(raw)
}

function onHandshakeError (err: NodeJS.ErrnoException, socket: tls.TLSSocket): void {
  const raw = rawOf(socket)
  const reason = handshakeErrorReason(err)
  // plain HTTP on a TLS port (OpenSSL 3.0 saw `GET `, `POST `, `HEAD `, `PUT ` or `CONNE` where a record should
  // be): a plain 400 that says so before the close, as nginx and Caddy answer; the socket is fresh, so one send
  // takes it. With the body even after a HEAD: OpenSSL consumed the method, and Connection: close frames it.
  // Needs the addon (directDescriptor is -1 without it: the close alone, as before). No linger: request bytes
  // still unread (a body) make the close a reset, which can cost the client the 400
  if (raw !== null && reason === 'plain_http' && !raw.destroyed) sendLastWord(directDescriptor(raw), errorReply('SWY_ERR_TLS_PLAIN_HTTP', true))
  socket.destroy()
  if (raw === null) return
  const listener = raw[kListener]
  listener.ctx.state.addListener(listener.index, L_HANDSHAKE_ERRORS + TLS_ERROR_REASONS.indexOf(reason), 1)
  logger.warn({ code: 'SWY_ERR_TLS_HANDSHAKE' satisfies ErrorCode, listener: listener.name, client: raw[kClientIp], reason, detail: err.code ?? err.message }, 'TLS handshake failed; connection closed')
}

/** The counted reason of a failed handshake, from node's / OpenSSL's error code. */
export function handshakeErrorReason (err: NodeJS.ErrnoException): TlsErrorReason {
  switch (err.code) {
    case 'ERR_TLS_HANDSHAKE_TIMEOUT': return 'timeout'
    case 'ERR_SSL_HTTP_REQUEST': case 'ERR_SSL_HTTPS_PROXY_REQUEST': return 'plain_http'
    case 'ECONNRESET': case 'EPIPE': return 'reset'
    default:
      return err.code !== undefined && err.code.startsWith('ERR_SSL_') ? 'protocol' : 'other'
  }
}
