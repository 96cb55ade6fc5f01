/**
 * One connection to an upstream: connects, carries one request at a time for
 * the client connection it is assigned to, parses the response head and walks
 * the body framing, and goes back to the pool when the response is complete
 * and both sides allow reuse. Socket handlers are module-level functions that
 * find the connection on the socket: no closure per request.
 */
import { openUpstreamSocket, connectEvent } from '../tls/upstream'
import * as net from 'node:net'
import type { ProxyContext } from './context'
import type { UpstreamEntry } from '../shared/state'
import { U_OPEN_SOCKETS } from '../shared/layout'
import {
  HeadParser, KIND_RESPONSE, HEAD_INCOMPLETE, HEAD_ERROR, BODY_NONE, BODY_LENGTH, BODY_CHUNKED, type BodyKind,
} from '../http/head-parser'
import { ChunkedScanner, CHUNKED_ERROR } from '../http/chunked'
import type { ErrorCode } from '../errors'
import type { Poolable } from './pool'
import type { Expirable } from './sweeper'
import { arenaRead, borrowed } from '../net/read-arena'
import { directDescriptor } from '../net/direct-write'
import { wallNow, deliverRead } from './clock'
import { logger } from '../log'

/** What the client side does with a response head (see ClientConnection.onResponseHead). */
export type HeadAction = 'final' | 'interim' | 'tunnel' | 'abort'

/**
 * Why an upstream exchange failed, as a catalogue code:
 *   SWY_ERR_UPSTREAM_CONNECT   refused, unreachable, connect timeout (nothing was sent)
 *   SWY_ERR_UPSTREAM_RESET     closed or reset (before the head, or mid-body)
 *   SWY_ERR_UPSTREAM_TIMEOUT   no response head within responseMs
 *   SWY_ERR_UPSTREAM_PROTOCOL  malformed head or body framing, too many interim responses
 *   SWY_ERR_UPSTREAM_IDLE      stalled (no byte for upstreamIdleMs) while sending the body or taking ours
 *   SWY_ERR_CLIENT_TIMEOUT     the client stopped sending its request body (not the upstream's fault)
 */
export type UpstreamFailure =
  | 'SWY_ERR_UPSTREAM_CONNECT' | 'SWY_ERR_UPSTREAM_RESET' | 'SWY_ERR_UPSTREAM_TIMEOUT'
  | 'SWY_ERR_UPSTREAM_PROTOCOL' | 'SWY_ERR_UPSTREAM_IDLE' | 'SWY_ERR_CLIENT_TIMEOUT'
export type { ErrorCode }

/**
 * Interim (1xx) responses per request are bounded (RFC 9110 §15.2 puts no
 * limit on them): an upstream flooding 100 Continue at a client that does not
 * read would otherwise fill memory. Past either bound the request gets a 502.
 */
export const MAX_INTERIM_RESPONSES = 32
export const MAX_INTERIM_BYTES = 64 * 1024

/** The client side of an exchange, as the upstream connection calls it. */
export interface UpstreamClient {
  readonly socket: net.Socket
  /** This request's timeouts (a route may override the top level's). */
  readonly responseMs: number
  readonly upstreamIdleMs: number
  onUpstreamConnected (up: UpstreamConnection): void
  onResponseHead (up: UpstreamConnection, head: HeadParser): HeadAction
  /** Body bytes of a Content-Length or close-delimited response. */
  onResponseBody (chunk: Buffer, start: number, end: number): void
  /** A chunked response's bytes just scanned by `scanner` (its spans, and its end when `done`). */
  onResponseChunks (chunk: Buffer, scanner: ChunkedScanner, done: boolean): void
  flushHead (): void
  /** `trailing`: bytes that came after the complete response (the connection is closed after this; 0 normally). */
  onResponseEnd (up: UpstreamConnection, reusable: boolean, trailing: number): void
  onUpstreamFailure (up: UpstreamConnection, code: UpstreamFailure, detail: string): void
  onTunnelData (chunk: Buffer): void
  onTunnelEnd (): void
}

type State = 'connecting' | 'idle' | 'head' | 'body' | 'tunnel' | 'closed'
// idle: in the pool, or between requests; head: request sent (or being sent), waiting for the response head;
// body: relaying the response body; tunnel: after 101 Switching Protocols
type Deadline = 'none' | 'connect' | 'response' | 'bodyIdle' | 'poolIdle'

const kConn = Symbol('switchyard.upstream')

export class UpstreamConnection implements Poolable, Expirable {
  readonly ctx: ProxyContext
  readonly entry: UpstreamEntry
  readonly slot: number
  readonly socket: net.Socket
  readonly parser: HeadParser
  readonly chunked: ChunkedScanner
  client: UpstreamClient | null = null
  /** The current request's timeouts.responseMs / upstreamIdleMs (set by assign()). */
  responseMs: number
  upstreamIdleMs: number
  status: State = 'connecting'
  poolIndex = -1
  /** Served a request before the current one (a stale keep-alive race is possible). */
  reused = false
  /** Response bytes arrived for the current request. */
  receivedAny = false
  /** A pooled connection that failed before any response byte: the upstream had closed it while idle. */
  get staleReuse (): boolean { return this.reused && !this.receivedAny }
  /** The upstream allows another request on this connection. */
  keepAlive = true
  bodyKind: BodyKind = BODY_NONE
  bodyRemaining = 0
  /** Interim responses (and their bytes) received for the current request. */
  interimCount = 0
  interimBytes = 0
  /** The worker slot whose holdings count this socket (-1: sequential mode). */
  readonly owner: number
  /** The socket's descriptor for direct writes once connected (src/net/direct-write.ts), -1 for none. */
  writeFd = -1
  deadline = 0
  deadlineKind: Deadline = 'none'
  lastError = ''
  /** The connect attempt timed out (rather than being refused). */
  connectTimedOut = false
  private noBodyHint = false

  /** `prefix`: bytes that go first on the wire (a PROXY protocol header), before TLS if any. */
  constructor (ctx: ProxyContext, entry: UpstreamEntry, prefix: Buffer | null = null) {
    this.ctx = ctx
    this.entry = entry
    this.slot = entry.slot
    this.responseMs = ctx.config.timeouts.responseMs
    this.upstreamIdleMs = ctx.config.timeouts.upstreamIdleMs
    this.parser = new HeadParser(KIND_RESPONSE, ctx.headLimits)
    this.chunked = new ChunkedScanner(ctx.headLimits.maxHeaderBytes)
    const socket = openUpstreamSocket(entry, prefix, UPSTREAM_READ)
    ;(socket as unknown as Record<symbol, UpstreamConnection>)[kConn] = this
    socket.on(connectEvent(entry), onConnect)
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.on('drain', onDrain)
    this.socket = socket
    this.owner = ctx.workerSlot
    ctx.state.addHeld(this.owner, this.slot, U_OPEN_SOCKETS, 1)
    this.setDeadline('connect', ctx.config.timeouts.connectMs)
    ctx.sweeper.add(this)
  }

  get reusable (): boolean {
    return this.status === 'idle' && this.keepAlive && !this.socket.destroyed && this.socket.readyState === 'open'
  }

  get connected (): boolean { return this.status !== 'connecting' }

  private setDeadline (kind: Deadline, ms: number): void {
    this.deadlineKind = kind
    this.deadline = wallNow() + ms
  }

  private clearDeadline (): void {
    this.deadlineKind = 'none'
    this.deadline = 0
  }

  /** Bind to a client for one request. The caller writes the request once connected. */
  assign (client: UpstreamClient, isHead: boolean): void {
    this.client = client
    this.responseMs = client.responseMs
    this.upstreamIdleMs = client.upstreamIdleMs
    this.parser.reset()
    this.parser.noBodyExpected = isHead
    this.receivedAny = false
    this.interimCount = 0
    this.interimBytes = 0
    if (this.status === 'idle') {
      this.status = 'head'
      this.clearDeadline()
    }
    this.noBodyHint = isHead
  }

  /** The whole request is sent: the response head must come within responseMs. */
  awaitResponse (): void {
    if (this.status === 'head' && !this.receivedAny) this.setDeadline('response', this.responseMs)
  }

  /** Request body is streaming: guard against an upstream that stops reading. */
  uploadActivity (): void {
    if (this.status === 'head' && !this.receivedAny) this.setDeadline('bodyIdle', this.upstreamIdleMs)
  }

  /**
   * Back to idle after a complete exchange; the client pools it or destroys it. `trailing`: bytes that came
   * after the response in the same read: its framing cannot be trusted, so the connection is not kept.
   */
  private finishExchange (trailing: number): void {
    const client = this.client
    const reusable = trailing === 0 && this.keepAlive
    this.status = 'idle'
    this.reused = true
    if (!reusable) this.keepAlive = false
    this.setDeadline('poolIdle', this.ctx.config.pool.idleTimeoutMs)
    if (client !== null) client.onResponseEnd(this, reusable, trailing)
    // pooled now (let go of that client), unless onResponseEnd handed it straight to the next request
    // (assign() makes it 'head' again) or destroyed it
    if (this.status === 'idle') this.client = null
    if (trailing > 0) this.destroy()
  }

  destroy (): void {
    if (this.status === 'closed') return
    this.status = 'closed'
    this.client = null
    this.ctx.pool.remove(this)
    this.socket.destroy()
  }

  private fail (code: UpstreamFailure, detail: string): void {
    const client = this.client
    this.client = null
    this.destroy()
    if (client !== null) client.onUpstreamFailure(this, code, detail)
  }

  onDeadline (now: number): void {
    switch (this.deadlineKind) {
      case 'connect': this.connectTimedOut = true; this.fail('SWY_ERR_UPSTREAM_CONNECT', `connect timeout after ${this.ctx.config.timeouts.connectMs} ms`); break
      case 'response': this.fail('SWY_ERR_UPSTREAM_TIMEOUT', `no response within ${this.responseMs} ms`); break
      case 'bodyIdle':
        if (this.status === 'head' && !this.receivedAny && this.socket.writableLength === 0) {
          // uploading, and the upstream has taken everything we had: the client is the idle one
          this.fail('SWY_ERR_CLIENT_TIMEOUT', `client sent no request body for ${this.upstreamIdleMs} ms`)
        } else if (this.status === 'body' && (this.socket.isPaused() || (this.client !== null && this.client.socket.writableLength > 0))) {
          // we stopped reading because the client is not taking the response: its stall, not the upstream's
          this.fail('SWY_ERR_CLIENT_TIMEOUT', `client read none of the response for ${this.upstreamIdleMs} ms`)
        } else {
          this.fail('SWY_ERR_UPSTREAM_IDLE', `upstream idle for ${this.upstreamIdleMs} ms`)
        }
        break
      case 'poolIdle': this.destroy(); break
      default: this.deadline = 0
    }
    void now
  }

  handleConnect (): void {
    this.writeFd = directDescriptor(this.socket)
    this.status = this.client !== null ? 'head' : 'idle'
    this.clearDeadline()
    if (this.client !== null) this.client.onUpstreamConnected(this)
  }

  handleData (chunk: Buffer): void {
    const client = this.client
    if (client === null) {
      // bytes nobody asked for on an idle connection: the upstream is confused (a late 408, a desync)
      logger.warn({ code: 'SWY_ERR_UPSTREAM_PROTOCOL' satisfies ErrorCode, upstream: this.entry.address, bytes: chunk.length }, 'bytes from an upstream on an idle pooled connection; connection closed')
      this.destroy()
      return
    }
    if (this.status === 'tunnel') { client.onTunnelData(chunk); return }
    this.receivedAny = true
    this.consume(chunk, client)
    // a head whose body did not start in this read goes out now
    if (this.client !== null) this.client.flushHead()
  }

  private consume (chunk: Buffer, client: UpstreamClient): void {
    const end = chunk.length
    let start = 0
    while (start < end) {
      if (this.status === 'head') {
        const r = this.parser.execute(chunk, start, end)
        if (r === HEAD_INCOMPLETE) return
        if (r === HEAD_ERROR) { this.fail('SWY_ERR_UPSTREAM_PROTOCOL', this.parser.errorDetail); return }
        if (this.parser.status < 200 && this.parser.status !== 101) {
          this.interimBytes += this.parser.headLength
          if (++this.interimCount > MAX_INTERIM_RESPONSES || this.interimBytes > MAX_INTERIM_BYTES) {
            this.fail('SWY_ERR_UPSTREAM_PROTOCOL', `more than ${MAX_INTERIM_RESPONSES} interim responses or ${MAX_INTERIM_BYTES} bytes of them`)
            return
          }
        }
        const action = client.onResponseHead(this, this.parser)
        if (action === 'abort') return
        if (action === 'interim') {
          this.parser.reset()
          this.parser.noBodyExpected = this.noBodyHint
          start = r
          continue
        }
        if (action === 'tunnel') {
          this.status = 'tunnel'
          this.clearDeadline()
          if (r < end) client.onTunnelData(chunk.subarray(r))
          return
        }
        this.keepAlive = this.parser.keepAlive
        this.bodyKind = this.parser.bodyKind
        this.bodyRemaining = this.parser.contentLength
        start = r
        if (this.bodyKind === BODY_NONE) {
          this.finishExchange(end - start)
          return
        }
        this.status = 'body'
        this.chunked.reset()
        this.setDeadline('bodyIdle', this.upstreamIdleMs)
        continue
      }
      if (this.status !== 'body') { this.destroy(); return }
      if (this.bodyKind === BODY_LENGTH) {
        const n = Math.min(this.bodyRemaining, end - start)
        client.onResponseBody(chunk, start, start + n)
        this.bodyRemaining -= n
        start += n
        if (this.bodyRemaining === 0) {
          this.finishExchange(end - start)
          return
        }
      } else if (this.bodyKind === BODY_CHUNKED) {
        const e = this.chunked.execute(chunk, start, end)
        if (e === CHUNKED_ERROR) { this.fail('SWY_ERR_UPSTREAM_PROTOCOL', `invalid chunked response: ${this.chunked.error}`); return }
        client.onResponseChunks(chunk, this.chunked, e >= 0)
        if (e >= 0) {
          this.finishExchange(end - e)
          return
        }
        start = end
      } else {
        // close-delimited: everything until the upstream closes
        client.onResponseBody(chunk, start, end)
        start = end
      }
    }
    if (this.status === 'body') this.setDeadline('bodyIdle', this.upstreamIdleMs)
  }

  /** The end of a read into the read arena: a response still in progress keeps its head's bytes (read-arena.ts). */
  settleBorrowed (): void {
    if (this.status !== 'idle' && this.status !== 'closed' && borrowed(this.parser.buf)) this.parser.detach()
  }

  handleEnd (): void {
    if (this.status === 'body' && this.bodyKind !== BODY_LENGTH && this.bodyKind !== BODY_CHUNKED) {
      // close-delimited body ends here
      this.keepAlive = false
      this.finishExchange(0)
      this.destroy()
      return
    }
    if (this.status === 'tunnel') {
      const client = this.client
      this.destroy()
      if (client !== null) client.onTunnelEnd()
      return
    }
    this.handleGone(this.lastError === '' ? 'upstream closed the connection' : this.lastError)
  }

  handleGone (detail: string): void {
    if (this.status === 'closed') return
    if (this.client === null) { this.destroy(); return }
    switch (this.status) {
      case 'connecting': this.fail('SWY_ERR_UPSTREAM_CONNECT', detail); break
      // closed with a response head half-read: the upstream broke the framing it started
      case 'head': this.fail(this.receivedAny ? 'SWY_ERR_UPSTREAM_PROTOCOL' : 'SWY_ERR_UPSTREAM_RESET', detail); break
      case 'tunnel': {
        const client = this.client
        this.destroy()
        client.onTunnelEnd()
        break
      }
      default: this.fail('SWY_ERR_UPSTREAM_RESET', detail)
    }
  }

  handleClose (): void {
    if (this.status !== 'closed') this.handleGone(this.lastError === '' ? 'upstream closed the connection' : this.lastError)
    this.status = 'closed'
    this.ctx.pool.remove(this)
    this.ctx.sweeper.delete(this)
    this.ctx.state.addHeld(this.owner, this.slot, U_OPEN_SOCKETS, -1)
  }
}

function conn (socket: net.Socket): UpstreamConnection {
  return (socket as unknown as Record<symbol, UpstreamConnection>)[kConn]
}

function onConnect (this: net.Socket): void { conn(this).handleConnect() }
function onData (this: net.Socket, chunk: Buffer): void { conn(this).handleData(chunk) }
function onRead (this: net.Socket, bytes: number, _arena: Buffer): boolean {
  const c = conn(this)
  deliverRead(c, bytes)
  return true
}
/** Plain TCP upstream sockets read into the thread's read arena (read-arena.ts); TLS ones emit 'data'. */
const UPSTREAM_READ = arenaRead(onRead)
function onEnd (this: net.Socket): void { conn(this).handleEnd() }
function onError (this: net.Socket, err: NodeJS.ErrnoException): void {
  const c = conn(this)
  c.lastError = err.code ?? err.message
}
function onClose (this: net.Socket): void { conn(this).handleClose() }
function onDrain (this: net.Socket): void {
  // the upstream took the request body we held back: let the client send more
  const c = conn(this)
  const client = c.client
  if (client !== null && client.socket.isPaused()) client.socket.resume()
}
