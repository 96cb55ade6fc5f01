/**
 * One connection to an upstream: connects, carries one request at a time for
 * the client connection it is assigned to, parses the response head and walks
 * the body framing, and goes back to the pool when the response is complete
 * and both sides allow reuse. Socket handlers are module-level functions that
 * find the connection on the socket: no closure per request.
 */
import * as net from 'node:net'
import type { ProxyContext } from './context'
import type { UpstreamEntry } from '../shared/state'
import { U_OPEN_SOCKETS } from '../shared/layout'
import {
  HeadParser, KIND_RESPONSE, HEAD_INCOMPLETE, HEAD_ERROR, BODY_NONE, BODY_LENGTH, BODY_CHUNKED,
} from '../http/head-parser'
import { ChunkedScanner, CHUNKED_ERROR } from '../http/chunked'
import type { Poolable } from './pool'
import type { Expirable } from './sweeper'

/** What the client side does with a response head (see ClientConnection.onResponseHead). */
export const HEAD_FINAL = 0
export const HEAD_INTERIM = 1
export const HEAD_TUNNEL = 2
export const HEAD_ABORT = 3

/** Why an upstream exchange failed before a response could be relayed. */
export const FAIL_CONNECT = 1 //     refused, unreachable, connect timeout
export const FAIL_RESET = 2 //       closed or reset before any response byte
export const FAIL_TIMEOUT = 3 //     no response head within responseMs
export const FAIL_PROTOCOL = 4 //    malformed response head
export const FAIL_MID_BODY = 5 //    broke off, stalled, or malformed after the head was relayed
export const FAIL_CLIENT_STALLED = 6 // the client stopped sending its request body (not the upstream's fault)

/** The client side of an exchange, as the upstream connection calls it. */
export interface UpstreamClient {
  readonly socket: net.Socket
  onUpstreamConnected (up: UpstreamConnection): void
  onResponseHead (up: UpstreamConnection, head: HeadParser): number
  onResponseBody (chunk: Buffer, start: number, end: number): void
  flushHead (): void
  onResponseEnd (up: UpstreamConnection, reusable: boolean): void
  onUpstreamFailure (up: UpstreamConnection, reason: number, detail: string): void
  onTunnelData (chunk: Buffer): void
  onTunnelEnd (): void
}

const S_CONNECTING = 0
const S_IDLE = 1 //       in the pool, or between requests
const S_HEAD = 2 //       request sent (or being sent), waiting for the response head
const S_BODY = 3 //       relaying the response body
const S_TUNNEL = 4 //     after 101 Switching Protocols
const S_CLOSED = 5

const D_NONE = 0
const D_CONNECT = 1
const D_RESPONSE = 2
const D_BODY_IDLE = 3
const D_POOL_IDLE = 4

const kConn = Symbol('switchyard.upstream')

export class UpstreamConnection implements Poolable, Expirable {
  readonly ctx: ProxyContext
  readonly entry: UpstreamEntry
  readonly slot: number
  readonly socket: net.Socket
  readonly parser: HeadParser
  readonly chunked: ChunkedScanner
  client: UpstreamClient | null = null
  status = S_CONNECTING
  poolIndex = -1
  /** Served a request before the current one (a stale keep-alive race is possible). */
  reused = false
  /** Response bytes arrived for the current request. */
  receivedAny = false
  /** The upstream allows another request on this connection. */
  keepAlive = true
  bodyKind = BODY_NONE
  bodyRemaining = 0
  deadline = 0
  deadlineKind = D_NONE
  lastError = ''

  constructor (ctx: ProxyContext, entry: UpstreamEntry) {
    this.ctx = ctx
    this.entry = entry
    this.slot = entry.slot
    this.parser = new HeadParser(KIND_RESPONSE, ctx.headLimits)
    this.chunked = new ChunkedScanner(ctx.headLimits.maxHeaderBytes)
    const socket = net.connect({ host: entry.host, port: entry.port, noDelay: true })
    ;(socket as unknown as Record<symbol, UpstreamConnection>)[kConn] = this
    socket.on('connect', onConnect)
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('error', onError)
    socket.on('close', onClose)
    socket.on('drain', onDrain)
    this.socket = socket
    ctx.state.addUpstream(this.slot, U_OPEN_SOCKETS, 1)
    this.setDeadline(D_CONNECT, ctx.config.timeouts.connectMs)
    ctx.sweeper.add(this)
  }

  get reusable (): boolean {
    return this.status === S_IDLE && this.keepAlive && !this.socket.destroyed && this.socket.readyState === 'open'
  }

  get connected (): boolean { return this.status !== S_CONNECTING }

  private setDeadline (kind: number, ms: number): void {
    this.deadlineKind = kind
    this.deadline = Date.now() + ms
  }

  private clearDeadline (): void {
    this.deadlineKind = D_NONE
    this.deadline = 0
  }

  /** Bind to a client for one request. The caller writes the request once connected. */
  assign (client: UpstreamClient, isHead: boolean): void {
    this.client = client
    this.parser.reset()
    this.parser.noBodyExpected = isHead
    this.receivedAny = false
    if (this.status === S_IDLE) {
      this.status = S_HEAD
      this.clearDeadline()
    }
    this.noBodyHint = isHead
  }

  private noBodyHint = false

  /** The whole request is sent: the response head must come within responseMs. */
  awaitResponse (): void {
    if (this.status === S_HEAD && !this.receivedAny) this.setDeadline(D_RESPONSE, this.ctx.config.timeouts.responseMs)
  }

  /** Request body is streaming: guard against an upstream that stops reading. */
  uploadActivity (): void {
    if (this.status === S_HEAD && !this.receivedAny) this.setDeadline(D_BODY_IDLE, this.ctx.config.timeouts.upstreamIdleMs)
  }

  /** Back to idle after a complete exchange; the caller pools or destroys it. */
  private finishExchange (reusable: boolean): void {
    const client = this.client
    this.status = S_IDLE
    this.reused = true
    if (!reusable) this.keepAlive = false
    this.setDeadline(D_POOL_IDLE, this.ctx.config.pool.idleTimeoutMs)
    if (client !== null) client.onResponseEnd(this, reusable)
  }

  destroy (): void {
    if (this.status === S_CLOSED) return
    this.status = S_CLOSED
    this.client = null
    this.ctx.pool.remove(this)
    this.socket.destroy()
  }

  private fail (reason: number, detail: string): void {
    const client = this.client
    this.client = null
    this.destroy()
    if (client !== null) client.onUpstreamFailure(this, reason, detail)
  }

  onDeadline (now: number): void {
    switch (this.deadlineKind) {
      case D_CONNECT: this.fail(FAIL_CONNECT, `connect timeout after ${this.ctx.config.timeouts.connectMs} ms`); break
      case D_RESPONSE: this.fail(FAIL_TIMEOUT, `no response within ${this.ctx.config.timeouts.responseMs} ms`); break
      case D_BODY_IDLE:
        if (this.status === S_HEAD && !this.receivedAny && this.socket.writableLength === 0) {
          // uploading, and the upstream has taken everything we had: the client is the idle one
          this.fail(FAIL_CLIENT_STALLED, `client sent no request body for ${this.ctx.config.timeouts.upstreamIdleMs} ms`)
        } else {
          this.fail(this.receivedAny ? FAIL_MID_BODY : FAIL_RESET, `upstream idle for ${this.ctx.config.timeouts.upstreamIdleMs} ms`)
        }
        break
      case D_POOL_IDLE: this.destroy(); break
      default: this.deadline = 0
    }
    void now
  }

  handleConnect (): void {
    this.status = this.client !== null ? S_HEAD : S_IDLE
    this.clearDeadline()
    if (this.client !== null) this.client.onUpstreamConnected(this)
  }

  handleData (chunk: Buffer): void {
    const client = this.client
    if (client === null) {
      // bytes nobody asked for on an idle connection: the upstream is confused
      this.destroy()
      return
    }
    if (this.status === S_TUNNEL) { client.onTunnelData(chunk); return }
    this.receivedAny = true
    this.consume(chunk, client)
    // a head whose body did not start in this read goes out now
    if (this.client !== null) this.client.flushHead()
  }

  private consume (chunk: Buffer, client: UpstreamClient): void {
    const end = chunk.length
    let start = 0
    while (start < end) {
      if (this.status === S_HEAD) {
        const r = this.parser.execute(chunk, start, end)
        if (r === HEAD_INCOMPLETE) return
        if (r === HEAD_ERROR) { this.fail(FAIL_PROTOCOL, this.parser.errorDetail); return }
        const action = client.onResponseHead(this, this.parser)
        if (action === HEAD_ABORT) return
        if (action === HEAD_INTERIM) {
          this.parser.reset()
          this.parser.noBodyExpected = this.noBodyHint
          start = r
          continue
        }
        if (action === HEAD_TUNNEL) {
          this.status = S_TUNNEL
          this.clearDeadline()
          if (r < end) client.onTunnelData(chunk.subarray(r))
          return
        }
        this.keepAlive = this.parser.keepAlive
        this.bodyKind = this.parser.bodyKind
        this.bodyRemaining = this.parser.contentLength
        start = r
        if (this.bodyKind === BODY_NONE) {
          this.finishExchange(start === end && this.keepAlive)
          if (start < end) this.destroy() // bytes after a complete response: framing cannot be trusted
          return
        }
        this.status = S_BODY
        this.chunked.reset()
        this.setDeadline(D_BODY_IDLE, this.ctx.config.timeouts.upstreamIdleMs)
        continue
      }
      if (this.status !== S_BODY) { this.destroy(); return }
      if (this.bodyKind === BODY_LENGTH) {
        const n = Math.min(this.bodyRemaining, end - start)
        client.onResponseBody(chunk, start, start + n)
        this.bodyRemaining -= n
        start += n
        if (this.bodyRemaining === 0) {
          this.finishExchange(start === end && this.keepAlive)
          if (start < end) this.destroy()
          return
        }
      } else if (this.bodyKind === BODY_CHUNKED) {
        const e = this.chunked.execute(chunk, start, end)
        if (e === CHUNKED_ERROR) { this.fail(FAIL_MID_BODY, `invalid chunked response: ${this.chunked.error}`); return }
        if (e >= 0) {
          client.onResponseBody(chunk, start, e)
          this.finishExchange(e === end && this.keepAlive)
          if (e < end) this.destroy()
          return
        }
        client.onResponseBody(chunk, start, end)
        start = end
      } else {
        // close-delimited: everything until the upstream closes
        client.onResponseBody(chunk, start, end)
        start = end
      }
    }
    if (this.status === S_BODY) this.setDeadline(D_BODY_IDLE, this.ctx.config.timeouts.upstreamIdleMs)
  }

  handleEnd (): void {
    if (this.status === S_BODY && this.bodyKind !== BODY_LENGTH && this.bodyKind !== BODY_CHUNKED) {
      // close-delimited body ends here
      this.keepAlive = false
      this.finishExchange(false)
      this.destroy()
      return
    }
    if (this.status === S_TUNNEL) {
      const client = this.client
      this.destroy()
      if (client !== null) client.onTunnelEnd()
      return
    }
    this.handleGone(this.lastError === '' ? 'upstream closed the connection' : this.lastError)
  }

  handleGone (detail: string): void {
    if (this.status === S_CLOSED) return
    if (this.client === null) { this.destroy(); return }
    switch (this.status) {
      case S_CONNECTING: this.fail(FAIL_CONNECT, detail); break
      case S_HEAD: this.fail(this.receivedAny ? FAIL_PROTOCOL : FAIL_RESET, detail); break
      case S_TUNNEL: {
        const client = this.client
        this.destroy()
        client.onTunnelEnd()
        break
      }
      default: this.fail(FAIL_MID_BODY, detail)
    }
  }

  handleClose (): void {
    if (this.status !== S_CLOSED) this.handleGone(this.lastError === '' ? 'upstream closed the connection' : this.lastError)
    this.status = S_CLOSED
    this.ctx.pool.remove(this)
    this.ctx.sweeper.delete(this)
    this.ctx.state.addUpstream(this.slot, U_OPEN_SOCKETS, -1)
  }
}

function conn (socket: net.Socket): UpstreamConnection {
  return (socket as unknown as Record<symbol, UpstreamConnection>)[kConn]
}

function onConnect (this: net.Socket): void { conn(this).handleConnect() }
function onData (this: net.Socket, chunk: Buffer): void { conn(this).handleData(chunk) }
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
