/**
 * The active prober (HAProxy `option httpchk`, Envoy's HTTP health checker).
 * Runs on the primary only: one loop for all upstreams, so N workers do not
 * multiply the probe traffic.
 *
 * Every `intervalMs` each upstream not already being probed gets
 *
 *   GET <path> HTTP/1.1
 *   Host: <upstream address>
 *   Connection: close
 *   User-Agent: switchyard-health-check
 *
 * on a fresh connection with its own `timeoutMs`. Probes are started in one
 * synchronous pass and never awaited one after another, so a hung upstream
 * only ever delays its own result. Only the status line is read, then the
 * socket is destroyed: the body says nothing the status does not.
 *
 * This is the control plane, so it may allocate; it still writes results
 * straight into shared memory (see shared/layout):
 *   U_LAST_CHECK_STATUS, U_LAST_CHECK_LATENCY_US, U_LAST_CHECK_AT  every probe
 *   U_HEALTHY, U_HEALTH_TRANSITIONS, U_EJECTED_AT                    on a transition
 *   U_CONSECUTIVE_FAILURES                                           reset on revival
 */
import { openUpstreamSocket, connectEvent } from '../tls/upstream'
import { encodeProxyHeader } from '../net/proxy-protocol'
import * as net from 'node:net'
import { performance } from 'node:perf_hooks'
import type { ActiveHealthConfig } from '../config/types'
import {
  CHECK_BAD_RESPONSE, CHECK_REFUSED, CHECK_RESET, CHECK_TIMEOUT,
  U_CONSECUTIVE_FAILURES, U_EJECTED_AT, U_HEALTH_TRANSITIONS, U_HEALTHY,
  U_LAST_CHECK_AT, U_LAST_CHECK_LATENCY_US, U_LAST_CHECK_STATUS,
} from '../shared/layout'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { logger } from '../log'
import { compileExpectStatus, isExpectedStatus, type ExpectedStatusTable } from './expect'
import type { HealthLogger } from './passive'
import { describeCheckStatus } from './reason'
import { STATUS_NEED_MORE, STATUS_INVALID, readFinalStatus } from './status-line'

/** A head this big without a final status line is not an HTTP server worth trusting. */
const MAX_RESPONSE_HEAD_BYTES = 16 * 1024

const kProbe = Symbol('switchyard.healthProbe')

interface ProbeSocket extends net.Socket {
  [kProbe]: Probe
}

/** Per-upstream prober state; lives as long as the upstream stays in the table. */
class Probe {
  entry: UpstreamEntry
  readonly checker: ActiveHealthChecker
  /** Request bytes, built when the config or table changes, not per probe. */
  request: Buffer
  socket: ProbeSocket | null = null
  timer: NodeJS.Timeout | null = null
  startedAt = 0
  /** The timeout this probe was started with (the config may change under it). */
  timeoutMs = 0
  connected = false
  received: Buffer | null = null
  /** Consecutive results of one kind; the other kind resets it. */
  successes = 0
  failures = 0
  /** U_HEALTHY as this prober last left it, to notice passive ejections in between. */
  lastKnownHealthy = true
  /** Set when the upstream left the table or the checker stopped: results are dropped. */
  cancelled = false

  constructor (entry: UpstreamEntry, checker: ActiveHealthChecker, path: string) {
    this.entry = entry
    this.checker = checker
    this.request = buildRequest(path, entry.address, checker.probeName)
  }
}

function buildRequest (path: string, address: string, probeName: string | null): Buffer {
  // RFC 9112 §3.2: Host is mandatory in HTTP/1.1. RFC 9112 §9.6: Connection:
  // close, since we read one status line and hang up anyway.
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${address}\r\nConnection: close\r\nUser-Agent: switchyard-health-check${probeName === null ? '' : ` (${probeName})`}\r\nAccept: */*\r\n\r\n`, 'latin1')
}

export class ActiveHealthChecker {
  private config: ActiveHealthConfig
  private expected: ExpectedStatusTable
  private readonly state: SharedState
  private readonly log: HealthLogger
  /** Keyed by shared-state slot: stable across reloads for the same address. */
  private probes = new Map<number, Probe>()
  private interval: NodeJS.Timeout | null = null
  /** Sockets destroyed by stop() or setTable() whose 'close' has not fired yet. */
  private readonly closing = new Set<Promise<void>>()
  /** Cluster shared health (src/cluster/shared-health.ts): which upstreams this instance probes; null = all. */
  shouldProbe: ((entry: UpstreamEntry) => boolean) | null = null
  /** Cluster shared health: every result, to publish. */
  onResult: ((entry: UpstreamEntry, status: number, healthy: boolean) => void) | null = null
  /** Cluster: this instance's id, added to the probe's User-Agent so an upstream can tell the probers apart. */
  probeName: string | null = null

  setProbeName (name: string): void {
    this.probeName = name
    for (const probe of this.probes.values()) probe.request = buildRequest(this.config.path, probe.entry.address, name)
  }

  constructor (config: ActiveHealthConfig, state: SharedState, table: readonly UpstreamEntry[], log: HealthLogger = logger) {
    this.config = config
    this.expected = compileExpectStatus(config.expectStatus)
    this.state = state
    this.log = log
    this.round = this.round.bind(this)
    this.setTable(table)
  }

  /** Starts the loop; the first round goes out now, not one interval late. */
  start (): void {
    if (this.interval !== null) return
    // Probes cancelled by an earlier stop() report again.
    for (const probe of this.probes.values()) probe.cancelled = false
    this.interval = setInterval(this.round, this.config.intervalMs)
    this.interval.unref()
    this.round()
  }

  /** Cancels the loop and every probe in flight; resolves when their sockets have closed. */
  async stop (): Promise<void> {
    if (this.interval !== null) clearInterval(this.interval)
    this.interval = null
    for (const probe of this.probes.values()) this.cancel(probe)
    await Promise.all(this.closing)
  }

  /** Hot reload: upstreams that stay keep their streaks; removed ones stop being probed. */
  setTable (table: readonly UpstreamEntry[]): void {
    const next = new Map<number, Probe>()
    for (const entry of table) {
      const current = this.probes.get(entry.slot)
      if (current !== undefined && current.entry.address === entry.address) {
        // Same upstream, maybe a new entry object (weight or index changed):
        // keep its streaks and any probe in flight, which targets the same address.
        current.entry = entry
        next.set(entry.slot, current)
      } else {
        next.set(entry.slot, new Probe(entry, this, this.config.path))
      }
    }
    for (const [slot, probe] of this.probes) {
      if (next.get(slot) !== probe) this.cancel(probe)
    }
    this.probes = next
  }

  /** Hot reload of healthCheck.active. Streaks are kept; a new interval restarts the loop. */
  setConfig (config: ActiveHealthConfig): void {
    const expected = compileExpectStatus(config.expectStatus)
    const previous = this.config
    this.config = config
    this.expected = expected
    if (config.path !== previous.path) {
      for (const probe of this.probes.values()) probe.request = buildRequest(config.path, probe.entry.address, this.probeName)
    }
    if (config.intervalMs !== previous.intervalMs && this.interval !== null) {
      clearInterval(this.interval)
      this.interval = setInterval(this.round, config.intervalMs)
      this.interval.unref()
    }
  }

  /** One pass: start a probe for every upstream that is not still waiting on the last one. */
  private round (): void {
    const filter = this.shouldProbe
    for (const probe of this.probes.values()) {
      if (probe.socket === null && (filter === null || filter(probe.entry))) this.launch(probe)
    }
  }

  private launch (probe: Probe): void {
    // a PROXY upstream gets a LOCAL header (v2) / UNKNOWN (v1): the check speaks for no client
    const version = probe.entry.proxyProtocol ?? null
    const prefix = version !== null ? encodeProxyHeader(version, '', '', 0, 0) : null
    const socket = openUpstreamSocket(probe.entry, prefix) as ProbeSocket
    socket[kProbe] = probe
    probe.socket = socket
    probe.connected = false
    probe.received = null
    probe.startedAt = performance.now()
    probe.timeoutMs = this.config.timeoutMs
    probe.timer = setTimeout(onProbeTimeout, probe.timeoutMs, probe)
    probe.timer.unref()
    socket.on(connectEvent(probe.entry), onProbeConnect)
    socket.on('data', onProbeData)
    socket.on('end', onProbeEnd)
    socket.on('error', onProbeError)
  }

  /** @internal Called by the socket handlers with the probe's outcome. */
  finish (probe: Probe, status: number, reason: string): void {
    const latencyUs = Math.round((performance.now() - probe.startedAt) * 1000)
    this.release(probe)
    if (probe.cancelled) return
    const state = this.state
    const slot = probe.entry.slot
    state.storeUpstream(slot, U_LAST_CHECK_STATUS, status)
    state.storeUpstream(slot, U_LAST_CHECK_LATENCY_US, latencyUs)
    state.storeUpstream(slot, U_LAST_CHECK_AT, state.now())

    const healthyNow = state.upstream(slot, U_HEALTHY) === 1
    if (!healthyNow && probe.lastKnownHealthy) {
      // Ejected passively since our last result: successes seen before the
      // ejection do not count towards bringing it back.
      probe.successes = 0
    }
    probe.lastKnownHealthy = healthyNow

    if (status > 0 && isExpectedStatus(this.expected, status)) {
      probe.failures = 0
      probe.successes++
      if (!healthyNow && probe.successes >= this.config.healthyThreshold) this.markHealthy(probe, reason)
    } else {
      probe.successes = 0
      probe.failures++
      if (healthyNow && probe.failures >= this.config.unhealthyThreshold) this.markUnhealthy(probe, reason)
    }
    if (this.onResult !== null) this.onResult(probe.entry, status, state.upstream(slot, U_HEALTHY) === 1)
  }

  private markHealthy (probe: Probe, reason: string): void {
    const state = this.state
    const slot = probe.entry.slot
    // Passive ejection counts consecutive failures too; a revived upstream
    // starts with a clean streak (before the flip, so no thread sees the old one).
    state.storeUpstream(slot, U_CONSECUTIVE_FAILURES, 0)
    if (state.casUpstream(slot, U_HEALTHY, 0, 1) !== 0) return
    state.addUpstream(slot, U_HEALTH_TRANSITIONS, 1)
    probe.lastKnownHealthy = true
    this.log.info({ upstream: probe.entry.address, id: probe.entry.id, reason, consecutiveSuccesses: probe.successes }, 'upstream healthy: active check passed')
  }

  private markUnhealthy (probe: Probe, reason: string): void {
    const state = this.state
    const slot = probe.entry.slot
    // Stored like a passive ejection so that, if active checks are switched
    // off by a reload, the passive reviver still brings it back after cooldown.
    state.storeUpstream(slot, U_EJECTED_AT, state.now())
    if (state.casUpstream(slot, U_HEALTHY, 1, 0) !== 1) return
    state.addUpstream(slot, U_HEALTH_TRANSITIONS, 1)
    probe.lastKnownHealthy = false
    this.log.warn({ upstream: probe.entry.address, id: probe.entry.id, reason, consecutiveFailures: probe.failures }, 'upstream unhealthy: active check failed')
  }

  private cancel (probe: Probe): void {
    probe.cancelled = true
    this.release(probe)
  }

  /** Clear the timer and destroy the socket; remember the close so stop() can await it. */
  private release (probe: Probe): void {
    if (probe.timer !== null) clearTimeout(probe.timer)
    probe.timer = null
    const socket = probe.socket
    probe.socket = null
    probe.received = null
    if (socket === null) return
    if (!socket.closed) {
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      this.closing.add(closed)
      void closed.then(() => this.closing.delete(closed))
    }
    socket.destroy()
  }
}

// ---- socket handlers: module-level, the probe hangs on the socket -----------
// A handler first checks that its socket is still the probe's current one, so
// a late event from a released socket can never settle a newer probe.

function onProbeConnect (this: ProbeSocket): void {
  const probe = this[kProbe]
  if (probe.socket !== this) return
  probe.connected = true
  this.write(probe.request)
}

function onProbeData (this: ProbeSocket, chunk: Buffer): void {
  const probe = this[kProbe]
  if (probe.socket !== this) return
  const received = probe.received === null ? chunk : Buffer.concat([probe.received, chunk])
  const status = readFinalStatus(received)
  if (status === STATUS_NEED_MORE) {
    if (received.length > MAX_RESPONSE_HEAD_BYTES) probe.checker.finish(probe, CHECK_BAD_RESPONSE, `no status line in the first ${MAX_RESPONSE_HEAD_BYTES} bytes`)
    else probe.received = received
    return
  }
  if (status === STATUS_INVALID) {
    probe.checker.finish(probe, CHECK_BAD_RESPONSE, `bad response: ${JSON.stringify(received.subarray(0, 40).toString('latin1'))}`)
    return
  }
  probe.checker.finish(probe, status, describeCheckStatus(status))
}

function onProbeEnd (this: ProbeSocket): void {
  const probe = this[kProbe]
  if (probe.socket !== this) return
  probe.checker.finish(probe, CHECK_RESET, 'connection closed before a status line')
}

function onProbeError (this: ProbeSocket, err: NodeJS.ErrnoException): void {
  const probe = this[kProbe]
  if (probe.socket !== this) return
  if (!probe.connected) {
    // Every failure to connect (refused, unreachable, DNS) is CHECK_REFUSED:
    // the upstream cannot take connections. The reason keeps the errno.
    const reason = err.code === 'ECONNREFUSED' ? 'connection refused' : `connect failed: ${err.code ?? err.message}`
    probe.checker.finish(probe, CHECK_REFUSED, reason)
  } else {
    probe.checker.finish(probe, CHECK_RESET, err.code === 'ECONNRESET' ? 'connection reset' : `connection error: ${err.code ?? err.message}`)
  }
}

function onProbeTimeout (probe: Probe): void {
  if (probe.socket === null) return
  probe.checker.finish(probe, CHECK_TIMEOUT, describeCheckStatus(CHECK_TIMEOUT, probe.timeoutMs))
}
