/**
 * One client connection: parses requests off the socket, applies the policy
 * hooks (firewall -> rate limit -> pick), forwards each request to an upstream
 * connection and relays the response, in order, one request at a time
 * (pipelined requests wait in `pending`). Bodies stream in both directions
 * with backpressure; nothing is buffered whole.
 *
 * Monomorphic: every field is assigned in the constructor and reset between
 * requests. Socket handlers are module-level functions (no closure per request).
 */
import type * as net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { ProxyContext, FirewallRequest, RateDecisionLike } from './context'
import type { UpstreamEntry } from '../shared/state'
import * as L from '../shared/layout'
import {
  HeadParser, KIND_REQUEST, HEAD_INCOMPLETE, HEAD_ERROR, BODY_NONE, BODY_LENGTH, BODY_CHUNKED,
} from '../http/head-parser'
import { H_X_FORWARDED_FOR, H_COOKIE } from '../http/header-names'
import { ChunkedScanner, CHUNKED_ERROR } from '../http/chunked'
import {
  buildRequestHead, buildResponseHead, joinedValues, type ForwardIdentity,
  CONNECTION_NONE, CONNECTION_CLOSE, CONNECTION_KEEP_ALIVE, CONNECTION_UPGRADE,
} from '../http/serialize'
import { errorReply, errorReplyWith } from '../http/replies'
import { PickContext } from '../balancer/types'
import { describe, type ErrorCode } from '../errors'
import {
  UpstreamConnection, type UpstreamClient,
  HEAD_FINAL, HEAD_INTERIM, HEAD_TUNNEL, HEAD_ABORT,
  FAIL_CONNECT, FAIL_RESET, FAIL_TIMEOUT, FAIL_PROTOCOL, FAIL_MID_BODY, FAIL_CLIENT_STALLED,
} from './upstream'
import { recordUpstreamFailure, recordUpstreamSuccess } from '../health/passive'
import { findCookie } from '../sticky/cookie'
import { logAccess, logRejected, logUpstreamProblem } from './access-log'
import type { Expirable } from './sweeper'
import { CacheState, type CacheUser, type CachedResponse } from './cache-path'

const P_HEAD = 0 //        reading a request head
const P_CONNECTING = 1 //  head parsed, waiting for an upstream connection
const P_BODY = 2 //        streaming the request body upstream
const P_WAIT = 3 //        request sent, relaying the response
const P_TUNNEL = 4 //      after 101: raw bytes both ways
const P_CLOSED = 5

const D_NONE = 0
const D_HEADER = 1 //      a request head has started and must complete (slowloris)
const D_IDLE = 2 //        keep-alive connection with no request
const D_LINGER = 3 //      closing: reading and discarding until the client closes too

/**
 * After our last response on a connection we half-close and keep reading (and
 * discarding) for a while: closing with unread input makes the kernel send RST,
 * which can destroy the response before the client reads it (RFC 9112 §9.6).
 */
const LINGER_MS = 2000
const LINGER_MAX_BYTES = 16 * 1024 * 1024

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])
const MAX_PENDING_BYTES = 64 * 1024
/** Up to this many body bytes are copied next to a head to save a write (and a syscall). */
const COALESCE_BYTES = 16 * 1024

const kClient = Symbol('switchyard.client')

export class ClientConnection implements UpstreamClient, Expirable, FirewallRequest, CacheUser {
  readonly ctx: ProxyContext
  readonly socket: net.Socket
  readonly peerIp: string
  readonly identity: ForwardIdentity
  readonly parser: HeadParser
  readonly chunked: ChunkedScanner
  readonly pick = new PickContext()
  rate: RateDecisionLike | null
  phase = P_HEAD
  deadline = 0
  deadlineKind = D_NONE
  /** Bytes received after the current request, parsed once its response is done. */
  pending: Buffer | null = null
  upstream: UpstreamConnection | null = null
  /** Upstream slot whose U_ACTIVE_REQUESTS this request holds, -1 for none. */
  activeSlot = -1

  // ---- the current request (FirewallRequest view included) ----
  method = ''
  target = ''
  clientIp = ''
  bodyLength = -1
  isHead = false
  keepAlive = true
  http10 = false
  upgrading = false
  bodyKind = BODY_NONE
  bodyRemaining = 0
  bodyDone = true
  /** Some request body bytes have gone to an upstream (then it cannot be replayed). */
  bodySent = false
  requestHead: Buffer | null = null
  /** requestHead carries the first body bytes too. */
  bodyInHead = false
  initialBody: Buffer | null = null
  entry: UpstreamEntry | null = null
  retriesLeft = 0
  startedAt = 0
  sentAt = 0
  status = 0
  bytesOut = 0
  flag = '-'
  responseStarted = false
  closeAfterResponse = false
  /** Response head not yet written: sent together with the first body bytes in one write. */
  heldHead: Buffer | null = null
  /** Set-Cookie line to add to the response (sticky sessions), '' for none. */
  setCookie = ''
  stickyIndex = -1
  lastFailure = ''
  /** Bytes discarded while lingering. */
  discarded = 0
  /** Cache state for the current request; null while the cache is off. */
  cacheState: CacheState | null = null

  constructor (ctx: ProxyContext, socket: net.Socket, peerIp: string) {
    this.ctx = ctx
    this.socket = socket
    this.peerIp = peerIp
    const v6 = peerIp.includes(':')
    const ip = v6 && peerIp.startsWith('::ffff:') && peerIp.includes('.') ? peerIp.slice(7) : peerIp
    this.identity = {
      clientIp: ip,
      forwardedFor: ip.includes(':') ? `for="[${ip}]"` : `for=${ip}`,
      via: ctx.config.proxy.via,
    }
    this.clientIp = ip
    this.parser = new HeadParser(KIND_REQUEST, ctx.headLimits)
    this.chunked = new ChunkedScanner(ctx.headLimits.maxHeaderBytes)
    this.rate = ctx.limiter !== null ? ctx.limiter.newDecision() : null
    ;(socket as unknown as Record<symbol, ClientConnection>)[kClient] = this
    socket.setNoDelay(true)
    socket.on('data', onClientData)
    socket.on('end', onClientEnd)
    socket.on('error', onClientError)
    socket.on('close', onClientClose)
    socket.on('drain', onClientDrain)
    ctx.clients.add(this)
    ctx.sweeper.add(this)
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, L.W_OPEN_CONNECTIONS, 1)
    this.setDeadline(D_IDLE, ctx.config.timeouts.clientIdleMs)
  }

  // ---- FirewallRequest ----
  header (lowerCaseName: string): string | null { return this.parser.valueOfName(lowerCaseName) }

  private setDeadline (kind: number, ms: number): void {
    this.deadlineKind = kind
    this.deadline = Date.now() + ms
  }

  private clearDeadline (): void {
    this.deadlineKind = D_NONE
    this.deadline = 0
  }

  onDeadline (): void {
    if (this.deadlineKind === D_HEADER && this.phase === P_HEAD) {
      this.method = ''
      this.target = ''
      this.rejectRequest('SWY_ERR_CLIENT_TIMEOUT', 'client did not complete the request head in time')
    } else if (this.deadlineKind === D_IDLE && this.phase === P_HEAD) {
      this.clearDeadline()
      this.socket.destroy()
    } else if (this.deadlineKind === D_LINGER) {
      this.clearDeadline()
      this.socket.destroy()
    } else {
      this.clearDeadline()
    }
  }

  /** Graceful shutdown: close now if no request is in progress. */
  closeIfIdle (): boolean {
    if (this.phase === P_HEAD && !this.parser.started && this.pending === null) {
      this.socket.destroy()
      return true
    }
    this.keepAlive = false
    return false
  }

  destroy (): void {
    this.socket.destroy()
  }

  // ---- bytes from the client ----

  handleData (chunk: Buffer): void {
    switch (this.phase) {
      case P_HEAD: this.consume(chunk, 0); break
      case P_BODY: this.forwardBody(chunk, 0); break
      case P_TUNNEL: {
        const up = this.upstream
        if (up !== null && !up.socket.write(chunk)) this.socket.pause()
        break
      }
      case P_CLOSED:
        this.discarded += chunk.length
        if (this.discarded > LINGER_MAX_BYTES) this.socket.destroy()
        break
      default: // P_CONNECTING with the body done, or P_WAIT: the next pipelined request
        this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk])
        if (this.pending.length > MAX_PENDING_BYTES) this.socket.pause()
    }
  }

  /** Parse a request head from buf[start..]. */
  private consume (buf: Buffer, start: number): void {
    if (start >= buf.length) return
    if (this.deadlineKind !== D_HEADER) this.setDeadline(D_HEADER, this.ctx.config.timeouts.clientHeaderMs)
    const r = this.parser.execute(buf, start, buf.length)
    if (r === HEAD_INCOMPLETE) return
    if (r === HEAD_ERROR) {
      const p = this.parser
      this.method = p.method
      this.target = p.targetEnd > 0 ? p.target() : ''
      this.rejectRequest(p.error as ErrorCode, p.errorDetail)
      return
    }
    this.onRequestHead(buf, r)
  }

  private onRequestHead (buf: Buffer, bodyStart: number): void {
    const p = this.parser
    const ctx = this.ctx
    this.clearDeadline()
    this.startedAt = performance.now()
    this.method = p.method
    this.target = p.target()
    this.isHead = p.method === 'HEAD'
    this.http10 = p.versionMinor === 0
    this.keepAlive = p.keepAlive && !ctx.draining
    this.upgrading = p.hasUpgrade && p.connectionUpgrade && p.method === 'GET' && !this.http10
    this.bodyKind = p.bodyKind
    this.bodyRemaining = p.bodyKind === BODY_LENGTH ? p.contentLength : 0
    this.bodyLength = p.bodyKind === BODY_CHUNKED ? -1 : (p.contentLength > 0 ? p.contentLength : 0)
    this.bodyDone = p.bodyKind === BODY_NONE
    this.bodySent = false
    this.status = 0
    this.bytesOut = 0
    this.flag = '-'
    this.responseStarted = false
    this.closeAfterResponse = false
    this.setCookie = ''
    this.stickyIndex = -1
    this.entry = null
    this.lastFailure = ''
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, L.W_REQUESTS, 1)

    const maxBody = ctx.config.limits.maxBodyBytes
    if (maxBody > 0 && this.bodyLength > maxBody) {
      this.rejectRequest('SWY_ERR_BODY_TOO_LARGE', `Content-Length ${this.bodyLength} over limit ${maxBody}`)
      return
    }

    // split this chunk: [bodyStart, bodyEnd) belongs to this request, the rest to the next
    let bodyEnd = bodyStart
    if (p.bodyKind === BODY_LENGTH) {
      const n = Math.min(this.bodyRemaining, buf.length - bodyStart)
      bodyEnd = bodyStart + n
      this.bodyRemaining -= n
      this.bodyDone = this.bodyRemaining === 0
    } else if (p.bodyKind === BODY_CHUNKED) {
      this.chunked.reset()
      const e = this.chunked.execute(buf, bodyStart, buf.length)
      if (e === CHUNKED_ERROR) { this.rejectRequest('SWY_ERR_BAD_CHUNK', this.chunked.error); return }
      bodyEnd = e >= 0 ? e : buf.length
      this.bodyDone = e >= 0
      if (maxBody > 0 && this.chunked.dataBytes > maxBody) { this.rejectRequest('SWY_ERR_BODY_TOO_LARGE', 'chunked body over limit'); return }
    }
    this.initialBody = bodyEnd > bodyStart ? buf.subarray(bodyStart, bodyEnd) : null
    this.pending = bodyEnd < buf.length ? buf.subarray(bodyEnd) : null

    // ---- policy: firewall -> rate limit -> pick ----
    const xffTrusted = ctx.resolveClientIp
    this.clientIp = xffTrusted === null ? this.identity.clientIp : xffTrusted(this.identity.clientIp, nullIfEmpty(joinedValues(p, H_X_FORWARDED_FOR)))
    if (ctx.firewall !== null) {
      const rule = ctx.firewall.evaluate(this)
      if (rule >= 0) {
        this.lastFailure = `firewall rule ${ctx.firewall.ruleName(rule)}`
        this.answerLocally('SWY_ERR_FIREWALL_DENIED', errorReply('SWY_ERR_FIREWALL_DENIED', !this.canContinueAfterLocalAnswer(), this.isHead))
        return
      }
    }
    if (ctx.limiter !== null) {
      const decision = this.rate ?? (this.rate = ctx.limiter.newDecision())
      if (!ctx.limiter.check(this.clientIp, Date.now(), decision)) {
        ctx.state.addHeader(L.H_RATE_LIMITED, 1)
        this.answerLocally('SWY_ERR_RATE_LIMITED', errorReplyWith('SWY_ERR_RATE_LIMITED', !this.canContinueAfterLocalAnswer(), ctx.limiter.headers(decision), this.isHead))
        return
      }
    }
    if (ctx.cache !== null) {
      if (this.cacheState === null || this.cacheState.hook !== ctx.cache) this.cacheState = new CacheState(ctx.cache, this)
      this.phase = P_CONNECTING
      if (this.cacheState.onRequest(this, p.bodyKind === BODY_NONE)) return
    } else if (this.cacheState !== null) {
      this.cacheState.reset()
      this.cacheState = null
    }
    this.forwardRequest()
  }

  /** Balancing and forwarding (after the policy hooks and the cache). */
  forwardRequest (): void {
    const ctx = this.ctx
    const p = this.parser
    this.pick.reset()
    this.pick.clientIp = this.clientIp
    if (ctx.hashCookie !== null || ctx.sticky !== null) {
      const cookies = nullIfEmpty(joinedValues(p, H_COOKIE, '; '))
      if (ctx.hashCookie !== null) this.pick.hashKey = cookies === null ? '' : (findCookie(cookies, ctx.hashCookie) ?? '')
      if (ctx.sticky !== null) this.stickyIndex = ctx.sticky.route(cookies)
    }
    if (ctx.hashHeader !== null) this.pick.hashKey = p.valueOfName(ctx.hashHeader) ?? ''

    const initial = this.initialBody
    const validators = this.cacheState !== null ? this.cacheState.conditionalFields() : ''
    if (initial !== null && initial.length <= COALESCE_BYTES) {
      this.requestHead = buildRequestHead(p, this.identity, this.upgrading, initial, validators)
      this.initialBody = null
      this.bodyInHead = true
    } else {
      this.requestHead = buildRequestHead(p, this.identity, this.upgrading, null, validators)
      this.bodyInHead = false
    }
    this.retriesLeft = ctx.config.retries
    this.phase = P_CONNECTING
    // hold the body back until an upstream is connected: a failed connect can then go elsewhere
    if (!this.bodyDone) this.socket.pause()
    this.dispatch()
  }

  /** A local answer keeps the connection only when the whole request body is already here. */
  private canContinueAfterLocalAnswer (): boolean {
    return this.keepAlive && this.bodyDone
  }

  /** Choose an upstream and get a connection to it. */
  private dispatch (): void {
    const ctx = this.ctx
    const table = ctx.table
    let index = -1
    if (this.stickyIndex >= 0) {
      const sticky = this.stickyIndex
      this.stickyIndex = -1
      if (sticky < table.length && ctx.state.isAvailable(table[sticky].slot) && this.pick.tried[sticky] === 0) {
        index = sticky
        ctx.state.addHeader(L.H_STICKY_HITS, 1)
      }
    }
    if (index === -1) {
      index = ctx.balancer.pick(this.pick)
      if (index === -1) {
        const tried = this.pick.triedCount > 0
        this.failRequest(tried ? 'SWY_ERR_UPSTREAM_CONNECT' : 'SWY_ERR_NO_HEALTHY_UPSTREAM', tried ? this.lastFailure : 'no upstream is available')
        return
      }
      if (ctx.sticky !== null) this.setCookie = ctx.sticky.setCookieLine(index)
    }
    this.pick.markTried(index)
    const entry = table[index]
    this.entry = entry
    ctx.state.addUpstream(entry.slot, L.U_ACTIVE_REQUESTS, 1)
    ctx.state.addUpstream(entry.slot, L.U_REQUESTS, 1)
    this.activeSlot = entry.slot
    const pooled = ctx.pool.acquire(entry.slot) as UpstreamConnection | null
    if (pooled !== null) {
      this.upstream = pooled
      pooled.assign(this, this.isHead)
      this.onUpstreamConnected(pooled)
      return
    }
    const fresh = new UpstreamConnection(ctx, entry)
    this.upstream = fresh
    fresh.assign(this, this.isHead)
  }

  private releaseActive (): void {
    if (this.activeSlot !== -1) {
      this.ctx.state.addUpstream(this.activeSlot, L.U_ACTIVE_REQUESTS, -1)
      this.activeSlot = -1
    }
  }

  onUpstreamConnected (up: UpstreamConnection): void {
    if (up !== this.upstream || this.phase !== P_CONNECTING) return
    this.sentAt = performance.now()
    if (this.cacheState !== null) this.cacheState.requestSentAt = Date.now()
    const s = up.socket
    const body = this.initialBody
    if (body !== null) {
      s.cork()
      s.write(this.requestHead as Buffer)
      s.write(body)
      s.uncork()
      this.bodySent = true
    } else {
      s.write(this.requestHead as Buffer)
      if (this.bodyInHead) this.bodySent = true
    }
    if (this.bodyDone) {
      this.phase = P_WAIT
      up.awaitResponse()
      if (this.pending !== null && this.pending.length > MAX_PENDING_BYTES) this.socket.pause()
    } else {
      this.phase = P_BODY
      up.uploadActivity()
      this.socket.resume()
    }
  }

  /** P_BODY: more request body from the client. */
  private forwardBody (buf: Buffer, start: number): void {
    const up = this.upstream
    if (up === null) return
    let end = buf.length
    if (this.bodyKind === BODY_LENGTH) {
      const n = Math.min(this.bodyRemaining, end - start)
      end = start + n
      this.bodyRemaining -= n
      if (this.bodyRemaining === 0) this.bodyDone = true
    } else {
      const e = this.chunked.execute(buf, start, end)
      if (e === CHUNKED_ERROR) { this.abortUpload('SWY_ERR_BAD_CHUNK', this.chunked.error); return }
      const maxBody = this.ctx.config.limits.maxBodyBytes
      if (maxBody > 0 && this.chunked.dataBytes > maxBody) { this.abortUpload('SWY_ERR_BODY_TOO_LARGE', 'chunked body over limit'); return }
      if (e >= 0) { end = e; this.bodyDone = true }
    }
    if (end > start) {
      this.bodySent = true
      const ok = up.socket.write(start === 0 && end === buf.length ? buf : buf.subarray(start, end))
      if (!ok) this.socket.pause()
      up.uploadActivity()
    }
    if (this.bodyDone) {
      if (end < buf.length) this.pending = buf.subarray(end)
      if (this.phase === P_BODY) {
        this.phase = P_WAIT
        up.awaitResponse()
      }
    }
  }

  /** The request body turned out malformed midway: the upstream has part of it, so drop both. */
  private abortUpload (code: ErrorCode, detail: string): void {
    this.detachUpstream(true)
    if (!this.responseStarted) {
      this.keepAlive = false
      this.failRequest(code, detail)
    } else {
      this.socket.destroy()
    }
  }

  // ---- the response, called by UpstreamConnection ----

  onResponseHead (up: UpstreamConnection, head: HeadParser): number {
    if (up !== this.upstream) return HEAD_ABORT
    const status = head.status
    if (status < 200 && status !== 101) {
      // interim (100 Continue, 103 Early Hints): relay to HTTP/1.1 clients (RFC 9110 §15.2)
      if (!this.http10) this.socket.write(buildResponseHead(head, this.ctx.config.proxy.via, CONNECTION_NONE, ''))
      return HEAD_INTERIM
    }
    const ctx = this.ctx
    const slot = (this.entry as UpstreamEntry).slot
    recordUpstreamSuccess(ctx.state, slot)
    ctx.state.recordResponse(slot, status, performance.now() - this.sentAt)
    this.status = status
    this.responseStarted = true
    if (status === 101) {
      if (!this.upgrading) {
        // a 101 we did not ask for: the upstream is not speaking HTTP to us any more
        up.destroy()
        this.upstream = null
        this.releaseActive()
        this.responseStarted = false
        this.failRequest('SWY_ERR_UPSTREAM_PROTOCOL', 'unsolicited 101 response')
        return HEAD_ABORT
      }
      this.writeOut(buildResponseHead(head, ctx.config.proxy.via, CONNECTION_UPGRADE, this.setCookie))
      this.phase = P_TUNNEL
      this.clearDeadline()
      this.releaseActive()
      if (this.pending !== null) { up.socket.write(this.pending); this.pending = null }
      this.socket.resume()
      return HEAD_TUNNEL
    }
    let extra = this.setCookie
    const cache = this.cacheState
    if (cache !== null && (cache.key !== '' || cache.invalidateKey !== '')) {
      const cached = cache.onResponseHead(this, head)
      if (cached !== null) {
        // revalidated: the stored response goes out instead of the upstream's 304
        this.status = cached.status
        this.closeAfterResponse = !this.keepAlive || ctx.draining || !this.bodyDone
        const out = this.renderCached(cached)
        this.bytesOut += out.length
        this.heldHead = out
        return HEAD_FINAL
      }
      if (cache.xCache !== '') extra += `X-Cache: ${cache.xCache}\r\n`
    }
    // keep the client connection only if its framing stays known
    const willClose = !this.keepAlive || ctx.draining || !this.bodyDone || (head.bodyKind === 3 /* BODY_CLOSE */ && !this.isHead)
    this.closeAfterResponse = willClose
    const connection = willClose ? CONNECTION_CLOSE : (this.http10 ? CONNECTION_KEEP_ALIVE : CONNECTION_NONE)
    const out = buildResponseHead(head, ctx.config.proxy.via, connection, extra)
    this.bytesOut += out.length
    this.heldHead = out
    return HEAD_FINAL
  }

  private writeOut (data: Buffer): void {
    this.bytesOut += data.length
    this.socket.write(data)
  }

  onResponseBody (chunk: Buffer, start: number, end: number): void {
    if (end <= start) return
    if (this.cacheState !== null) this.cacheState.onResponseBody(chunk, start, end, this.status)
    const n = end - start
    this.bytesOut += n
    const head = this.heldHead
    let ok: boolean
    if (head !== null && n <= COALESCE_BYTES) {
      // one write, one syscall: head and the first body bytes together
      this.heldHead = null
      const out = Buffer.allocUnsafe(head.length + n)
      head.copy(out, 0)
      chunk.copy(out, head.length, start, end)
      ok = this.socket.write(out)
    } else {
      if (head !== null) { this.heldHead = null; this.socket.write(head) }
      ok = this.socket.write(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end))
    }
    if (!ok && this.upstream !== null) this.upstream.socket.pause()
  }

  /** Write a held response head (a response without body bytes in this read). */
  flushHead (): void {
    const head = this.heldHead
    if (head !== null) {
      this.heldHead = null
      this.socket.write(head)
    }
  }

  onResponseEnd (up: UpstreamConnection, reusable: boolean): void {
    if (up !== this.upstream) return
    this.flushHead()
    if (this.cacheState !== null) this.cacheState.onResponseEnd(this.status)
    this.upstream = null
    this.releaseActive()
    // the upstream can take another request only if it got all of this one
    if (reusable && this.bodyDone && up.socket.isPaused()) up.socket.resume()
    if (!(reusable && this.bodyDone && this.ctx.pool.release(up))) up.destroy()
    this.finishRequest()
  }

  onUpstreamFailure (up: UpstreamConnection, reason: number, detail: string): void {
    if (up !== this.upstream) return
    this.flushHead()
    this.upstream = null
    this.releaseActive()
    const ctx = this.ctx
    const entry = this.entry as UpstreamEntry
    this.lastFailure = `${entry.address}: ${detail}`
    if (reason === FAIL_CLIENT_STALLED) {
      // the client's fault: no passive failure for the upstream, a 408 for the client
      logRejected(this, 'SWY_ERR_CLIENT_TIMEOUT', detail)
      this.keepAlive = false
      if (this.responseStarted) this.logAndClose()
      else this.failRequest('SWY_ERR_CLIENT_TIMEOUT', detail)
      return
    }
    if (this.responseStarted) {
      // the status line is already out: all we can do is cut the connection
      this.flag = reason === FAIL_MID_BODY && detail.startsWith('upstream idle') ? 'UT' : 'UC'
      logUpstreamProblem(this, entry, detail)
      if (!detail.startsWith('invalid chunked')) this.noteFailure(entry)
      this.logAndClose()
      return
    }
    const staleReuse = reason === FAIL_RESET && up.reused
    if (!staleReuse) this.noteFailure(entry)
    if (reason === FAIL_CONNECT) {
      // nothing reached the upstream: any request may go to another one
      logUpstreamProblem(this, entry, detail)
      this.dispatch()
      return
    }
    const replayable = !this.bodySent && IDEMPOTENT.has(this.method)
    if (reason === FAIL_RESET && replayable) {
      if (staleReuse) {
        // a pooled connection the upstream had already closed: not the upstream's fault, retry as new
        const index = this.ctx.table.indexOf(entry)
        if (index !== -1 && this.pick.tried[index] === 1) { this.pick.tried[index] = 0; this.pick.triedCount-- }
        this.phase = P_CONNECTING
        this.dispatch()
        return
      }
      if (this.retriesLeft > 0) {
        this.retriesLeft--
        ctx.state.addUpstream(entry.slot, L.U_RETRIES, 1)
        logUpstreamProblem(this, entry, detail)
        this.phase = P_CONNECTING
        this.dispatch()
        return
      }
    }
    logUpstreamProblem(this, entry, detail)
    if (reason === FAIL_TIMEOUT) this.failRequest('SWY_ERR_UPSTREAM_TIMEOUT', detail)
    else if (reason === FAIL_PROTOCOL) this.failRequest('SWY_ERR_UPSTREAM_PROTOCOL', detail)
    else this.failRequest('SWY_ERR_UPSTREAM_RESET', detail)
  }

  private noteFailure (entry: UpstreamEntry): void {
    const ctx = this.ctx
    const passive = ctx.config.healthCheck?.passive
    if (passive === undefined) return
    if (recordUpstreamFailure(ctx.state, entry.slot, passive, ctx.state.now())) {
      logUpstreamProblem(this, entry, `ejected after ${passive.maxFailures} consecutive failure(s): ${this.lastFailure}`, true)
    }
  }

  onTunnelData (chunk: Buffer): void {
    this.bytesOut += chunk.length
    if (!this.socket.write(chunk) && this.upstream !== null) this.upstream.socket.pause()
  }

  onTunnelEnd (): void {
    this.upstream = null
    this.logAndClose()
  }

  // ---- ends of a request ----

  /** Answer from the cache (hit, 304, only-if-cached 504). */
  serveCached (response: CachedResponse): void {
    const ctx = this.ctx
    this.status = response.status
    this.flag = '-'
    this.responseStarted = true
    this.closeAfterResponse = !this.keepAlive || ctx.draining
    this.writeOut(this.renderCached(response))
    this.finishRequest()
  }

  /** A cached response's bytes: its head, our Via and Connection, the body. */
  private renderCached (response: CachedResponse): Buffer {
    const connection = this.closeAfterResponse ? 'Connection: close\r\n' : (this.http10 ? 'Connection: keep-alive\r\n' : '')
    const head = response.head + 'Via: 1.1 ' + this.ctx.config.proxy.via + '\r\n' + connection + '\r\n'
    const body = response.body
    const out = Buffer.allocUnsafe(head.length + (body === null ? 0 : body.length))
    const o = out.latin1Write(head, 0)
    if (body !== null) body.copy(out, o)
    return out
  }

  /** The response went out completely: log it, then next request or close. */
  private finishRequest (): void {
    if (this.cacheState !== null) this.cacheState.reset()
    logAccess(this)
    this.requestHead = null
    this.initialBody = null
    this.entry = null
    if (this.closeAfterResponse || !this.keepAlive) {
      this.lingerAndClose()
      return
    }
    this.parser.reset()
    this.phase = P_HEAD
    this.method = ''
    this.target = ''
    const pending = this.pending
    this.pending = null
    if (this.socket.isPaused()) this.socket.resume()
    if (pending !== null) this.consume(pending, 0)
    else this.setDeadline(D_IDLE, this.ctx.config.timeouts.clientIdleMs)
  }

  /** Answer with a gateway error (no response has started). */
  private failRequest (code: ErrorCode, detail: string): void {
    const close = !this.canContinueAfterLocalAnswer() || this.ctx.draining
    this.lastFailure = detail
    this.answerLocally(code, errorReply(code, close, this.isHead))
  }

  /** Write a response the proxy made itself and finish the request. */
  private answerLocally (code: ErrorCode, reply: Buffer): void {
    const info = describe(code)
    this.status = info.status
    this.flag = info.flag
    this.responseStarted = true
    this.closeAfterResponse = !this.canContinueAfterLocalAnswer() || this.ctx.draining
    this.detachUpstream(true)
    this.writeOut(reply)
    this.finishRequest()
  }

  /** A request we refuse before it goes anywhere (parser errors, limits): answer and close. */
  private rejectRequest (code: ErrorCode, detail: string): void {
    const info = describe(code)
    if (this.startedAt === 0 || this.phase !== P_HEAD) this.startedAt = performance.now()
    this.status = info.status
    this.flag = info.flag
    this.lastFailure = detail
    this.ctx.state.addHeader(L.H_PROTOCOL_ERRORS, 1)
    logRejected(this, code, detail)
    this.detachUpstream(true)
    this.keepAlive = false
    this.closeAfterResponse = true
    this.pending = null
    this.writeOut(errorReply(code, true, this.isHead))
    logAccess(this)
    this.lingerAndClose()
  }

  /** Half-close after the last response; discard input until the client closes or LINGER_MS passes. */
  private lingerAndClose (): void {
    this.phase = P_CLOSED
    this.pending = null
    this.discarded = 0
    this.socket.end()
    if (this.socket.isPaused()) this.socket.resume()
    this.setDeadline(D_LINGER, LINGER_MS)
  }

  private detachUpstream (destroy: boolean): void {
    const up = this.upstream
    this.upstream = null
    this.releaseActive()
    if (up !== null && destroy) up.destroy()
  }

  /** Failure after the response started: log and cut. */
  private logAndClose (): void {
    logAccess(this)
    this.phase = P_CLOSED
    this.socket.destroy()
  }

  // ---- socket lifecycle ----

  handleEnd (): void {
    // the client half-closed: answer what is in flight, then close
    this.keepAlive = false
    if (this.phase === P_CLOSED) {
      this.socket.destroy() // we had half-closed already: done
    } else if (this.phase === P_HEAD) {
      if (!this.parser.started || this.parser.error !== null) this.socket.end()
      // a head that can never be completed: answer now rather than hold the connection until clientHeaderMs
      else this.rejectRequest('SWY_ERR_BAD_REQUEST', 'client closed the connection in the middle of a request head')
    } else if ((this.phase === P_BODY || this.phase === P_CONNECTING) && !this.bodyDone) {
      // the body can never be completed: drop the exchange, and blame no upstream
      this.flag = 'DC'
      this.status = 499
      this.detachUpstream(true)
      logAccess(this)
      this.phase = P_CLOSED
      this.socket.destroy()
    }
  }

  handleClose (): void {
    const ctx = this.ctx
    if (this.upstream !== null) {
      // mid-exchange: the upstream connection cannot be trusted for reuse
      this.detachUpstream(true)
      if (this.phase !== P_TUNNEL && this.phase !== P_CLOSED) {
        this.flag = 'DC'
        if (this.status === 0) this.status = 499
        logAccess(this)
      }
    }
    this.releaseActive()
    if (this.cacheState !== null) this.cacheState.reset()
    this.phase = P_CLOSED
    this.pending = null
    ctx.clients.delete(this)
    ctx.sweeper.delete(this)
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, L.W_OPEN_CONNECTIONS, -1)
    if (ctx.clients.size === 0 && ctx.onIdle !== null) ctx.onIdle()
  }

  handleDrain (): void {
    // the client took what we held: read more of the response
    const up = this.upstream
    if (up !== null && up.socket.isPaused()) up.socket.resume()
  }
}

function nullIfEmpty (value: string): string | null {
  return value === '' ? null : value
}

function client (socket: net.Socket): ClientConnection {
  return (socket as unknown as Record<symbol, ClientConnection>)[kClient]
}

function onClientData (this: net.Socket, chunk: Buffer): void { client(this).handleData(chunk) }
function onClientEnd (this: net.Socket): void { client(this).handleEnd() }
function onClientError (this: net.Socket): void { /* 'close' follows; nothing to add */ }
function onClientClose (this: net.Socket): void { client(this).handleClose() }
function onClientDrain (this: net.Socket): void { client(this).handleDrain() }
