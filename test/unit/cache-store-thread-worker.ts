/**
 * Worker for cache-store-threads.test.ts: attaches to the test's cache and
 * state buffers, waits at a barrier so every thread starts together, then
 * for a bounded number of iterations stores and looks up overlapping keys
 * (role 'mixed') or, between such reads, floods the ring with large entries
 * and purges shared keys (role 'evictor'). Every hit is checked byte for byte against what its
 * key must hold; a torn or recycled copy would not match. (A test thread owns
 * no sockets, so Atomics.wait is fine here.)
 */
import { parentPort, workerData } from 'node:worker_threads'
import { SharedCacheStore, CacheEntry, type SharedCacheInit, type CacheEntryInput } from '../../src/cache/store'
import { varyValues, type HeaderSource } from '../../src/cache/key'
import { SharedState, type SharedStateInit } from '../../src/shared/state'

export interface CacheThreadJob {
  cache: SharedCacheInit
  state: SharedStateInit
  role: 'mixed' | 'evictor'
  seed: number
  iterations: number
  threads: number
  /** Shared keys h /k/0 .. h /k/(keys-1); every 4th varies on Accept-Encoding. */
  keys: number
  /** [arrived at barrier] */
  barrier: SharedArrayBuffer
  nowMs: number
}

export interface CacheThreadReport {
  hits: number
  misses: number
  stored: number
  notStored: number
  checkedBytes: number
  errors: string[]
  claimed: boolean
}

const ENCODINGS = ['gzip', 'identity']
const VARY = ['accept-encoding']

/** What the entry stored under `label` (a key, or key|encoding) must hold. */
export function expectedBody (label: string): Buffer {
  let h = 0x811c9dc5
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193)
  const size = 1024 + ((h >>> 0) % (24 * 1024))
  const body = Buffer.alloc(size)
  const tag = Buffer.from(`<${label}#${size}>`, 'latin1')
  for (let i = 0; i < size; i += tag.length) tag.copy(body, i, 0, Math.min(tag.length, size - i))
  return body
}

export function expectedHead (label: string, bodyLength: number): Buffer {
  return Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${bodyLength}\r\nX-Label: ${label}\r\n\r\n`, 'latin1')
}

function run (job: CacheThreadJob): CacheThreadReport {
  const store = new SharedCacheStore(job.cache, new SharedState(job.state))
  const barrier = new Int32Array(job.barrier)
  const nap = new Int32Array(new SharedArrayBuffer(4))
  const report: CacheThreadReport = { hits: 0, misses: 0, stored: 0, notStored: 0, checkedBytes: 0, errors: [], claimed: false }
  const out = new CacheEntry()

  // every label's entry and expected bytes, built once
  const labels = new Map<string, { body: Buffer, head: Buffer }>()
  const keyNames: string[] = []
  for (let k = 0; k < job.keys; k++) {
    const key = `h /k/${k}`
    keyNames.push(key)
    for (const label of k % 4 === 0 ? ENCODINGS.map((e) => `${key}|${e}`) : [key]) {
      const body = expectedBody(label)
      labels.set(label, { body, head: expectedHead(label, body.length) })
    }
  }
  const requests: HeaderSource[] = ENCODINGS.map((e) => ({ header: (name: string) => name === 'accept-encoding' ? e : null }))

  function entryFor (label: string, varies: boolean, encoding: number): CacheEntryInput {
    const expected = labels.get(label) as { body: Buffer, head: Buffer }
    return {
      status: 200,
      head: expected.head,
      body: expected.body,
      storedAtMs: job.nowMs,
      responseDateMs: job.nowMs,
      initialAgeSec: 0,
      freshForMs: 60_000,
      etag: `"${label}"`,
      lastModified: null,
      varyNames: varies ? VARY : null,
      varyValues: varies ? varyValues(VARY, requests[encoding]) : null,
    }
  }

  function fail (message: string): void {
    if (report.errors.length < 10) report.errors.push(message)
  }

  function waitForAll (generation: number): void {
    Atomics.add(barrier, 0, 1)
    const target = job.threads * generation
    for (;;) {
      const arrived = Atomics.load(barrier, 0)
      if (arrived >= target) return
      Atomics.wait(barrier, 0, arrived, 5)
    }
  }

  let rng = job.seed | 1
  function next (): number {
    rng ^= rng << 13
    rng ^= rng >>> 17
    rng ^= rng << 5
    return rng >>> 0
  }

  waitForAll(1)
  for (let i = 0; i < job.iterations; i++) {
    const r = next()
    const k = r % job.keys
    const key = keyNames[k]
    const varies = k % 4 === 0
    const encoding = (r >>> 16) & 1
    const label = varies ? `${key}|${ENCODINGS[encoding]}` : key
    if (job.role === 'evictor' && i % 3 === 0) {
      // large one-off entries churn the whole ring; purges hit the shared keys.
      // Only every third iteration: back-to-back stores would hold the
      // try-lock nearly all the time and (by design) starve the other writers.
      const flood = `h /flood/${job.seed}/${i}`
      const size = 16 * 1024 + (r % (32 * 1024))
      const body = Buffer.alloc(size, i & 0xff)
      if (store.store(flood, { ...entryFor(label, false, 0), head: expectedHead(flood, size), body, etag: null })) report.stored++
      else report.notStored++
      if (i % 8 === 0) store.remove(key)
      continue
    }
    if (job.role === 'evictor' || ((r >>> 8) & 7) < 5) {
      if (!store.lookup(key, job.nowMs, out, varies ? requests[encoding] : null)) { report.misses++; continue }
      report.hits++
      const expected = labels.get(label) as { body: Buffer, head: Buffer }
      if (!out.body.equals(expected.body)) fail(`${label}: body of ${out.body.length} bytes does not match (want ${expected.body.length})`)
      else if (!out.head.equals(expected.head)) fail(`${label}: head does not match`)
      else if (out.etag !== `"${label}"`) fail(`${label}: etag ${String(out.etag)}`)
      else report.checkedBytes += out.body.length + out.head.length
    } else if (store.store(key, entryFor(label, varies, encoding))) report.stored++
    else {
      report.notStored++
      // A skipped store is the design (never wait for the lock). But with more
      // threads than cores the holder is often preempted inside it, and a
      // thread that only spins through misses would finish its whole loop in
      // that one time slice; a real worker goes back to its sockets instead.
      // Yield the core briefly, as that would.
      Atomics.wait(nap, 0, 0, 0.05)
    }
  }

  // coalescing: every thread claims one key at the same moment; one wins
  waitForAll(2)
  report.claimed = store.tryClaimFill('h /claimed', job.nowMs, 60_000)
  return report
}

if (parentPort !== null && workerData !== null) {
  parentPort.postMessage(run(workerData as CacheThreadJob))
  // Linger with the event loop alive before exiting, so a concurrent TurboFan
  // job still compiling for this isolate can get the GC it may wait for and
  // finish. On Node 20, tearing the isolate down under such a job deadlocks in
  // NodePlatform::DrainTasks (nodejs/node#54918; seen here ~1 run in 50), and
  // terminate() under it aborts the process.
  setTimeout(() => {}, 100)
}
