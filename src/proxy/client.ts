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
 * The upstream half (send, relay, failures and retries) is UpstreamSide in
 * upstream-side.ts; the per-request record is Exchange in exchange.ts.
 * Monomorphic: every field is assigned in the constructor, per-request ones
 * again in resetRequest(). Socket handlers are module-level functions.
 */
import type * as net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { LeaseWaiter, ProxyContext, RateDecisionLike } from './context'
import { W_OPEN_CONNECTIONS, W_REQUESTS, H_PROTOCOL_ERRORS } from '../shared/layout'
import {
  HeadParser, KIND_REQUEST, HEAD_INCOMPLETE, HEAD_ERROR, BODY_NONE, BODY_LENGTH, BODY_CHUNKED,
} from '../http/head-parser'
import { H_COOKIE, H_UPGRADE } from '../http/header-names'
import { CHUNKED_ERROR } from '../http/chunked'
import { buildRequestHead, type ForwardIdentity } from '../http/serialize'
import { errorReply, errorReplyWith } from '../http/replies'
import { PickContext } from '../balancer/types'
import { describe, type ErrorCode } from '../errors'
import { findCookie } from '../sticky/cookie'
import { logAccess, logRejected } from './access-log'
import type { Expirable } from './sweeper'
import { CacheState, writeCachedResponse, type CacheUser, type CachedResponse, type CacheDecision } from './cache-path'
import { filterRequest, limitRequest, type FilterVerdict, type FilteredRequest } from './request-filter'
import { pickUpstream } from './pick'
import { upgradeAllowed } from './upgrade'
import { comparableHost } from '../http/field-syntax'
import { UpstreamSide, COALESCE_BYTES } from './upstream-side'
import type { ListenerRuntime } from '../net/accept'
import { httpsRedirectReply, acmeChallengeReply } from '../tls/redirect'
import { L_REDIRECTS } from '../shared/layout'

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
const kClient = Symbol('switchyard.client')
/** revalidationUpstream's scratch pick (one thread, one call at a time): nothing tried, no hash key. */
const revalidationPick = new PickContext()

export class ClientConnection extends UpstreamSide implements Expirable, FilteredRequest, CacheUser, LeaseWaiter {
  readonly identity: ForwardIdentity
  readonly parser: HeadParser
  readonly pick = new PickContext()
  rate: RateDecisionLike | null
  /** drive() is on the stack (undici's kResuming): a completion inside it must not re-enter. */
  driving = false
  /** The loop yielded to the event loop (REQUESTS_PER_TURN) and runs again from setImmediate. */
  yielded = false
  /** The loop stopped because the client is not reading what we queued ('drain' restarts it). */
  outputFull = false
  /** The client half-closed: answer what it sent, then close. */
  clientEnded = false
  /** Bytes discarded while lingering. */
  discarded = 0
  /** The listener this connection came in on (TLS or not, httpsRedirect); null for a bare attach (tests). */
  readonly listener: ListenerRuntime | null
  /** The scheme the client used, for the access log's "tls" key (undefined without a listener). */
  readonly proto: 'http' | 'https' | undefined

  constructor (ctx: ProxyContext, socket: net.Socket, peerIp: string, listener: ListenerRuntime | null = null) {
    // an IPv4 peer on a dual-stack socket reads '::ffff:1.2.3.4': it is 1.2.3.4
    const ip = peerIp.startsWith('::ffff:') && peerIp.includes('.') ? peerIp.slice(7) : peerIp
    super(ctx, socket, ip)
    this.listener = listener
    this.proto = listener !== null ? listener.proto : undefined
    this.identity = {
      clientIp: ip,
      forwardedFor: ip.includes(':') ? `for="[${ip}]"` : `for=${ip}`,
      via: ctx.config.proxy.via,
      proto: listener !== null ? listener.proto : 'http',
    }
    this.parser = new HeadParser(KIND_REQUEST, ctx.headLimits)
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

  /** The target as received: a string only when the log or the firewall reads it (valid until the parser resets). */
  get target (): string {
    const p = this.parser
    return p.targetEnd > 0 ? p.target() : ''
  }

  /** Phase: log. Count the response if the client got one (metrics), then one access-log line when the access log is on. */
  private logRequest (): void {
    if (this.responseStarted) this.countResponse()
    logAccess(this) // returns at once when the access log is off (log.ts: accessLog.on)
    if (this.trace !== null) { this.trace.end(this, this.flag); this.trace = null }
  }

  /**
   * Every response a client receives, relayed or answered locally, on this
   * thread's worker slot: a few Atomics.add (SharedState.recordClientResponse).
   * Request bytes are the request's head and body as read (bytesIn, the access log's).
   */
  private countResponse (): void {
    const ctx = this.ctx
    if (ctx.workerSlot === -1) return
    // a tunnel's life is not a request duration
    const durationMs = this.status === 101 ? -1 : performance.now() - this.startedAt
    const entry = this.entry
    ctx.state.recordClientResponse(ctx.workerSlot, entry === null ? -1 : entry.slot, this.status, this.localAnswer, durationMs, this.bytesIn, this.bytesOut)
  }

  // ---- FirewallRequest: the host the request is for (an absolute-form target's, RFC 9112 §3.2.2) stands in
  // for Host, in the form rules compare: lower case, no port, no trailing dot (Host: SECRET.:80 is secret) ----
  header (lowerCaseName: string): string | null {
    if (lowerCaseName !== 'host') return this.parser.header(lowerCaseName)
    const host = this.parser.hostName()
    return host === '' ? null : comparableHost(host)
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

  protected appendInput (chunk: Buffer): void {
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
    // phase: request ID (the client's when sane, else a new one), before anything can answer
    if (ctx.requestIds !== null) ctx.requestIds.assign(p, this)
    // phase: trace (decide; a sampled request starts its server span)
    if (ctx.tracing !== null) ctx.tracing.begin(this, p)

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
    this.bytesIn = p.headLength + (bodyEnd - bodyStart)
    if (bodyEnd < buf.length) {
      this.input = buf
      this.inputStart = bodyEnd
    }
    // the client half-closed before this body ended: every byte it will ever send is here, so it never can
    if (this.clientEnded && !this.bodyDone) { this.dropIncomplete(); return }

    // phase: local answers of the listener (ACME HTTP-01 on plain listeners, then httpsRedirect)
    const listener = this.listener
    if (listener !== null && listener.proto === 'http') {
      if (ctx.acmeChallenges !== null && this.answerChallenge(ctx.acmeChallenges)) return
      if (listener.redirectPort !== null && this.redirect(listener)) return
    }

    // phase: request filter (client address, firewall, rate limit)
    this.afterFilter(filterRequest(ctx, this))
  }

  /** Act on the filter's verdict: refuse, park for a cluster lease, or go on to the cache and the upstream. */
  private afterFilter (verdict: FilterVerdict): void {
    const ctx = this.ctx
    if (verdict === 'pending') {
      this.phase = 'rateWait'
      ;(ctx.limiter as { wait: (ip: string, w: LeaseWaiter) => void }).wait(this.clientIp, this)
      return
    }
    if (verdict !== null) { this.failRequest(verdict, this.lastFailure); return }

    // phase: cache lookup
    // an upgrade is never answered from the cache (nor holds a fill claim for the life of a tunnel)
    if (ctx.cache !== null && !this.upgrading) {
      if (this.cacheState === null || this.cacheState.hook !== ctx.cache) this.cacheState = new CacheState(ctx.cache, this)
      if (this.onCacheDecision(this.cacheState.onRequest(this.isHead, this.bodyKind === BODY_NONE))) return
    } else if (this.cacheState !== null) {
      this.cacheState.reset()
      this.cacheState = null
    }
    this.forwardRequest()
  }

  /** Parked for a cluster lease: the primary answered (or gave up); check the limit again. */
  onLease (failed: boolean): void {
    if (this.phase !== 'rateWait') return // the client went away meanwhile
    this.phase = 'head'
    if (failed && this.rate !== null) this.rate.fallback = true
    this.afterFilter(limitRequest(this.ctx, this))
  }

  /** RFC 8555 §8.3: GET /.well-known/acme-challenge/TOKEN answers the key authorization; false for other paths. */
  private answerChallenge (challenges: Map<string, string>): boolean {
    const reply = acmeChallengeReply(this.parser, challenges, !this.keepAlive || !this.bodyDone, this.isHead)
    if (reply === null) return false
    this.status = reply.status
    this.responseStarted = true
    this.closeAfterResponse = !this.keepAlive || !this.bodyDone || this.ctx.draining
    this.writeOut(reply.bytes)
    this.finishRequest()
    return true
  }

  /** httpsRedirect: answer 308 to the https URL; false when the request names no host (answered as usual). */
  private redirect (listener: ListenerRuntime): boolean {
    const close = !this.keepAlive || !this.bodyDone || this.ctx.draining
    const reply = httpsRedirectReply(this.parser, listener.redirectPort as string, close, this.isHead)
    if (reply === null) return false
    this.ctx.state.addListener(listener.index, L_REDIRECTS, 1)
    this.status = 308
    this.responseStarted = true
    this.closeAfterResponse = close
    this.writeOut(reply)
    this.finishRequest()
    return true
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

  /** Where a stale-while-revalidate background request for this request goes (CacheUser): the balancer's pick now. */
  revalidationUpstream (): string | null {
    revalidationPick.reset()
    const index = pickUpstream(this.ctx, revalidationPick, -1)
    return index < 0 ? null : this.ctx.table[index].address
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
    this.requestHead = buildRequestHead(p, this.identity, this.upgrading, coalesce ? initial : null,
      validators + this.requestIdLine + (this.trace !== null ? this.trace.parentLine : ''))
    if (coalesce) { this.initialBody = null; this.headCarriesBody = true }
    this.retriesLeft = ctx.config.retries
    this.phase = 'connecting'
    // hold the body back until an upstream is connected: a failed connect can then go elsewhere
    if (!this.bodyDone) this.socket.pause()
    this.dispatch()
  }

  /** Choose an upstream and get a connection to it (again, after a failure that allows it). */
  protected dispatch (): void {
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

  // ---- ends of a request ----

  /** Answer from the cache (hit, 304, only-if-cached 504). */
  private serveCached (response: CachedResponse): void {
    this.status = response.status
    this.localAnswer = true
    this.responseStarted = true
    this.closeAfterResponse = !this.keepAlive || this.ctx.draining
    this.bytesOut += writeCachedResponse(this.socket, response, this.ctx.config.proxy.via, this.closeAfterResponse, this.http10, this.responseIdLine())
    this.finishRequest()
  }

  /** Phase: log. The response went out completely: next request or close. */
  protected finishRequest (): void {
    if (this.cacheState !== null) this.cacheState.reset()
    this.logRequest()
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
  protected failRequest (code: ErrorCode, detail: string): void {
    // RFC 5861 §4: an upstream failure with a stale-if-error entry at hand is answered from it
    const cache = this.cacheState
    if (cache !== null && !this.responseStarted && cache.serveStaleOnError(code)) {
      this.lastFailure = detail
      this.detachUpstream(true)
      this.serveCached(cache.response)
      return
    }
    const info = describe(code)
    this.status = info.status
    this.flag = info.flag
    this.lastFailure = detail
    this.localAnswer = true
    this.responseStarted = true
    // the connection survives a local answer only when the whole request body is already here
    this.closeAfterResponse = !this.keepAlive || !this.bodyDone || this.ctx.draining
    this.detachUpstream(true)
    const close = this.closeAfterResponse
    const limiter = this.ctx.limiter
    let extra = this.responseIdLine()
    if (code === 'SWY_ERR_RATE_LIMITED' && limiter !== null && this.rate !== null) extra += limiter.headers(this.rate)
    this.writeOut(extra === '' ? errorReply(code, close, this.isHead) : errorReplyWith(code, close, extra, this.isHead))
    this.finishRequest()
  }

  /** A request refused before it goes anywhere (parser errors, limits): count, warn, answer and close. */
  private rejectRequest (code: ErrorCode, detail: string): void {
    if (this.startedAt === 0) this.startedAt = performance.now()
    this.ctx.state.addHeader(H_PROTOCOL_ERRORS, 1)
    logRejected(this, code, detail)
    this.keepAlive = false // framing can no longer be trusted: failRequest closes after the answer
    this.input = null
    this.failRequest(code, detail)
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

  /** Failure after the response started (or a tunnel ended): log and cut. */
  protected logAndClose (code: ErrorCode | null): void {
    if (code !== null) this.flag = describe(code).flag
    this.logRequest()
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
        this.dropIncomplete()
        break
      default:
    }
  }

  /** The request body can never be completed (the client half-closed): drop the exchange, blame no upstream. */
  private dropIncomplete (): void {
    this.flag = 'DC'
    this.status = 499
    this.detachUpstream(true)
    this.logRequest()
    this.phase = 'closed'
    this.input = null
    this.socket.destroy()
  }

  handleClose (): void {
    const ctx = this.ctx
    if (this.upstream !== null) {
      // mid-exchange: the upstream connection cannot be trusted for reuse
      this.detachUpstream(true)
      if (this.phase !== 'tunnel' && this.phase !== 'closed') {
        this.flag = 'DC'
        if (this.status === 0) this.status = 499
        this.logRequest()
      }
    }
    this.releaseActive()
    this.dropOwnUpstream()
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
