/**
 * The upstream side of a client connection: sending the request (head, then
 * the body as the proxy frames it), relaying the response (interim, final,
 * re-chunked or de-chunked, tunnelled after an allowed 101), and what happens
 * when the upstream fails (a pure retry decision, passive health). It is what
 * UpstreamConnection calls; ClientConnection (client.ts) extends it with the
 * request loop and the client socket's lifecycle, and implements the steps it
 * declares abstract (pick another upstream, answer locally, finish, cut).
 */
import { encodeProxyHeader } from '../net/proxy-protocol'
import type * as net from 'node:net'
import type { ProxyContext } from './context'
import type { UpstreamEntry } from '../shared/state'
import { U_ACTIVE_REQUESTS, U_REQUESTS, U_RETRIES, U_RETRIES_ACTIVE, P_RETRIES, P_RETRY_BUDGET_DENIED } from '../shared/layout'
import { type HeadParser, BODY_LENGTH, BODY_NONE } from '../http/head-parser'
import { H_UPGRADE } from '../http/header-names'
import { ChunkedScanner, CHUNKED_ERROR, CRLF, chunkSizeLine } from '../http/chunked'
import { buildResponseHead, responseHeadInto } from '../http/serialize'
import type { ErrorCode } from '../errors'
import { UpstreamConnection, type UpstreamClient, type HeadAction, type UpstreamFailure } from './upstream'
import { recordUpstreamFailure, recordUpstreamSuccess, recordRequestFailure, clientHash } from '../health/passive'
import { logRejected, logUpstreamProblem, logEjection } from './access-log'
import { Exchange } from './exchange'
import type { PoolRuntime } from '../routing/pools'
import { renderCachedResponse, type CacheState } from './cache-path'
import { decideRetry, blamesUpstream, failureReason, statusReason, type RetryAction, type RetryReason } from './retry'
import { RETRY_REASONS } from '../health/pool-status'
import { PICK_NONE } from './pick'
import { isBackOffStatus, parseRetryAfter, holdForRetryAfter } from '../health/retry-after'
import { receivedStatusLine } from '../http/proxy-status'
import { logger } from '../log'
import { upgradeAllowed } from './upgrade'
import { planResponse, ResponsePlan } from './response-head'
import { borrowed, owned, scratch } from '../net/read-arena'
import { directDescriptor, writeDirect, writeSpans } from '../net/direct-write'
import { monotonicNow, wallNow } from './clock'

/** Where the connection is in its current request. */
export type Phase =
  | 'head' //       reading a request head (or waiting for one)
  | 'cacheWait' //  parked until another request (any thread) fills the cache entry
  | 'queued' //     every upstream is at its maxConnections: waiting in the pool's queue; the body waits
  | 'rateWait' //   parked until the primary has asked Redis for this client's lease (cluster)
  | 'connecting' // an upstream is picked, its connection not yet ready; the body waits
  | 'body' //       streaming the request body upstream
  | 'response' //   the request is sent: relaying the response
  | 'tunnel' //     after 101: raw bytes both ways
  | 'closed' //     lingering after the last response, or gone

export type Deadline =
  | 'none'
  | 'header' // a request head has started and must complete (slowloris)
  | 'idle' //   no request, or a client that does not read what we queued for it
  | 'linger' // closing: reading and discarding until the client closes too
  | 'tunnelIdle' // after 101: no byte either way (timeouts.tunnelIdleMs, or the route's)

const NO_BYTES = Buffer.alloc(0)

/** Up to this many body bytes are copied next to a head to save a write (and a syscall). */
export const COALESCE_BYTES = 16 * 1024

export abstract class UpstreamSide extends Exchange implements UpstreamClient {
  readonly ctx: ProxyContext
  readonly socket: net.Socket
  /** The client socket's descriptor for direct writes (src/net/direct-write.ts), -1 for none (TLS, no addon). */
  readonly writeFd: number
  /** Scanner of a chunked request body. */
  readonly chunked: ChunkedScanner
  /** The response-head phase's decision for the current response. */
  readonly plan = new ResponsePlan()
  phase: Phase = 'head'
  deadline = 0
  deadlineKind: Deadline = 'none'
  /** After a 101: how long the tunnel may carry no byte either way. */
  tunnelIdleMs = 0
  /** The client half-closed: answer what it sent, then close (in a tunnel: the FIN goes on to the upstream). */
  clientEnded = false
  /** Bytes received and not yet parsed: input[inputStart..]. */
  input: Buffer | null = null
  inputStart = 0
  upstream: UpstreamConnection | null = null
  /** Upstream slot whose U_ACTIVE_REQUESTS this request holds, -1 for none. */
  activeSlot = -1
  /** Cache state for the current request; null while the cache is off. */
  cacheState: CacheState | null = null
  /**
   * An idle connection to an upstream with `proxyProtocol`: its PROXY header
   * named this client, so it is kept here for this client's next request
   * instead of the shared pool (null when none).
   */
  ownUpstream: UpstreamConnection | null = null
  /** The client's port as the PROXY header to an upstream states it (the PROXY source port behind an L4 balancer). */
  clientPort = 0

  constructor (ctx: ProxyContext, socket: net.Socket, peerIp: string) {
    super(peerIp)
    this.ctx = ctx
    this.socket = socket
    this.writeFd = directDescriptor(socket)
    this.chunked = new ChunkedScanner(ctx.headLimits.maxHeaderBytes)
  }

  /** Pick an upstream not tried yet for this request and connect to it; answers locally when there is none. */
  protected abstract dispatch (): void
  /** Another upstream for a retry, now: its index (its in-flight count taken, see connectPicked), or PICK_NONE / PICK_FULL. */
  protected abstract pickForRetry (): number
  /** Connect to the upstream a pick chose, or answer when there is none (PICK_NONE). */
  protected abstract connectPicked (index: number): void
  /** Answer with a response the proxy makes itself; no response has started. */
  protected abstract failRequest (code: ErrorCode, detail: string): void
  /** The response went out completely: log, then the next request or close. */
  protected abstract finishRequest (): void
  /** Failure after the response started (or a tunnel ended): log and cut. */
  protected abstract logAndClose (code: ErrorCode | null): void
  /** Keep client bytes that belong to the next requests. */
  protected abstract appendInput (chunk: Buffer): void
  /** The upstream ended the tunnel (closed, or broke): log it, and close toward the client after what is queued. */
  abstract onTunnelEnd (): void

  protected setDeadline (kind: Deadline, ms: number): void {
    this.deadlineKind = kind
    this.deadline = wallNow() + ms
  }

  protected clearDeadline (): void {
    this.deadlineKind = 'none'
    this.deadline = 0
  }

  /**
   * Get a connection to `entry`: a pooled one when `pooled` allows and there is one, else a new one.
   * The request's in-flight count on it was taken by the pick phase (pick.ts) and is ours to release.
   */
  protected connectTo (entry: UpstreamEntry, pooled: boolean): void {
    const ctx = this.ctx
    if (this.pendingRetry !== -1) this.countRetry()
    this.entry = entry
    ctx.state.addUpstream(entry.slot, U_REQUESTS, 1)
    this.activeSlot = entry.slot
    if (this.retryInFlight && this.retrySlot === -1) {
      // counted against the pool's retry budget while this attempt is in flight (PoolGate.retryBudgetAllows)
      ctx.state.addHeld(ctx.workerSlot, entry.slot, U_RETRIES_ACTIVE, 1)
      this.retrySlot = entry.slot
    }
    const proxy = entry.proxyProtocol ?? null
    const idle = proxy !== null
      ? this.takeOwnUpstream(entry, pooled)
      : (pooled ? ctx.pool.acquire(entry.slot) as UpstreamConnection | null : null)
    const up = idle ?? new UpstreamConnection(ctx, entry, proxy !== null ? this.proxyHeader(proxy) : null)
    // step: a sampled request's client span for this attempt (its ID goes upstream in traceparent)
    if (this.trace !== null && ctx.tracing !== null) this.trace.startAttempt(ctx.tracing, this, entry, this.requestHead)
    this.upstream = up
    up.assign(this, this.isHead)
    if (idle !== null) this.onUpstreamConnected(idle)
  }

  /** This client's kept connection to `entry`, when it can serve (a PROXY header names one client only). */
  private takeOwnUpstream (entry: UpstreamEntry, reuse: boolean): UpstreamConnection | null {
    const own = this.ownUpstream
    this.ownUpstream = null
    if (own === null) return null
    if (reuse && own.slot === entry.slot && own.reusable) return own
    own.destroy()
    return null
  }

  /** Close the kept PROXY connection (the client connection is closing). */
  protected dropOwnUpstream (): void {
    const own = this.ownUpstream
    this.ownUpstream = null
    if (own !== null) own.destroy()
  }

  /** The PROXY protocol header for a new upstream connection: this client, and the address it connected to. */
  protected proxyHeader (version: 'v1' | 'v2'): Buffer {
    const s = this.socket
    const local = s.localAddress ?? ''
    return encodeProxyHeader(version, this.clientIp, local.startsWith('::ffff:') && local.includes('.') ? local.slice(7) : local, this.clientPort, s.localPort ?? 0)
  }

  protected releaseActive (): void {
    const ctx = this.ctx
    if (this.activeSlot !== -1) {
      ctx.state.addHeld(ctx.workerSlot, this.activeSlot, U_ACTIVE_REQUESTS, -1)
      this.activeSlot = -1
      // a connection slot may have freed up for a request waiting under maxConnections
      const queue = this.pool !== null ? this.pool.gate.queue : null
      if (queue !== null) queue.wake()
    }
    if (this.retrySlot !== -1) {
      ctx.state.addHeld(ctx.workerSlot, this.retrySlot, U_RETRIES_ACTIVE, -1)
      this.retrySlot = -1
    }
  }

  /** Phase: send. The head (with the first body bytes), then the body as it comes. */
  onUpstreamConnected (up: UpstreamConnection): void {
    if (up !== this.upstream || this.phase !== 'connecting') return
    this.sentAt = monotonicNow()
    if (this.cacheState !== null) this.cacheState.requestSentAt = wallNow()
    const s = up.socket
    let body = this.initialBody
    // a body too large to go with the head, still in the read arena: the write may keep it (read-arena.ts)
    if (body !== null && borrowed(body)) this.initialBody = body = Buffer.from(body)
    const kept = this.kept
    if (body !== null || (kept !== null && kept.length > 0)) {
      s.cork()
      s.write(this.requestHead as Buffer)
      if (body !== null) s.write(body)
      // a retry: the rest of the body as it went the first time (kept because it was small, retryBodyMaxBytes)
      if (kept !== null) for (const b of kept) s.write(b)
      s.uncork()
    } else {
      writeDirect(s, up.writeFd, this.requestHead as Buffer)
    }
    this.bodySent = body !== null || this.headCarriesBody || (kept !== null && kept.length > 0)
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
  protected forwardBody (buf: Buffer, start: number): void {
    const up = this.upstream
    if (up === null) return
    let end = buf.length
    if (this.bodyKind === BODY_LENGTH) {
      end = start + Math.min(this.bodyRemaining, end - start)
      this.bodyRemaining -= end - start
      this.bodyDone = this.bodyRemaining === 0
      if (end > start) {
        this.bodySent = true
        // a write may keep its buffer, and so may a replay: never a view of the read arena (read-arena.ts)
        const part = owned(start === 0 && end === buf.length ? buf : buf.subarray(start, end))
        if (this.kept !== null) this.keep(part)
        else this.lostBody = true
        if (!up.socket.write(part)) this.socket.pause()
        up.uploadActivity()
      }
    } else {
      const c = this.chunked
      const e = c.execute(buf, start, end)
      if (e === CHUNKED_ERROR) { this.abortUpload('SWY_ERR_BAD_CHUNK', c.error); return }
      const maxBody = this.maxBodyBytes
      if (maxBody > 0 && c.dataBytes > maxBody) { this.abortUpload('SWY_ERR_BODY_TOO_LARGE', 'chunked body over limit'); return }
      if (e >= 0) { end = e; this.bodyDone = true }
      const n = c.encodedLength(false)
      if (n > 0) {
        this.bodySent = true
        if (this.kept !== null) {
          // kept for a replay: our canonical chunks, copied once
          const out = Buffer.allocUnsafe(n)
          c.encodeInto(buf, out, 0, false)
          this.keep(out)
          if (!up.socket.write(out)) this.socket.pause()
        } else {
          this.lostBody = true
          if (!writeChunks(up.socket, buf, c, false, null, 0)) this.socket.pause()
        }
        up.uploadActivity()
      }
    }
    this.bytesIn += end - start
    if (this.bodyDone) {
      if (end < buf.length) this.appendInput(buf.subarray(end))
      this.phase = 'response'
      up.awaitResponse()
    }
  }

  /** Keep body bytes for a replay while they fit in retryBodyMaxBytes; past it the request can no longer be retried. */
  private keep (part: Buffer): void {
    this.keptBytes += part.length
    if (this.keptBytes > this.ctx.retry.bodyMaxBytes) {
      this.kept = null
      this.lostBody = true
      return
    }
    (this.kept as Buffer[]).push(part)
  }

  /** The request body turned out malformed midway: the upstream has part of it, so drop both. */
  protected abortUpload (code: ErrorCode, detail: string): void {
    this.detachUpstream(true)
    this.keepAlive = false
    if (this.responseStarted) this.logAndClose(code)
    else this.failRequest(code, detail)
  }

  // ---- phase: relay the response (called by UpstreamConnection) ----

  onResponseHead (up: UpstreamConnection, head: HeadParser): HeadAction {
    if (up !== this.upstream) return 'abort'
    const ctx = this.ctx
    const via = ctx.config.proxy.via
    const status = head.status
    const upgradeOk = status === 101 && upgradeAllowed(head.headerOfKind(H_UPGRADE), ctx.config.proxy.allowedUpgrades)
    const plan = planResponse(this.plan, this, status, head.bodyKind, head.hasTransferEncoding, ctx.draining, upgradeOk)
    if (plan.kind === 'interim') {
      this.writeOut(buildResponseHead(head, via, 'none', '', 'drop')) // bounded in upstream.ts
      return 'interim'
    }
    if (plan.kind === 'interimDropped') return 'interim'
    const slot = (this.entry as UpstreamEntry).slot
    // the sweeper's clock (a tick late at most) is enough for passive health (recordRequestFailure)
    recordUpstreamSuccess(ctx.state, slot, (ctx.sweeper.nowMs - ctx.state.epochMs) | 0)
    this.upstreamMs = monotonicNow() - this.sentAt
    ctx.state.recordResponse(slot, status, this.upstreamMs)
    if (plan.kind === 'unexpectedUpgrade') {
      // not an upgrade we asked for, to a protocol we allow: the upstream is not speaking HTTP any more
      this.onUpstreamFailure(up, 'SWY_ERR_UPSTREAM_PROTOCOL', this.upgrading ? 'upgrade to a protocol not asked for' : 'unsolicited 101 response')
      up.destroy()
      return 'abort'
    }
    if (plan.kind === 'final' && this.considerStatus(up, head, status)) return 'abort'
    if (plan.kind === 'tunnel') {
      this.status = status
      this.responseStarted = true
      this.writeOut(buildResponseHead(head, via, 'upgrade', this.setCookie, 'drop'))
      this.phase = 'tunnel'
      const route = this.route
      this.tunnelIdleMs = route !== null && route.tunnelIdleMs > 0 ? route.tunnelIdleMs : ctx.config.timeouts.tunnelIdleMs
      this.setDeadline('tunnelIdle', this.tunnelIdleMs)
      this.releaseActive()
      const held = this.input
      if (held !== null) { up.socket.write(owned(this.inputStart === 0 ? held : held.subarray(this.inputStart))); this.input = null }
      // a client that half-closed before the 101 (its upgrade and FIN in one go): the FIN goes on now
      if (this.clientEnded) up.socket.end()
      this.socket.resume()
      return 'tunnel'
    }
    this.status = status
    this.responseStarted = true
    let extra = this.setCookie
    // the request's ID back to the client, unless the upstream answered with its own line
    const ids = ctx.requestIds
    // the line sent upstream with a new ID is the line the client gets back
    if (this.requestId !== '' && ids !== null && head.header(ids.header) === null) extra += this.requestIdLine !== '' ? this.requestIdLine : ids.responseLine(this.requestId)
    const cache = this.cacheState
    if (cache !== null) {
      const cached = cache.onResponseHead(head)
      if (cached !== null) {
        // revalidated: the stored response goes out instead of the upstream's 304
        this.status = cached.status
        this.closeAfterResponse = !this.keepAlive || ctx.draining || !this.bodyDone
        const out = renderCachedResponse(cached, ctx.config.proxy.via, this.closeAfterResponse, this.http10, this.responseIdLine())
        if (head.bodyKind !== BODY_NONE) {
          // a stale entry instead of an upstream error (RFC 5861 §4): that error's body is not relayed
          this.detachUpstream(true)
          this.writeOut(out)
          this.finishRequest()
          return 'abort'
        }
        this.holdHead(out, out.length)
        return 'final'
      }
      extra += cache.relayFields // X-Cache, Cache-Status
    }
    // RFC 9209 §2.1.2: relayed after retries, say what the last upstream answered
    if (this.retries > 0) extra += receivedStatusLine(status, this.retries, ctx.config.proxy.statusDetails)
    this.relay = plan.relay
    this.closeAfterResponse = plan.close
    const edits = this.route !== null ? this.route.responseEdits : null
    if (edits !== null) extra += edits.render(this)
    // built in the thread's scratch region: it leaves within this read (flushHead at its end, at the latest)
    const remove = edits !== null ? edits.remove : null
    const n = responseHeadInto(scratch, head, via, plan.connection, extra, plan.codings, remove)
    if (n !== -1) {
      this.holdHead(scratch, n)
    } else {
      const out = buildResponseHead(head, via, plan.connection, extra, plan.codings, remove)
      this.holdHead(out, out.length)
    }
    return 'final'
  }

  /** Keep a response head (its first `bytes` bytes) to go out with the first body bytes. */
  private holdHead (head: Buffer, bytes: number): void {
    this.bytesOut += bytes
    this.heldHead = head
    this.heldHeadBytes = bytes
  }

  /** The request-ID field line for a response to the client ('' while request IDs are off). */
  protected responseIdLine (): string {
    const ids = this.ctx.requestIds
    return this.requestId === '' || ids === null ? '' : ids.responseLine(this.requestId)
  }

  protected writeOut (data: Buffer): void {
    this.bytesOut += data.length
    writeDirect(this.socket, this.writeFd, data)
  }

  onResponseBody (chunk: Buffer, start: number, end: number): void {
    if (end <= start) return
    if (this.cacheState !== null) this.cacheState.onResponseBody(chunk, start, end)
    const n = end - start
    this.bytesOut += n
    const head = this.heldHead
    this.heldHead = null
    // one sendmsg (or one corked writev): the head and these body bytes, copied only where node keeps them
    const ok = head !== null
      ? writeSpans(this.socket, this.writeFd, head, 0, this.heldHeadBytes, chunk, start, end)
      : writeSpans(this.socket, this.writeFd, NO_BYTES, 0, 0, chunk, start, end)
    if (!ok && this.upstream !== null) this.upstream.socket.pause()
  }

  onResponseChunks (chunk: Buffer, scanner: ChunkedScanner, done: boolean): void {
    const dechunk = this.relay === 'dechunk'
    const n = scanner.encodedLength(dechunk)
    if (n === 0) return
    const head = this.heldHead
    this.heldHead = null
    this.bytesOut += n
    if (!writeChunks(this.socket, chunk, scanner, dechunk, head, this.heldHeadBytes) && this.upstream !== null && !done) this.upstream.socket.pause()
  }

  /** Forget a held response head that never went out: the response has not started after all. */
  private dropHeldHead (): void {
    this.heldHead = null
    this.bytesOut -= this.heldHeadBytes
    this.responseStarted = false
  }

  /** Write a held response head (a response without body bytes in this read). */
  flushHead (): void {
    const head = this.heldHead
    if (head !== null) {
      this.heldHead = null
      writeSpans(this.socket, this.writeFd, head, 0, this.heldHeadBytes, null, 0, 0)
    }
  }

  onResponseEnd (up: UpstreamConnection, reusable: boolean, trailing: number): void {
    if (up !== this.upstream) return
    this.flushHead()
    if (trailing > 0) {
      // the response went out whole, but the upstream sent more than it framed: its framing cannot be
      // trusted, so neither the connection (closed) nor this response (not stored) is kept
      const dropped = this.cacheState !== null && this.cacheState.dropCapture()
      logUpstreamProblem(this, up.entry, 'SWY_ERR_UPSTREAM_PROTOCOL', `${trailing} byte(s) after a complete response; ${dropped ? 'not stored, ' : ''}connection closed`)
    }
    if (this.cacheState !== null) this.cacheState.onResponseEnd(this.status)
    this.upstream = null
    this.releaseActive()
    // the upstream can take another request only if it got all of this one
    const reuse = reusable && this.bodyDone
    if (reuse && up.socket.isPaused()) up.socket.resume()
    if (reuse && (up.entry.proxyProtocol ?? null) !== null) {
      this.dropOwnUpstream()
      this.ownUpstream = up // only this client may reuse it
    } else if (!(reuse && this.ctx.pool.release(up))) up.destroy()
    this.finishRequest()
  }

  onUpstreamFailure (up: UpstreamConnection, code: UpstreamFailure, detail: string): void {
    if (up !== this.upstream) return
    // a head still held has not gone out (the failure came in the read that completed it, before any body
    // byte was relayed): the client gets an error answer (or a retry) instead of that head and a cut
    if (this.heldHead !== null) this.dropHeldHead()
    this.upstream = null
    const entry = this.entry as UpstreamEntry
    this.lastFailure = entry.address + ': ' + detail
    if (this.trace !== null) this.trace.attemptFailed(code)
    this.connectTimedOut = up.connectTimedOut
    const reason = failureReason(code)
    const action = this.responseStarted ? 'fail' : this.decide(reason, up.staleReuse)
    // a reconnect keeps the request's in-flight count on the same upstream (and so its place under a cap)
    if (action !== 'reconnect') this.releaseActive()
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
    switch (action) {
      case 'reconnect': // the same upstream on a fresh connection: the pooled one had been closed by it
        this.retries++
        this.phase = 'connecting'
        if (!this.bodyDone) this.socket.pause()
        this.connectTo(entry, false)
        return
      case 'next':
      case 'nextFree': {
        // nowhere else to go: the answer is this failure's own (a timeout's 504, not a connect failure's 502)
        const index = this.pickForRetry()
        if (index === PICK_NONE) { this.failRequest(code, this.lastFailure); return }
        this.retryElsewhere(reason as RetryReason, entry, action === 'next', index)
        return
      }
      default:
        if (action === 'budget') this.ctx.state.addPool((this.pool as PoolRuntime).slot, P_RETRY_BUDGET_DENIED, 1)
        this.failRequest(code, detail)
    }
  }

  /** The retry retryElsewhere decided is going ahead: an attempt is starting. */
  private countRetry (): void {
    const ctx = this.ctx
    this.retries++
    ctx.state.addPool((this.pool as PoolRuntime).slot, P_RETRIES + this.pendingRetry, 1)
    if (this.pendingRetryFrom !== -1) ctx.state.addUpstream(this.pendingRetryFrom, U_RETRIES, 1)
    this.pendingRetry = -1
    this.pendingRetryFrom = -1
  }

  /** The retry decision for this request as it stands (what was sent, kept, allowed, and the pool's budget). */
  private decide (reason: RetryReason | null, staleReuse: boolean): RetryAction {
    const policy = this.ctx.retry
    // replayable: nothing of the body went yet, or all of it is at hand (initialBody, requestHead and `kept`)
    const replayable = this.bodyDone ? !this.lostBody : !this.bodySent
    // only a retry that spends `retries` spends the budget: the free ones (connect failover, stale reconnect) do not
    const spends = reason !== null && reason !== 'connect-failure' && !(reason === 'reset' && staleReuse)
    const budgetLeft = !spends || this.retriesLeft <= 0 || (this.pool as PoolRuntime).gate.retryBudgetAllows(policy.budgetPercent)
    return decideRetry(policy, reason, { staleReuse, replayable, safe: this.replaySafe, retriesLeft: this.retriesLeft, budgetLeft })
  }

  /**
   * Send the request to another upstream (`spend`: one of `retries`, held against the budget while in flight).
   * `picked`: the upstream already chosen (considerStatus), else dispatch picks. Counted (the access log's
   * `retries`, the pool's and the upstream's counters) only when another upstream is picked: with none left
   * the request fails as it is, with nothing tried again.
   */
  private retryElsewhere (reason: RetryReason, from: UpstreamEntry, spend: boolean, picked = PICK_NONE): void {
    this.pendingRetry = RETRY_REASONS.indexOf(reason)
    this.pendingRetryFrom = spend ? from.slot : -1
    if (spend) {
      this.retriesLeft--
      this.retryInFlight = true
    }
    this.phase = 'connecting'
    if (!this.bodyDone) this.socket.pause() // the body waits for the new connection, as on the first try
    if (picked >= 0) this.connectPicked(picked)
    else this.dispatch()
  }

  /**
   * A final response head arrived: first Retry-After as a health signal, then
   * perhaps another upstream instead of relaying it (retryOn statuses). true
   * when the response is dropped and the request goes elsewhere.
   */
  private considerStatus (up: UpstreamConnection, head: HeadParser, status: number): boolean {
    const ctx = this.ctx
    const entry = this.entry as UpstreamEntry
    const passive = ctx.config.healthCheck.passive
    if (isBackOffStatus(status) && passive.honorRetryAfter) {
      const value = head.header('retry-after')
      if (value !== null) {
        const ms = parseRetryAfter(value, wallNow())
        const holdMs = Math.min(ms, passive.maxRetryAfterMs)
        if (ms > 0 && holdForRetryAfter(ctx.state, entry.slot, holdMs, ctx.state.now())) {
          logger.warn({ upstream: entry.address, id: entry.id, status, retryAfter: value, holdMs }, 'upstream out of rotation for its Retry-After')
        }
      }
    }
    if (this.upgrading) return false
    const reason = statusReason(ctx.retry, status)
    if (reason === null) return false
    const action = this.decide(reason, false)
    if (action === 'budget') ctx.state.addPool((this.pool as PoolRuntime).slot, P_RETRY_BUDGET_DENIED, 1)
    if (action !== 'next') return false
    // somewhere else to go now, or this response is the answer (dropped for nothing, a 503 would become a 502)
    const index = this.pickForRetry()
    if (index < 0) return false
    // this response is dropped: its connection cannot carry another request before its body is read, so it goes
    this.upstream = null
    this.releaseActive()
    up.destroy()
    this.retryElsewhere(reason, entry, true, index)
    return true
  }

  private noteFailure (entry: UpstreamEntry, code: UpstreamFailure): void {
    const ctx = this.ctx
    // the pool's passive settings (the request keeps the pool it started with across a reload)
    const passive = this.pool !== null ? this.pool.config.healthCheck.passive : ctx.config.healthCheck.passive
    const now = ctx.state.now()
    // a refused connection says nothing of the request; anything after it was sent might (retry.ts)
    const ejected = code === 'SWY_ERR_UPSTREAM_CONNECT'
      ? recordUpstreamFailure(ctx.state, entry.slot, passive, now)
      : recordRequestFailure(ctx.state, entry.slot, passive, now, this.sentAt === 0 ? now : (now - (monotonicNow() - this.sentAt)) | 0, clientHash(this.clientIp))
    if (ejected) logEjection(entry, `${passive.maxFailures} consecutive failure(s): ${this.lastFailure}`)
  }

  onTunnelData (chunk: Buffer): void {
    this.bytesOut += chunk.length
    this.setDeadline('tunnelIdle', this.tunnelIdleMs)
    if (!this.socket.write(owned(chunk)) && this.upstream !== null) this.upstream.socket.pause()
  }

  protected detachUpstream (destroy: boolean): void {
    const up = this.upstream
    this.upstream = null
    this.releaseActive()
    if (up !== null && destroy) up.destroy()
  }
}

/**
 * The chunked bytes `scanner` just scanned in `src`, re-framed canonically (or
 * de-chunked), after `head` when one is held: copied into one buffer (one
 * write) when the data is small, else the data goes as views of `src` between
 * our own chunk lines (no copy; copies of a borrowed read arena, read-arena.ts),
 * corked into one writev. false under backpressure.
 */
function writeChunks (socket: net.Socket, src: Buffer, scanner: ChunkedScanner, dechunk: boolean, head: Buffer | null, headBytes: number): boolean {
  if (head === null) headBytes = 0
  if (scanner.spanBytes <= COALESCE_BYTES) {
    const out = Buffer.allocUnsafe(headBytes + scanner.encodedLength(dechunk))
    if (head !== null) head.copy(out, 0, 0, headBytes)
    scanner.encodeInto(src, out, headBytes, dechunk)
    return socket.write(out)
  }
  socket.cork()
  if (head !== null) socket.write(owned(head.subarray(0, headBytes)))
  if (!dechunk) socket.write(chunkSizeLine(scanner.spanBytes))
  const spans = scanner.spans
  for (let i = 0; i < scanner.spanCount; i++) socket.write(owned(src.subarray(spans[2 * i], spans[2 * i + 1])))
  if (!dechunk) {
    socket.write(CRLF)
    if (scanner.endedThisCall) socket.write(scanner.lastChunk() as Buffer)
  }
  socket.uncork()
  return !socket.writableNeedDrain
}
