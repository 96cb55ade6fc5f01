/**
 * Worker for the "a replaced entry never reads as a miss" test in
 * cache-store-threads.test.ts. Role 'writer' replaces one key `rounds` times
 * (each version's body names its round), then raises `done`. Role 'reader'
 * looks the key up in a tight loop until `done`: once the key is stored,
 * every lookup must find it (the old version or the new one, never nothing),
 * and versions never go backwards. (A test thread owns no sockets, so
 * Atomics.wait is fine here.)
 */
import { parentPort, workerData } from 'node:worker_threads'
import { SharedCacheStore, CacheEntry, type SharedCacheInit } from '../../src/cache/store'
import { SharedState, type SharedStateInit } from '../../src/shared/state'

export interface ReplaceJob {
  cache: SharedCacheInit
  state: SharedStateInit
  role: 'writer' | 'reader'
  rounds: number
  /** [0] threads at the start line, [1] 1 once the writer is done */
  flags: SharedArrayBuffer
  nowMs: number
}

export interface ReplaceReport {
  lookups: number
  misses: number
  backwards: number
  stored: number
  lastSeen: number
}

export const HOT_KEY = 'h /hot'

function run (job: ReplaceJob): ReplaceReport {
  const store = new SharedCacheStore(job.cache, new SharedState(job.state))
  const flags = new Int32Array(job.flags)
  const report: ReplaceReport = { lookups: 0, misses: 0, backwards: 0, stored: 0, lastSeen: -1 }
  Atomics.add(flags, 0, 1)
  while (Atomics.load(flags, 0) < 2) Atomics.wait(flags, 0, 1, 5)
  if (job.role === 'writer') {
    for (let round = 0; round < job.rounds; round++) {
      const body = Buffer.from(`version ${round}`.padEnd(64 + (round % 97), '.'))
      const head = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n`)
      const entry = { status: 200, head, body, storedAtMs: job.nowMs, responseDateMs: job.nowMs, initialAgeSec: 0, freshForMs: 600_000, etag: `"${round}"`, lastModified: null, varyNames: null, varyValues: null }
      if (store.store(HOT_KEY, entry, 50)) report.stored++
    }
    Atomics.store(flags, 1, 1)
    return report
  }
  const out = new CacheEntry()
  while (Atomics.load(flags, 1) === 0) {
    report.lookups++
    if (!store.lookup(HOT_KEY, job.nowMs, out, null, false)) {
      if (report.lastSeen >= 0) report.misses++
      continue
    }
    const round = Number(/^version (\d+)/.exec(out.body.toString('latin1'))?.[1] ?? -1)
    if (round < report.lastSeen) report.backwards++
    report.lastSeen = round
  }
  return report
}

if (parentPort !== null && workerData !== null) {
  parentPort.postMessage(run(workerData as ReplaceJob))
  // linger before exiting: see cache-store-thread-worker.ts
  setTimeout(() => {}, 100)
}
