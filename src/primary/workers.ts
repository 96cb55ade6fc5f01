/**
 * Worker mode: piscina owns N proxy worker threads. Every accepted connection
 * becomes one long-lived task (it resolves when the connection closes), given
 * to the worker with the fewest open connections. The primary duplicates the
 * accepted socket's descriptor, destroys its own handle, and sends the number.
 */
import { join } from 'node:path'
import type * as net from 'node:net'
import { BroadcastChannel } from 'node:worker_threads'
import { randomUUID } from 'node:crypto'
import { Piscina } from 'piscina'
import type { Config } from '../config/types'
import type { SharedState, UpstreamEntry } from '../shared/state'
import { H_WORKER_RESTARTS, MAX_WORKER_SLOTS, W_THREAD_ID } from '../shared/layout'
import { loadHandoff } from './handoff'
import { ADOPT_NONE, ADOPT_TAKING } from './adoption'
import { SharedCacheStore, type SharedCacheInit } from '../cache/store'
import { ownerOfWorkerSlot } from '../cache/fill-claims'
import { logger, openLogRings, closeLogRings } from '../log'
import type { ErrorCode } from '../errors'
import type { TlsMaterial } from '../tls/terminator'
import { peerOf, type AcceptedHandle } from '../net/raw-accept'
import { releaseClientLanes } from '../net/client-table'

export interface WorkerInit {
  config: Config
  state: ReturnType<SharedState['toInit']>
  table: readonly UpstreamEntry[]
  stickySecret: string | null
  cache: SharedCacheInit | null
  channel: string
  /** BroadcastChannel name of the cluster node's leases (config.cluster), null when off. */
  clusterChannel: string | null
  /** Certificates and ticket keys as of now (updated in place: a replacement worker starts with the latest). */
  tls: TlsMaterial | null
  /** Bound port of the first TLS listener (httpsRedirect), 0 when none. */
  tlsPort: number
  /** ACME HTTP-01 challenges in progress (token, key authorization). */
  challenges: ReadonlyArray<readonly [string, string]>
  /** The last state update (config, tls, acme) this snapshot includes; see WorkerPool.publish. */
  update: number
  /** stdout lines: one ring per worker slot, written out by the primary (src/log-ring.ts). */
  logRings: SharedArrayBuffer[]
}

export interface ConnectionTask {
  fd: number
  peerIp: string
  peerPort: number
  /** Which listener accepted it (index into the listeners of `listen`). */
  listener: number
  /**
   * Ownership handshake, written by the worker: ADOPT_TAKING just before it
   * wraps the descriptor, ADOPT_WRAPPED once a socket owns it. If the task
   * fails (the worker died), ADOPT_NONE means the descriptor is still ours,
   * untouched; ADOPT_WRAPPED means the worker's teardown closed it (the
   * number may already be reused: never touch it); ADOPT_TAKING is decided by
   * asking the kernel whether the number still names the same peer.
   */
  adopted: Int32Array
}

/*
 * Worker heaps (#18). V8 sizes a thread's young generation (two semi-spaces, where new objects live
 * until they survive two scavenges) by its own heuristics: it doubles when enough of what it holds
 * survives scavenges, which under sustained load happens sooner or later, up to 16 MB per semi-space
 * on 64-bit, and shrinks only when allocation slows down. In a 15-minute
 * soak each worker's young generation went from 8 to 16 and then 32 MB committed (27 MB resident)
 * minutes into the run: the late rise of resident memory, not a leak (the heap snapshots at minutes
 * 3 and 12 hold the same objects, and the old generation stayed at 8-10 MB).
 * config.workerMaxYoungGenerationSizeMb (resourceLimits.maxYoungGenerationSizeMb) caps it: V8 divides
 * it by 3 (two semi-spaces and the new large-object space) and rounds the semi-space up to a power of
 * two, so the default 12 gives 4 MB semi-spaces, at most 8 MB committed per worker, which is what a
 * worker reaches anyway by loading its modules. The price is more scavenges and a little more
 * promotion (the old generation grows faster between mark-compacts); interleaved runs measured no
 * more CPU per request (README, Performance).
 */

/** How often a descriptor no worker adopted is offered again before it is closed. */
const MAX_HANDOFF_ATTEMPTS = 3

/**
 * Starting the workers piscina did not replace: at once the first time, then, while none
 * of those started has become ready, after 100 ms, 200 ms, ... up to 5 s, so a worker that
 * cannot start (a bug at module scope) is retried without a busy loop of thread creation.
 */
const RESPAWN_BACKOFF_MS = 100
const RESPAWN_BACKOFF_MAX_MS = 5000

/**
 * The task the balancer refuses: piscina then starts a thread, as it does for any task it
 * cannot place while it has fewer than maxThreads (minThreads === maxThreads here, so only
 * after a death). Marked through piscina's queue-options symbol, the one task field the
 * balancer sees; it is withdrawn (aborted) before any worker could be given it.
 */
const START_A_WORKER = 'switchyard:start-a-worker'
const kQueueOptions = Piscina.queueOptionsSymbol
const startWorkerTask = { [kQueueOptions]: START_A_WORKER }

/**
 * A change of what every worker serves with. `update` numbers them (one sequence for all
 * three kinds): a worker applies one of a kind only if it is newer than what it has.
 */
export type StateUpdate =
  | { type: 'config', config: Config, table: readonly UpstreamEntry[], update: number }
  | { type: 'tls', material: TlsMaterial, update: number }
  | { type: 'acme', challenges: ReadonlyArray<readonly [string, string]>, generation: number, update: number }

/** A state update before publish numbers it (Omit distributed over the union). */
type Unnumbered<T> = T extends unknown ? Omit<T, 'update'> : never

export type ControlMessage =
  | StateUpdate
  | { type: 'drain' }
  /** A worker listens on the channel now; it started from the snapshot of update `update` (workers -> primary). */
  | { type: 'subscribed', threadId: number, update: number }
  /** For worker `threadId` only: the latest update of each kind it missed while it started. */
  | { type: 'catchUp', threadId: number, missed: StateUpdate[] }
  /** A worker applied challenge table `generation` (workers -> primary). */
  | { type: 'acme-ack', generation: number }
  | { type: 'reopenLogs' }
  /** Write every buffered log line, then answer logsFlushed (before the pool is destroyed). */
  | { type: 'flushLogs', timeoutMs: number }
  /** A worker's answer to flushLogs (workers ignore it). */
  | { type: 'logsFlushed', threadId: number }

export class WorkerPool {
  readonly pool: Piscina
  private readonly channel: BroadcastChannel
  private readonly handoff = loadHandoff()
  private readonly inFlight = new Set<Promise<unknown>>()
  private readonly watched = new WeakSet<object>()
  private readonly state: SharedState
  /** The primary's handle on the shared cache, to free what a dead worker held there (null when off). */
  private readonly cache: SharedCacheStore | null
  private readonly threads: number
  private readonly init: WorkerInit
  private stopping = false
  /** Replacements asked for since a worker last became ready (the backoff's exponent), and the pending retry. */
  private respawnsSinceReady = 0
  private respawnTimer: NodeJS.Timeout | null = null
  /** ACME challenge table updates: the latest generation sent, the workers that applied it, who waits. */
  private challengeGeneration = 0
  private challengeAcks = 0
  private challengesApplied: (() => void) | null = null
  /** State updates published so far, and the latest of each kind (what a starting worker may have missed). */
  private update = 0
  private readonly latest = new Map<StateUpdate['type'], StateUpdate>()

  constructor (threads: number, config: Config, state: SharedState, table: readonly UpstreamEntry[], stickySecret: string | null, cache: SharedCacheInit | null, tls: TlsMaterial | null = null, tlsPort = 0, clusterChannel: string | null = null) {
    this.state = state
    this.cache = cache !== null ? new SharedCacheStore(cache, state) : null
    this.threads = threads
    const channelName = `switchyard:${randomUUID()}`
    this.channel = new BroadcastChannel(channelName)
    this.channel.onmessage = (event: unknown) => {
      const message = (event as { data: ControlMessage }).data
      if (message.type === 'subscribed') this.catchUp(message.threadId, message.update)
      else if (message.type === 'acme-ack' && message.generation === this.challengeGeneration) {
        this.challengeAcks++
        if (this.challengeAcks >= this.threads && this.challengesApplied !== null) { this.challengesApplied(); this.challengesApplied = null }
      }
    }
    this.channel.unref()
    const init: WorkerInit = { config, state: state.toInit(), table, stickySecret, cache, channel: channelName, tls, tlsPort, challenges: [], clusterChannel, update: 0, logRings: openLogRings(MAX_WORKER_SLOTS) }
    this.init = init
    this.pool = new Piscina({
      filename: join(__dirname, '..', '..', 'workers', 'proxy.worker.js'),
      minThreads: threads,
      maxThreads: threads,
      // each connection is one task that lives as long as the connection
      concurrentTasksPerWorker: 1_000_000,
      idleTimeout: 2 ** 31 - 1,
      // workers own sockets: they must never block in Atomics.wait
      atomics: 'disabled',
      workerData: init,
      resourceLimits: { maxYoungGenerationSizeMb: config.workerMaxYoungGenerationSizeMb },
      loadBalancer: fewestConnections(),
    })
    // A worker's threadId reads -1 once it has exited, so remember each one while it lives
    // and free its shared-state slot, and whatever it held, from its own 'exit' event.
    // 'workerCreate' fires once a worker is ready (piscina has its ready message)
    this.watchThreads() // the first threads exist now (a thread that dies starting is watched too)
    this.pool.on('workerCreate', () => {
      this.respawnsSinceReady = 0
      this.watchThreads()
    })
    // (the crash is logged by the thread's own 'exit' handler, watchThreads: piscina's worker reads threadId -1 here)
    this.pool.on('workerDestroy', () => {
      this.watchThreads()
      if (!this.stopping) {
        state.addHeader(H_WORKER_RESTARTS, 1)
        // piscina removes the worker and (maybe) adds its replacement in the same call: look after it
        queueMicrotask(() => { this.replenish() })
      }
    })
    this.pool.on('error', (err: Error) => {
      logger.error({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'worker pool error')
    })
  }

  private watchThreads (): void {
    for (const worker of this.pool.threads) {
      if (this.watched.has(worker) || worker.threadId < 0) continue
      this.watched.add(worker)
      const threadId = worker.threadId
      worker.once('exit', (exitCode: number) => {
        if (!this.stopping) logger.error({ code: 'SWY_ERR_WORKER_CRASHED' satisfies ErrorCode, threadId, exitCode }, 'worker thread exited; its connections were closed and a new worker replaces it')
        this.releaseDeadWorker(threadId)
      })
    }
  }

  /**
   * Keep `threads` workers. piscina replaces a worker that exits only if it had
   * heard from it that it was ready: a worker that dies while starting (its
   * module ran and claimed a slot, its ready message not yet read on this
   * thread) sets piscina's workerFailsDuringBootstrap, for good, and from then on
   * no exit at all is replaced: the pool shrinks by one thread per crash,
   * silently. So after every exit, count the threads and ask for the missing ones
   * (with a backoff while replacements keep dying before they are ready).
   */
  private replenish (): void {
    if (this.stopping || this.respawnTimer !== null) return
    if (this.pool.threads.length >= this.threads) return
    const attempt = this.respawnsSinceReady
    const delayMs = attempt === 0 ? 0 : Math.min(RESPAWN_BACKOFF_MAX_MS, RESPAWN_BACKOFF_MS * 2 ** (attempt - 1))
    if (delayMs === 0) { this.startMissingWorkers(); return }
    this.respawnTimer = setTimeout(() => {
      this.respawnTimer = null
      this.startMissingWorkers()
    }, delayMs)
    this.respawnTimer.unref()
  }

  private startMissingWorkers (): void {
    const missing = this.threads - this.pool.threads.length
    if (this.stopping || missing <= 0) return
    this.respawnsSinceReady++
    logger.warn({ threads: this.threads, running: this.threads - missing }, 'starting worker threads that were not replaced')
    for (let i = 0; i < missing; i++) {
      const withdraw = new AbortController()
      // refused by the balancer: piscina starts a thread for it; withdrawn at once
      this.pool.run(startWorkerTask, { signal: withdraw.signal }).catch(() => {})
      withdraw.abort()
    }
    this.watchThreads()
  }

  /**
   * A worker has exited ('exit' fires once the thread has stopped: none of its
   * code runs any more). Whatever it held in shared memory would stay held for
   * ever or until a timeout, so take it back: its share of the upstreams'
   * in-flight gauges, its client connections' counts per client address (its
   * W_ACCEPTED_OPEN goes with the slot), its cache fill claims (their waiters would wait up to
   * responseMs + 1 s) and the cache's write lock if it died inside it. The
   * slot is freed last: freed first, it could be claimed by a replacement
   * whose fresh claims and counts would then be taken for the dead worker's.
   */
  private releaseDeadWorker (threadId: number): void {
    const slot = this.state.workerSlotOf(threadId)
    if (slot === -1) return // it died before claiming a slot: it held nothing
    const gauges = this.state.releaseWorkerHoldings(slot)
    releaseClientLanes(this.state, slot)
    const owner = ownerOfWorkerSlot(slot)
    const fillClaims = this.cache === null ? 0 : this.cache.releaseFillsOf(owner)
    const cacheLock = this.cache === null ? false : this.cache.recoverLockOf(owner)
    this.state.releaseWorkerSlot(threadId)
    const any = gauges.activeRequests !== 0 || gauges.openSockets !== 0 || fillClaims !== 0 || cacheLock
    if (!any && this.stopping) return
    // the cache lock is only recovered with a reset of the whole cache: say so
    logger[any ? 'warn' : 'info']({ threadId, slot, activeRequests: gauges.activeRequests, openSockets: gauges.openSockets, fillClaims, cacheLockRecovered: cacheLock },
      cacheLock ? 'released what the exited worker held in shared memory; it died holding the cache write lock, so the cache was reset' : 'released what the exited worker held in shared memory')
  }

  /** A reloaded config and its upstream table: running workers get a message, replacements start with them. */
  setConfig (config: Config, table: readonly UpstreamEntry[]): void {
    this.init.config = config
    this.init.table = table
    this.publish({ type: 'config', config, table })
  }

  /** New certificates or ticket keys: running workers get a message, replacements start with them. */
  setTls (material: TlsMaterial): void {
    this.init.tls = material
    this.publish({ type: 'tls', material })
  }

  /**
   * Number a state update and send it. `init` is piscina's workerData, copied
   * when a thread is created: a replacement starts from everything published
   * before its creation (init.update says up to which). What is published
   * between its creation and the moment it listens on the channel (its modules
   * take hundreds of ms to load) never reaches it: its 'subscribed' tells us
   * where it started, and catchUp sends it the rest.
   */
  private publish (change: Unnumbered<StateUpdate>): void {
    const message = { ...change, update: ++this.update } as StateUpdate
    this.init.update = message.update
    this.latest.set(message.type, message)
    this.broadcast(message)
  }

  private catchUp (threadId: number, since: number): void {
    // in the order they were published, as the channel would have delivered them
    const missed = [...this.latest.values()].filter((m) => m.update > since).sort((x, y) => x.update - y.update)
    if (missed.length > 0) this.broadcast({ type: 'catchUp', threadId, missed })
  }

  /** The ACME challenge table changed: every worker answers HTTP-01 from its copy. */
  async setChallenges (challenges: ReadonlyArray<readonly [string, string]>, timeoutMs = 5000): Promise<void> {
    this.init.challenges = challenges
    const generation = ++this.challengeGeneration
    this.challengeAcks = 0
    if (this.challengesApplied !== null) this.challengesApplied() // an older update: superseded
    // resolves once every worker has the table: only then may the ACME server look
    const applied = new Promise<void>((resolve) => { this.challengesApplied = resolve })
    this.publish({ type: 'acme', challenges, generation })
    let timer: NodeJS.Timeout | null = null
    await Promise.race([applied, new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
    if (timer !== null) clearTimeout(timer)
  }

  /** Hand an accepted, paused socket from listener `listener` to a worker (node's own accept: the fallback of dispatchHandle). */
  dispatch (socket: net.Socket, listener = 0): void {
    const handle = (socket as unknown as { _handle: { fd: number } | null })._handle
    const peerIp = socket.remoteAddress
    const peerPort = socket.remotePort ?? 0
    if (handle === null || peerIp === undefined || handle.fd < 0) { socket.destroy(); return }
    const fd = this.duplicate(handle.fd)
    // our copy goes; the worker's duplicate keeps the connection open
    socket.destroy()
    if (fd >= 0) this.handOffFd(fd, peerIp, peerPort, listener)
  }

  /** Hand an accepted connection's handle (src/net/raw-accept.ts) from listener `listener` to a worker. */
  dispatchHandle (handle: AcceptedHandle, listener: number): void {
    const peer = peerOf(handle)
    const peerIp = peer.address
    const peerPort = peer.port ?? 0
    const fd = peerIp !== undefined ? this.duplicate(handle.fd) : -1
    handle.close() // as above: the duplicate keeps the connection open
    if (fd >= 0) this.handOffFd(fd, peerIp as string, peerPort, listener)
  }

  /** A duplicated descriptor's first hand-off attempt. */
  private handOffFd (fd: number, peerIp: string, peerPort: number, listener: number): void {
    this.handOff({ fd, peerIp, peerPort, listener, adopted: new Int32Array(new SharedArrayBuffer(4)) }, 1)
  }

  /** A duplicate of `fd` for a worker, or -1 (logged: the connection is dropped). */
  private duplicate (fd: number): number {
    try {
      return this.handoff.duplicate(fd)
    } catch (err) {
      logger.error({ code: 'SWY_ERR_FD_HANDOFF' satisfies ErrorCode, err: (err as Error).message }, 'could not duplicate an accepted descriptor; connection dropped')
      return -1
    }
  }

  private handOff (task: ConnectionTask, attempt: number): void {
    const done = this.pool.run(task).catch((err: Error) => {
      const adopted = Atomics.load(task.adopted, 0)
      // the worker died between taking the descriptor and wrapping it: still ours only if
      // the number still names this connection ('exit' fires after the thread's handles closed)
      const stillOurs = adopted === ADOPT_NONE ||
        (adopted === ADOPT_TAKING && this.handoff.peer(task.fd) === peerKey(task.peerIp, task.peerPort))
      if (!stillOurs) {
        // the worker had it: its teardown closed the descriptor and the connection with it
        if (!this.stopping) logger.warn({ code: 'SWY_ERR_WORKER_CRASHED' satisfies ErrorCode, peer: task.peerIp, err: err.message }, 'connection ended by a worker failure')
        return
      }
      Atomics.store(task.adopted, 0, ADOPT_NONE)
      // no worker adopted it: it is still ours, untouched (nothing was read from it)
      if (!this.stopping && attempt < MAX_HANDOFF_ATTEMPTS) {
        this.handOff(task, attempt + 1)
        return
      }
      logger.warn({ peer: task.peerIp, err: err.message }, 'no worker could take a connection; closed')
      try { this.handoff.close(task.fd) } catch { /* already closed */ }
    })
    this.inFlight.add(done)
    void done.finally(() => this.inFlight.delete(done))
  }

  /** Resolves once every worker has loaded and claimed its slot (or after `timeoutMs`). */
  async ready (timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      let claimed = 0
      for (let slot = 0; slot < MAX_WORKER_SLOTS; slot++) if (this.state.worker(slot, W_THREAD_ID) !== 0) claimed++
      if (claimed >= this.threads) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    logger.warn({ threads: this.threads }, 'workers were slow to start; serving anyway')
  }

  /** Ask every worker to write its buffered log lines; resolves when all have answered or after `ms`. */
  private async flushWorkerLogs (ms: number): Promise<void> {
    const waiting = new Set(this.pool.threads.map((w) => w.threadId).filter((id) => id >= 0))
    if (waiting.size === 0) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      const channel = this.channel
      function onMessage (event: unknown): void {
        const message = (event as { data: ControlMessage }).data
        if (message.type !== 'logsFlushed') return
        waiting.delete(message.threadId)
        if (waiting.size === 0) done()
      }
      function done (): void {
        clearTimeout(timer)
        channel.removeEventListener('message', onMessage)
        resolve()
      }
      channel.addEventListener('message', onMessage)
      this.broadcast({ type: 'flushLogs', timeoutMs: ms })
    })
  }

  broadcast (message: ControlMessage): void {
    this.channel.postMessage(message)
  }

  get openConnections (): number { return this.inFlight.size }

  /** Ask workers to finish what is in flight; wait up to `ms`, then destroy the pool. */
  async drainAndClose (ms: number): Promise<void> {
    this.broadcast({ type: 'drain' })
    const deadline = Date.now() + ms
    while (this.inFlight.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    // a worker's buffered log lines die with its thread: have every one written first
    await this.flushWorkerLogs(Math.max(500, deadline - Date.now()))
    this.stopping = true
    if (this.respawnTimer !== null) { clearTimeout(this.respawnTimer); this.respawnTimer = null }
    await this.pool.destroy()
    closeLogRings(this.init.logRings) // what the workers left there is written by the primary's last flush
    this.channel.close()
  }
}

/** The peer as the addon prints it (IPv4-mapped addresses as Node reports them: "::ffff:1.2.3.4"). */
function peerKey (ip: string, port: number): string {
  return `${ip}:${port}`
}

export interface BalancedWorker { currentUsage: number, terminating: boolean, destroyed: boolean }

/**
 * piscina load balancer: the worker with the fewest open connections (tasks),
 * ties broken round-robin. With "first of the fewest", every connection at low
 * traffic (each closed before the next arrives: all tied at 0) went to worker
 * 0, and the others stayed cold and looked dead on the dashboard. A cursor
 * per pool (one closure, built once) takes the tied workers in turn.
 */
export function fewestConnections (): (task: unknown, workers: BalancedWorker[]) => any {
  let cursor = 0
  return (task, workers) => {
    // WorkerPool's request for a thread: no worker takes it (see startWorkerTask)
    if (task !== null && typeof task === 'object' && (task as Record<symbol, unknown>)[kQueueOptions] === START_A_WORKER) return null
    let fewest = Infinity
    let tied = 0
    for (const w of workers) {
      if (w.terminating || w.destroyed) continue
      if (w.currentUsage < fewest) { fewest = w.currentUsage; tied = 1 } else if (w.currentUsage === fewest) tied++
    }
    if (tied === 0) return null
    let pick = cursor++ % tied
    if (cursor >= 0x3fffffff) cursor = 0
    for (const w of workers) {
      if (w.terminating || w.destroyed || w.currentUsage !== fewest) continue
      if (pick-- === 0) return w
    }
    return null
  }
}
