/**
 * One client connection and its request loop. Requests run one at a time, in
 * order, through these phases (Pingora's request_filter -> upstream_peer ->
 * response_filter -> logging):
 *
 *   read head -> filter (client IP, firewall, rate limit) -> cache lookup
 *     -> pick -> connect -> send (head, body) -> relay response -> log -> next
 *
 * `drive()` is the connection's one loop (undici's `_resume`, guarded by
 * `driving` as undici guards with kResuming): it reads the next pipelined head
 * from `input` and runs the request's phases. A request answered at once (a
 * local answer, a cache hit) returns to the loop; a request that must wait (an
 * upstream, a cache fill) leaves it, and its completion calls drive() again.
 * Nothing calls back into the parser from a completion, so a pipeline of any
 * length runs at constant stack depth.
 *
 * Bounded: unparsed input (`MAX_INPUT_BYTES`, then the socket is paused),
 * responses queued for a client that does not read (`MAX_QUEUED_OUTPUT`, then
 * the loop stops until 'drain'), requests per loop turn (`REQUESTS_PER_TURN`,
 * then the loop yields to other connections), interim responses (upstream.ts).
 *
 * Monomorphic: every field is assigned in the constructor, per-request ones
 * again in resetRequest(). Socket handlers are module-level functions.
 */
import type * as net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { ProxyContext, RateDecisionLike } from './context'
import type { UpstreamEntry } from '../shared/state'
import { W_OPEN_CONNECTIONS, W_REQUESTS, U_ACTIVE_REQUESTS, U_REQUESTS, U_RETRIES, H_PROTOCOL_ERRORS } from '../shared/layout'
import {
  HeadParser, KIND_REQUEST, HEAD_INCOMPLETE, HEAD_ERROR, BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE,
} from '../http/head-parser'
import { H_COOKIE, H_UPGRADE } from '../http/header-names'
import { ChunkedScanner, CHUNKED_ERROR, CRLF, chunkSizeLine } from '../http/chunked'
import { buildRequestHead, buildResponseHead, type ForwardIdentity, type ConnectionField } from '../http/serialize'
import { errorReply, errorReplyWith } from '../http/replies'
import { PickContext } from '../balancer/types'
import { describe, type ErrorCode } from '../errors'
import { UpstreamConnection, type UpstreamClient, type HeadAction, type UpstreamFailure } from './upstream'
import { recordUpstreamFailure, recordUpstreamSuccess, recordRequestFailure, clientHash } from '../health/passive'
import { findCookie } from '../sticky/cookie'
import { logAccess, logRejected, logUpstreamProblem, logEjection } from './access-log'
import { Exchange } from './exchange'
import type { Expirable } from './sweeper'
import { CacheState, renderCachedResponse, type CacheUser, type CachedResponse, type CacheDecision } from './cache-path'
import { filterRequest, type FilteredRequest } from './request-filter'
import { pickUpstream } from './pick'
import { decideRetry, blamesUpstream } from './retry'
import { upgradeAllowed } from './upgrade'
import { canonicalHost } from '../firewall/rules'

/** Where the connection is in its current request. */
type Phase =
  | 'head' //       reading a request head (or waiting for one)
  | 'cacheWait' //  parked until another request (any thread) fills the cache entry
  | 'connecting' // an upstream is picked, its connection not yet ready; the body waits
  | 'body' //       streaming the request body upstream
  | 'response' //   the request is sent: relaying the response
  | 'tunnel' //     after 101: raw bytes both ways
  | 'closed' //     lingering after the last response, or gone

type Deadline =
  | 'none'
  | 'header' // a request head has started and must complete (slowloris)
  | 'idle' //   no request, or a client that does not read what we queued for it
  | 'linger' // closing: reading and discarding until the client closes too

/**
 * After our last response on a connection we half-close and keep reading (and
 * discarding) for a while: closing with unread input makes the kernel send RST,
 * which can destroy the response before the client reads it (RFC 9112 §9.6).
 */
const LINGER_MS = 2000
const LINGER_MAX_BYTES = 16 * 1024 * 1024
/** Unparsed pipelined input held while a request is in progress; past it the socket is paused. */
const MAX_INPUT_BYTES = 64 * 1024
/** Response bytes queued on a client socket past which no further pipelined request starts. */
const MAX_QUEUED_OUTPUT = 256 * 1024
/** Requests one turn of the loop may run before it yields to the event loop (other connections). */
const REQUESTS_PER_TURN = 64
/** Up to this many body bytes are copied next to a head to save a write (and a syscall). */
const COALESCE_BYTES = 16 * 1024

const kClient = Symbol('switchyard.client')

export class ClientConnection extends Exchange implements UpstreamClient, Expirable, FilteredRequest, CacheUser {
  readonly ctx: ProxyContext
  readonly socket: net.Socket
  readonly identity: ForwardIdentity
  readonly parser: HeadParser
  /** Scanner of a chunked request body. */
  readonly chunked: ChunkedScanner
  readonly pick = new PickContext()
  rate: RateDecisionLike | null
  phase: Phase = 'head'
  deadline = 0
  deadlineKind: Deadline = 'none'
  /** drive() is on the stack (undici's kResuming): a completion inside it must not re-enter. */
  driving = false
  /** The loop yielded to the event loop (REQUESTS_PER_TURN) and runs again from setImmediate. */
  yielded = false
  /** The loop stopped because the client is not reading what we queued ('drain' restarts it). */
  outputFull = false
  /** The client half-closed: answer what it sent, then close. */
  clientEnded = false
  /** Bytes received and not yet parsed: input[inputStart..]. */
  input: Buffer | null = null
  inputStart = 0
  upstream: UpstreamConnection | null = null
  /** Upstream slot whose U_ACTIVE_REQUESTS this request holds, -1 for none. */
  activeSlot = -1
  /** Bytes discarded while lingering. */
  discarded = 0
  /** Cache state for the current request; null while the cache is off. */
  cacheState: CacheState | null = null

  constructor (ctx: ProxyContext, socket: net.Socket, peerIp: string) {
    // an IPv4 peer on a dual-stack socket reads '::ffff:1.2.3.4': it is 1.2.3.4
    const ip = peerIp.startsWith('::ffff:') && peerIp.includes('.') ? peerIp.slice(7) : peerIp
    super(ip)
    this.ctx = ctx
    this.socket = socket
    this.identity = {
      clientIp: ip,
      forwardedFor: ip.includes(':') ? `for="[${ip}]"` : `for=${ip}`,
      via: ctx.config.proxy.via,
    }
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
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, W_OPEN_CONNECTIONS, 1)
    this.setDeadline('idle', ctx.config.timeouts.clientIdleMs)
  }

  // ---- FirewallRequest: the host the request is for (an absolute-form target's, RFC 9112 §3.2.2) stands in
  // for Host, in the form rules compare: lower case, no port, no trailing dot (Host: SECRET.:80 is secret) ----
  header (lowerCaseName: string): string | null {
    if (lowerCaseName !== 'host') return this.parser.header(lowerCaseName)
    const host = this.parser.host()
    return host === '' ? null : canonicalHost(host)
  }

  private setDeadline (kind: Deadline, ms: number): void {
    this.deadlineKind = kind
    this.deadline = Date.now() + ms
  }

  private clearDeadline (): void {
    this.deadlineKind = 'none'
    this.deadline = 0
  }

  onDeadline (): void {
    const kind = this.deadlineKind
    this.clearDeadline()
    if (kind === 'header' && this.phase === 'head') this.rejectRequest('SWY_ERR_CLIENT_TIMEOUT', 'client did not complete the request head in time')
    else if ((kind === 'idle' && this.phase === 'head') || kind === 'linger') this.socket.destroy()
  }

  /** Graceful shutdown: close now if no request is in progress. */
  closeIfIdle (): boolean {
    if (this.phase === 'head' && !this.parser.started && this.input === null) {
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
      case 'head':
        this.appendInput(chunk)
        if (this.yielded) { // the loop yielded to other connections: bound what waits meanwhile
          if ((this.input as Buffer).length - this.inputStart > MAX_INPUT_BYTES) this.socket.pause()
        } else {
          this.drive()
        }
        break
      case 'body': this.forwardBody(chunk, 0); break
      case 'tunnel': {
        const up = this.upstream
        if (up !== null && !up.socket.write(chunk)) this.socket.pause()
        break
      }
      case 'closed':
        this.discarded += chunk.length
        if (this.discarded > LINGER_MAX_BYTES) this.socket.destroy()
        break
      default: // a request is in progress: these bytes are its body (connecting) or the next requests
        this.appendInput(chunk)
        if (this.input !== null && this.input.length - this.inputStart > MAX_INPUT_BYTES) this.socket.pause()
    }
  }

  private appendInput (chunk: Buffer): void {
    const input = this.input
    if (input === null) {
      this.input = chunk
      this.inputStart = 0
    } else {
      this.input = Buffer.concat([input.subarray(this.inputStart), chunk])
      this.inputStart = 0
    }
  }

  /** The loop: run pipelined requests from `input` until one has to wait. */
  drive (): void {
    if (this.driving) return
    this.driving = true
    try {
      let budget = REQUESTS_PER_TURN
      while (this.phase === 'head' && this.input !== null) {
        if (this.socket.writableLength > MAX_QUEUED_OUTPUT) {
          // the client is not reading its responses: read no more requests until it does
          this.outputFull = true
          this.socket.pause()
          this.setDeadline('idle', this.ctx.config.timeouts.clientIdleMs)
          break
        }
        if (budget-- === 0) {
          // let the other connections run; read nothing more until we are back
          this.socket.pause()
          this.yielded = true
          setImmediate(driveLater, this)
          break
        }
        this.readHead()
      }
    } finally {
      this.driving = false
    }
    if (this.phase === 'head' && this.input === null && !this.outputFull) this.awaitInput()
  }

  /** Everything received is answered: wait for the next request, or close after a half-close. */
  private awaitInput (): void {
    if (this.clientEnded) {
      // a head that can never be completed: answer now rather than hold the connection until clientHeaderMs
      if (this.parser.started) this.rejectRequest('SWY_ERR_BAD_REQUEST', 'client closed the connection in the middle of a request head')
      else this.lingerAndClose()
      return
    }
    if (this.socket.isPaused()) this.socket.resume()
    if (!this.parser.started && this.deadlineKind !== 'idle') this.setDeadline('idle', this.ctx.config.timeouts.clientIdleMs)
  }

  /** Phase: read a request head from `input`; a complete one starts the request. */
  private readHead (): void {
    const buf = this.input as Buffer
    const start = this.inputStart
    this.input = null
    const p = this.parser
    if (!p.started) this.startedAt = performance.now()
    if (this.deadlineKind !== 'header') this.setDeadline('header', this.ctx.config.timeouts.clientHeaderMs)
    const r = p.execute(buf, start, buf.length)
    if (r === HEAD_INCOMPLETE) return // the parser keeps what it needs
    if (r === HEAD_ERROR) {
      this.method = p.method
      this.target = p.targetEnd > 0 ? p.target() : ''
      this.rejectRequest(p.error as ErrorCode, p.errorDetail)
      return
    }
    this.startRequest(buf, r)
  }

  /** A complete head: take its body bytes from this read, then run the request's phases. */
  private startRequest (buf: Buffer, bodyStart: number): void {
    const p = this.parser
    const ctx = this.ctx
    this.clearDeadline()
    this.method = p.method
    this.target = p.target()
    this.isHead = p.method === 'HEAD'
    this.http10 = p.versionMinor === 0
    this.keepAlive = p.keepAlive && !ctx.draining
    this.upgrading = p.hasUpgrade && p.connectionUpgrade && p.method === 'GET' && !this.http10 &&
      upgradeAllowed(p.headerOfKind(H_UPGRADE), ctx.config.proxy.allowedUpgrades)
    this.bodyKind = p.bodyKind
    this.bodyRemaining = p.bodyKind === BODY_LENGTH ? p.contentLength : 0
    this.bodyLength = p.bodyKind === BODY_CHUNKED ? -1 : (p.contentLength > 0 ? p.contentLength : 0)
    this.bodyDone = p.bodyKind === BODY_NONE
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, W_REQUESTS, 1)

    const maxBody = ctx.config.limits.maxBodyBytes
    if (maxBody > 0 && this.bodyLength > maxBody) {
      this.rejectRequest('SWY_ERR_BODY_TOO_LARGE', `Content-Length ${this.bodyLength} over limit ${maxBody}`)
      return
    }
    // this read: [bodyStart, bodyEnd) belongs to this request's body, the rest to the next requests
    let bodyEnd = bodyStart
    if (p.bodyKind === BODY_LENGTH) {
      bodyEnd = bodyStart + Math.min(this.bodyRemaining, buf.length - bodyStart)
      this.bodyRemaining -= bodyEnd - bodyStart
      this.bodyDone = this.bodyRemaining === 0
      if (bodyEnd > bodyStart) this.initialBody = buf.subarray(bodyStart, bodyEnd)
    } else if (p.bodyKind === BODY_CHUNKED) {
      const c = this.chunked
      c.reset()
      const e = c.execute(buf, bodyStart, buf.length)
      if (e === CHUNKED_ERROR) { this.rejectRequest('SWY_ERR_BAD_CHUNK', c.error); return }
      if (maxBody > 0 && c.dataBytes > maxBody) { this.rejectRequest('SWY_ERR_BODY_TOO_LARGE', 'chunked body over limit'); return }
      bodyEnd = e >= 0 ? e : buf.length
      this.bodyDone = e >= 0
      this.initialBody = c.encode(buf, false) // canonical chunk lines (RFC 9112 §7.1), kept trailers only
    }
    if (bodyEnd < buf.length) {
      this.input = buf
      this.inputStart = bodyEnd
    }

    // phase: request filter (client address, firewall, rate limit)
    const refusal = filterRequest(ctx, this)
    if (refusal !== null) { this.failRequest(refusal, this.lastFailure); return }

    // phase: cache lookup
    // an upgrade is never answered from the cache (nor holds a fill claim for the life of a tunnel)
    if (ctx.cache !== null && !this.upgrading) {
      if (this.cacheState === null || this.cacheState.hook !== ctx.cache) this.cacheState = new CacheState(ctx.cache, this)
      if (this.onCacheDecision(this.cacheState.onRequest(this.isHead, p.bodyKind === BODY_NONE))) return
    } else if (this.cacheState !== null) {
      this.cacheState.reset()
      this.cacheState = null
    }
    this.forwardRequest()
  }

  /** Act on the cache phase's decision; true when the request was answered or parked. */
  private onCacheDecision (decision: CacheDecision): boolean {
    if (decision === 'forward') return false
    if (decision === 'wait') {
      this.phase = 'cacheWait'
      return true
    }
    this.serveCached((this.cacheState as CacheState).response)
    return true
  }

  /** Parked for a cache fill: the thread's poll timer nudges us. */
  onCacheWaitTick (now: number): void {
    if (this.phase !== 'cacheWait' || this.cacheState === null) return
    if (this.onCacheDecision(this.cacheState.lookupAgain(now))) return
    this.forwardRequest()
  }

  /** Phase: pick an upstream and send the request (after the filter and the cache). */
  private forwardRequest (): void {
    const ctx = this.ctx
    const p = this.parser
    this.pick.reset()
    this.pick.clientIp = this.clientIp
    if (ctx.hashCookie !== null || ctx.sticky !== null) {
      const cookies = p.headerOfKind(H_COOKIE, '; ')
      if (ctx.hashCookie !== null) this.pick.hashKey = cookies === null ? '' : (findCookie(cookies, ctx.hashCookie) ?? '')
      if (ctx.sticky !== null) this.stickyIndex = ctx.sticky.route(cookies)
    }
    if (ctx.hashHeader !== null) this.pick.hashKey = p.header(ctx.hashHeader) ?? ''

    const initial = this.initialBody
    const validators = this.cacheState !== null ? this.cacheState.conditionalFields() : ''
    const coalesce = initial !== null && initial.length <= COALESCE_BYTES
    this.requestHead = buildRequestHead(p, this.identity, this.upgrading, coalesce ? initial : null, validators)
    if (coalesce) { this.initialBody = null; this.headCarriesBody = true }
    this.retriesLeft = ctx.config.retries
    this.phase = 'connecting'
    // hold the body back until an upstream is connected: a failed connect can then go elsewhere
    if (!this.bodyDone) this.socket.pause()
    this.dispatch()
  }

  /** Choose an upstream and get a connection to it (again, after a failure that allows it). */
  private dispatch (): void {
    const ctx = this.ctx
    const index = pickUpstream(ctx, this.pick, this.stickyIndex)
    if (index === -1) {
      const tried = this.pick.triedCount > 0
      this.failRequest(tried ? 'SWY_ERR_UPSTREAM_CONNECT' : 'SWY_ERR_NO_HEALTHY_UPSTREAM', tried ? this.lastFailure : 'no upstream is available')
      return
    }
    // a new cookie unless the request's own sticky cookie chose this upstream
    this.setCookie = ctx.sticky !== null && index !== this.stickyIndex ? ctx.sticky.setCookieLine(index) : ''
    this.pick.markTried(index)
    this.connectTo(ctx.table[index], true)
  }

  /** Get a connection to `entry`: a pooled one when `pooled` allows and there is one, else a new one. */
  private connectTo (entry: UpstreamEntry, pooled: boolean): void {
    const ctx = this.ctx
    this.entry = entry
    ctx.state.addHeld(ctx.workerSlot, entry.slot, U_ACTIVE_REQUESTS, 1)
    ctx.state.addUpstream(entry.slot, U_REQUESTS, 1)
    this.activeSlot = entry.slot
    const idle = pooled ? ctx.pool.acquire(entry.slot) as UpstreamConnection | null : null
    const up = idle ?? new UpstreamConnection(ctx, entry)
    this.upstream = up
    up.assign(this, this.isHead)
    if (idle !== null) this.onUpstreamConnected(idle)
  }

  private releaseActive (): void {
    if (this.activeSlot !== -1) {
      this.ctx.state.addHeld(this.ctx.workerSlot, this.activeSlot, U_ACTIVE_REQUESTS, -1)
      this.activeSlot = -1
    }
  }

  /** Phase: send. The head (with the first body bytes), then the body as it comes. */
  onUpstreamConnected (up: UpstreamConnection): void {
    if (up !== this.upstream || this.phase !== 'connecting') return
    this.sentAt = performance.now()
    if (this.cacheState !== null) this.cacheState.requestSentAt = Date.now()
    const s = up.socket
    const body = this.initialBody
    if (body !== null) {
      s.cork()
      s.write(this.requestHead as Buffer)
      s.write(body)
      s.uncork()
    } else {
      s.write(this.requestHead as Buffer)
    }
    this.bodySent = body !== null || this.headCarriesBody
    if (this.bodyDone) {
      this.phase = 'response'
      up.awaitResponse()
      return
    }
    this.phase = 'body'
    up.uploadActivity()
    // bytes that arrived while connecting are this body's (and perhaps the next requests')
    const held = this.input
    if (held !== null) {
      const start = this.inputStart
      this.input = null
      this.forwardBody(start === 0 ? held : held.subarray(start), 0)
    }
    // the upstream 'drain' handler resumes us when it has taken what we wrote
    if (this.phase === 'body' && !s.writableNeedDrain) this.socket.resume()
  }

  /** Phase 'body': more request body from the client, forwarded as the proxy frames it. */
  private forwardBody (buf: Buffer, start: number): void {
    const up = this.upstream
    if (up === null) return
    let end = buf.length
    if (this.bodyKind === BODY_LENGTH) {
      end = start + Math.min(this.bodyRemaining, end - start)
      this.bodyRemaining -= end - start
      this.bodyDone = this.bodyRemaining === 0
      if (end > start) {
        this.bodySent = true
        if (!up.socket.write(start === 0 && end === buf.length ? buf : buf.subarray(start, end))) this.socket.pause()
        up.uploadActivity()
      }
    } else {
      const c = this.chunked
      const e = c.execute(buf, start, end)
      if (e === CHUNKED_ERROR) { this.abortUpload('SWY_ERR_BAD_CHUNK', c.error); return }
      const maxBody = this.ctx.config.limits.maxBodyBytes
      if (maxBody > 0 && c.dataBytes > maxBody) { this.abortUpload('SWY_ERR_BODY_TOO_LARGE', 'chunked body over limit'); return }
      if (e >= 0) { end = e; this.bodyDone = true }
      if (c.encodedLength(false) > 0) {
        this.bodySent = true
        if (!writeChunks(up.socket, buf, c, false, null)) this.socket.pause()
        up.uploadActivity()
      }
    }
    if (this.bodyDone) {
      if (end < buf.length) this.appendInput(buf.subarray(end))
      this.phase = 'response'
      up.awaitResponse()
    }
  }

  /** The request body turned out malformed midway: the upstream has part of it, so drop both. */
  private abortUpload (code: ErrorCode, detail: string): void {
    this.detachUpstream(true)
    this.keepAlive = false
    if (this.responseStarted) this.socket.destroy()
    else this.failRequest(code, detail)
  }

  // ---- phase: relay the response (called by UpstreamConnection) ----

  onResponseHead (up: UpstreamConnection, head: HeadParser): HeadAction {
    if (up !== this.upstream) return 'abort'
    const ctx = this.ctx
    const via = ctx.config.proxy.via
    const status = head.status
    if (status < 200 && status !== 101) {
      // interim (100 Continue, 103 Early Hints): relayed to HTTP/1.1 clients (RFC 9110 §15.2), bounded in upstream.ts
      if (!this.http10) this.writeOut(buildResponseHead(head, via, 'none', '', 'drop'))
      return 'interim'
    }
    const slot = (this.entry as UpstreamEntry).slot
    // the sweeper's clock (a tick late at most) is enough for passive health (recordRequestFailure)
    recordUpstreamSuccess(ctx.state, slot, (ctx.sweeper.nowMs - ctx.state.epochMs) | 0)
    ctx.state.recordResponse(slot, status, performance.now() - this.sentAt)
    if (status === 101) {
      // only an upgrade we asked for, to a protocol we allow; anything else is not HTTP any more
      if (!this.upgrading || !upgradeAllowed(head.headerOfKind(H_UPGRADE), ctx.config.proxy.allowedUpgrades)) {
        this.onUpstreamFailure(up, 'SWY_ERR_UPSTREAM_PROTOCOL', this.upgrading ? 'upgrade to a protocol not asked for' : 'unsolicited 101 response')
        up.destroy()
        return 'abort'
      }
      this.status = status
      this.responseStarted = true
      this.writeOut(buildResponseHead(head, via, 'upgrade', this.setCookie, 'drop'))
      this.phase = 'tunnel'
      this.clearDeadline()
      this.releaseActive()
      const held = this.input
      if (held !== null) { up.socket.write(this.inputStart === 0 ? held : held.subarray(this.inputStart)); this.input = null }
      this.socket.resume()
      return 'tunnel'
    }
    this.status = status
    this.responseStarted = true
    let extra = this.setCookie
    const cache = this.cacheState
    if (cache !== null && (cache.key !== '' || cache.invalidateKey !== '')) {
      const cached = cache.onResponseHead(head)
      if (cached !== null) {
        // revalidated: the stored response goes out instead of the upstream's 304
        this.status = cached.status
        this.closeAfterResponse = !this.keepAlive || ctx.draining || !this.bodyDone
        const out = renderCachedResponse(cached, ctx.config.proxy.via, this.closeAfterResponse, this.http10)
        this.bytesOut += out.length
        this.heldHead = out
        return 'final'
      }
      if (cache.xCache !== '') extra += 'X-Cache: ' + cache.xCache + '\r\n'
    }
    // RFC 9112 §6.1: no chunked to an HTTP/1.0 client: the body goes de-chunked and the close ends it
    const chunked = head.bodyKind === BODY_CHUNKED
    this.relay = chunked ? (this.http10 ? 'dechunk' : 'rechunk') : 'raw'
    // keep the client connection only if its framing stays known
    const willClose = !this.keepAlive || ctx.draining || !this.bodyDone || this.relay === 'dechunk' ||
      (head.bodyKind === BODY_CLOSE && !this.isHead)
    this.closeAfterResponse = willClose
    const connection: ConnectionField = willClose ? 'close' : (this.http10 ? 'keep-alive' : 'none')
    const codings = head.hasTransferEncoding && !this.http10 && status !== 204 && status !== 304 ? 'chunked' : 'drop'
    const out = buildResponseHead(head, via, connection, extra, codings)
    this.bytesOut += out.length
    this.heldHead = out
    return 'final'
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

  onResponseChunks (chunk: Buffer, scanner: ChunkedScanner, done: boolean): void {
    const dechunk = this.relay === 'dechunk'
    const n = scanner.encodedLength(dechunk)
    if (n === 0) return
    const head = this.heldHead
    this.heldHead = null
    this.bytesOut += n
    if (!writeChunks(this.socket, chunk, scanner, dechunk, head) && this.upstream !== null && !done) this.upstream.socket.pause()
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
    const reuse = reusable && this.bodyDone
    if (reuse && up.socket.isPaused()) up.socket.resume()
    if (!(reuse && this.ctx.pool.release(up))) up.destroy()
    this.finishRequest()
  }

  onUpstreamFailure (up: UpstreamConnection, code: UpstreamFailure, detail: string): void {
    if (up !== this.upstream) return
    this.flushHead()
    this.upstream = null
    this.releaseActive()
    const entry = this.entry as UpstreamEntry
    this.lastFailure = entry.address + ': ' + detail
    if (code === 'SWY_ERR_CLIENT_TIMEOUT') {
      // the client's fault: no passive failure for the upstream, a 408 for the client
      logRejected(this, code, detail)
      this.keepAlive = false
      if (this.responseStarted) this.logAndClose(code)
      else this.failRequest(code, detail)
      return
    }
    logUpstreamProblem(this, entry, code, detail)
    if (blamesUpstream(code, up.staleReuse)) this.noteFailure(entry, code)
    if (this.responseStarted) {
      // the status line is already out: all we can do is cut the connection
      this.logAndClose(code)
      return
    }
    const action = decideRetry(code, up.staleReuse, this.bodySent, this.method, this.retriesLeft)
    if (action !== 'fail') {
      this.phase = 'connecting'
      if (!this.bodyDone) this.socket.pause() // the body waits for the new connection, as on the first try
    }
    switch (action) {
      case 'reconnect': // the same upstream on a fresh connection: the pooled one had been closed by it
        this.connectTo(entry, false)
        return
      case 'next':
        this.retriesLeft--
        this.ctx.state.addUpstream(entry.slot, U_RETRIES, 1)
        this.dispatch()
        return
      case 'nextFree':
        this.dispatch()
        return
      default:
        this.failRequest(code, detail)
    }
  }

  private noteFailure (entry: UpstreamEntry, code: UpstreamFailure): void {
    const ctx = this.ctx
    const passive = ctx.config.healthCheck.passive
    const now = ctx.state.now()
    // a refused connection says nothing of the request; anything after it was sent might (retry.ts)
    const ejected = code === 'SWY_ERR_UPSTREAM_CONNECT'
      ? recordUpstreamFailure(ctx.state, entry.slot, passive, now)
      : recordRequestFailure(ctx.state, entry.slot, passive, now, this.sentAt === 0 ? now : (now - (performance.now() - this.sentAt)) | 0, clientHash(this.clientIp))
    if (ejected) logEjection(entry, `${passive.maxFailures} consecutive failure(s): ${this.lastFailure}`)
  }

  onTunnelData (chunk: Buffer): void {
    this.bytesOut += chunk.length
    if (!this.socket.write(chunk) && this.upstream !== null) this.upstream.socket.pause()
  }

  onTunnelEnd (): void {
    this.upstream = null
    this.logAndClose(null)
  }

  // ---- ends of a request ----

  /** Answer from the cache (hit, 304, only-if-cached 504). */
  private serveCached (response: CachedResponse): void {
    this.status = response.status
    this.responseStarted = true
    this.closeAfterResponse = !this.keepAlive || this.ctx.draining
    this.writeOut(renderCachedResponse(response, this.ctx.config.proxy.via, this.closeAfterResponse, this.http10))
    this.finishRequest()
  }

  /** Phase: log. The response went out completely: next request or close. */
  private finishRequest (): void {
    if (this.cacheState !== null) this.cacheState.reset()
    if (this.ctx.config.log.access) logAccess(this)
    if (this.closeAfterResponse || !this.keepAlive) {
      this.lingerAndClose()
      return
    }
    this.resetRequest()
    this.parser.reset()
    this.phase = 'head'
    this.drive() // returns at once when the loop is on the stack: it goes on by itself
  }

  /** Answer with a response the proxy makes itself (policy refusal, gateway error); no response has started. */
  private failRequest (code: ErrorCode, detail: string): void {
    const info = describe(code)
    this.status = info.status
    this.flag = info.flag
    this.lastFailure = detail
    this.responseStarted = true
    // the connection survives a local answer only when the whole request body is already here
    this.closeAfterResponse = !this.keepAlive || !this.bodyDone || this.ctx.draining
    this.detachUpstream(true)
    const close = this.closeAfterResponse
    const limiter = this.ctx.limiter
    this.writeOut(code === 'SWY_ERR_RATE_LIMITED' && limiter !== null && this.rate !== null
      ? errorReplyWith(code, close, limiter.headers(this.rate), this.isHead)
      : errorReply(code, close, this.isHead))
    this.finishRequest()
  }

  /** A request refused before it goes anywhere (parser errors, limits): answer and close. */
  private rejectRequest (code: ErrorCode, detail: string): void {
    const info = describe(code)
    if (this.startedAt === 0) this.startedAt = performance.now()
    this.status = info.status
    this.flag = info.flag
    this.lastFailure = detail
    this.ctx.state.addHeader(H_PROTOCOL_ERRORS, 1)
    logRejected(this, code, detail)
    this.detachUpstream(true)
    this.keepAlive = false
    this.closeAfterResponse = true
    this.input = null
    this.writeOut(errorReply(code, true, this.isHead))
    if (this.ctx.config.log.access) logAccess(this)
    this.lingerAndClose()
  }

  /** Half-close after the last response; discard input until the client closes or LINGER_MS passes. */
  private lingerAndClose (): void {
    this.phase = 'closed'
    this.input = null
    this.discarded = 0
    this.socket.end()
    if (this.socket.isPaused()) this.socket.resume()
    this.setDeadline('linger', LINGER_MS)
  }

  private detachUpstream (destroy: boolean): void {
    const up = this.upstream
    this.upstream = null
    this.releaseActive()
    if (up !== null && destroy) up.destroy()
  }

  /** Failure after the response started (or a tunnel ended): log and cut. */
  private logAndClose (code: ErrorCode | null): void {
    if (code !== null) this.flag = describe(code).flag
    if (this.ctx.config.log.access) logAccess(this)
    this.phase = 'closed'
    this.input = null
    this.socket.destroy()
  }

  // ---- socket lifecycle ----

  handleEnd (): void {
    // the client half-closed: answer what it sent (pipelined requests included), then close
    this.clientEnded = true
    // the request in progress is the last one: say so in its response (Connection: close)
    if (this.input === null) this.keepAlive = false
    switch (this.phase) {
      case 'closed':
        this.socket.destroy() // we had half-closed already: done
        break
      case 'head':
        if (this.input === null && !this.yielded) this.awaitInput()
        break
      case 'body':
      case 'connecting':
        // a response already under way (an upstream that answered early) is still relayed, then we close
        if (this.bodyDone || this.responseStarted) break
        // the body can never be completed: drop the exchange, and blame no upstream
        this.flag = 'DC'
        this.status = 499
        this.detachUpstream(true)
        if (this.ctx.config.log.access) logAccess(this)
        this.phase = 'closed'
        this.socket.destroy()
        break
      default:
    }
  }

  handleClose (): void {
    const ctx = this.ctx
    if (this.upstream !== null) {
      // mid-exchange: the upstream connection cannot be trusted for reuse
      this.detachUpstream(true)
      if (this.phase !== 'tunnel' && this.phase !== 'closed') {
        this.flag = 'DC'
        if (this.status === 0) this.status = 499
        if (ctx.config.log.access) logAccess(this)
      }
    }
    this.releaseActive()
    if (this.cacheState !== null) this.cacheState.reset()
    this.phase = 'closed'
    this.input = null
    this.heldHead = null
    this.requestHead = null
    this.initialBody = null
    ctx.clients.delete(this)
    ctx.sweeper.delete(this)
    if (ctx.workerSlot !== -1) ctx.state.addWorker(ctx.workerSlot, W_OPEN_CONNECTIONS, -1)
    if (ctx.clients.size === 0 && ctx.onIdle !== null) ctx.onIdle()
  }

  handleDrain (): void {
    if (this.outputFull) {
      // the client read what we queued: take its next requests
      this.outputFull = false
      this.clearDeadline()
      this.drive()
    }
    // the client took what we held: read more of the response
    const up = this.upstream
    if (up !== null && up.socket.isPaused()) up.socket.resume()
  }
}

/**
 * The chunked bytes `scanner` just scanned in `src`, re-framed canonically (or
 * de-chunked), after `head` when one is held: copied into one buffer (one
 * write) when the data is small, else the data goes as views of `src` between
 * our own chunk lines (no copy), corked into one writev. false under backpressure.
 */
function writeChunks (socket: net.Socket, src: Buffer, scanner: ChunkedScanner, dechunk: boolean, head: Buffer | null): boolean {
  if (scanner.spanBytes <= COALESCE_BYTES) {
    const headBytes = head === null ? 0 : head.length
    const out = Buffer.allocUnsafe(headBytes + scanner.encodedLength(dechunk))
    if (head !== null) head.copy(out, 0)
    scanner.encodeInto(src, out, headBytes, dechunk)
    return socket.write(out)
  }
  socket.cork()
  if (head !== null) socket.write(head)
  if (!dechunk) socket.write(chunkSizeLine(scanner.spanBytes))
  const spans = scanner.spans
  for (let i = 0; i < scanner.spanCount; i++) socket.write(src.subarray(spans[2 * i], spans[2 * i + 1]))
  if (!dechunk) {
    socket.write(CRLF)
    if (scanner.endedThisCall) socket.write(scanner.lastChunk() as Buffer)
  }
  socket.uncork()
  return !socket.writableNeedDrain
}

function client (socket: net.Socket): ClientConnection {
  return (socket as unknown as Record<symbol, ClientConnection>)[kClient]
}

function driveLater (c: ClientConnection): void {
  c.yielded = false
  c.drive()
}
function onClientData (this: net.Socket, chunk: Buffer): void { client(this).handleData(chunk) }
function onClientEnd (this: net.Socket): void { client(this).handleEnd() }
function onClientError (this: net.Socket): void { /* 'close' follows; nothing to add */ }
function onClientClose (this: net.Socket): void { client(this).handleClose() }
function onClientDrain (this: net.Socket): void { client(this).handleDrain() }
