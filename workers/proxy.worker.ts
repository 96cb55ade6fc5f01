/**
 * The piscina worker entry. The request path is built once at module scope
 * from workerData; each task is one client connection, handed over as a
 * duplicated descriptor, and resolves when that connection closes.
 */
import * as net from 'node:net'
import { workerData, threadId, BroadcastChannel } from 'node:worker_threads'
import { SharedState } from '../src/shared/state'
import { createThreadProxy, applyConfig, startThreadStats, drainThread, setWorkerSlot } from '../src/proxy/thread'
import { acceptConnection, adoptedSocketOptions, applyTlsMaterial } from '../src/net/accept'
import type { WorkerInit, ConnectionTask, ControlMessage, StateUpdate } from '../src/primary/workers'
import { ADOPT_TAKING, ADOPT_WRAPPED } from '../src/primary/adoption'
import { logger, flushLogs, configureLog, reopenLogs, holdLogs, useLogRing } from '../src/log'
import { LeaseBroker } from '../src/cluster/global-limiter'
import { optionalHandoff } from '../src/primary/handoff'

const init = workerData as WorkerInit
// loading the addon registers this thread's V8 heap for the primary's memory release (src/primary/memory-release.ts)
optionalHandoff()
// stdout lines wait for this thread's slot: they go to its ring, which the primary writes
holdLogs()
const state = new SharedState(init.state)
applyLogConfig(init.config)
const leases = init.clusterChannel !== null && init.config.cluster !== undefined
  ? LeaseBroker.overChannel(init.clusterChannel, init.config.cluster.redis.timeoutMs)
  : null
const ctx = createThreadProxy(init.config, state, init.table, { stickySecret: init.stickySecret, cache: init.cache, tls: init.tls, tlsPort: init.tlsPort, leases })
// after the context exists; also makes this thread's cache claims carry the slot (freed by the primary if we die)
setWorkerSlot(ctx, state.claimWorkerSlot(threadId))
useLogRing(ctx.workerSlot === -1 ? null : init.logRings[ctx.workerSlot])
if (init.challenges.length > 0) ctx.acmeChallenges = new Map(init.challenges)
if (ctx.workerSlot === -1) logger.warn('no free worker slot in shared state; per-worker stats are off for this thread')
startThreadStats(ctx)

/** The update (WorkerPool.publish) each kind of state here comes from: workerData's, then the channel's. */
const applied: Record<StateUpdate['type'], number> = { config: init.update, tls: init.update, acme: init.update }

const channel = new BroadcastChannel(init.channel)
channel.unref()
channel.onmessage = (event: unknown) => {
  const message = (event as { data: ControlMessage }).data
  if (message.type === 'config' || message.type === 'tls' || message.type === 'acme') {
    applyUpdate(message)
  } else if (message.type === 'catchUp') {
    if (message.threadId === threadId) for (const missed of message.missed) applyUpdate(missed)
  } else if (message.type === 'drain') {
    drainThread(ctx)
    void flushLogs()
  } else if (message.type === 'flushLogs') {
    void flushLogs(message.timeoutMs).then(() => { channel.postMessage({ type: 'logsFlushed', threadId } satisfies ControlMessage) })
  } else if (message.type === 'reopenLogs') {
    reopenLogs()
  }
}

// what was published after workerData was copied and before this channel existed is lost: ask for it
channel.postMessage({ type: 'subscribed', threadId, update: init.update } satisfies ControlMessage)

/** Apply a config, TLS or challenge-table update unless this thread already has it or a newer one. */
function applyUpdate (message: StateUpdate): void {
  if (message.update <= applied[message.type]) return
  applied[message.type] = message.update
  if (message.type === 'config') {
    applyLogConfig(message.config)
    applyConfig(ctx, message.config, message.table, { stickySecret: init.stickySecret, cache: init.cache, tls: null, tlsPort: init.tlsPort, leases })
  } else if (message.type === 'tls') {
    applyTlsMaterial(ctx, message.material)
  } else {
    ctx.acmeChallenges = new Map(message.challenges)
    channel.postMessage({ type: 'acme-ack', generation: message.generation } satisfies ControlMessage)
  }
}

function applyLogConfig (config: WorkerInit['config']): void {
  const failure = configureLog(config.log)
  if (failure !== null) logger.error({ err: failure }, 'the access log stays where it was')
}

export default async function serveConnection (task: ConnectionTask): Promise<void> {
  // the hand-off handshake (src/primary/workers.ts): taking, then wrapped, after which this
  // thread's teardown closes the descriptor if the thread dies
  Atomics.store(task.adopted, 0, ADOPT_TAKING)
  const socket = new net.Socket(adoptedSocketOptions(ctx, task.listener, task.fd))
  Atomics.store(task.adopted, 0, ADOPT_WRAPPED)
  return await new Promise<void>((resolve) => {
    socket.once('close', () => resolve())
    acceptConnection(ctx, task.listener, socket, task.peerIp)
    if (ctx.draining) ctx.clients.forEach((c) => c.closeIfIdle())
  })
}
