/**
 * Memory given back under load (#18, src/primary/memory-release.ts):
 * - the addon's trimMalloc (glibc malloc_trim(0), on a libuv pool thread) returns to the kernel
 *   the pages another thread freed in its own arena, below chunks still in use, which glibc
 *   alone keeps resident;
 * - reduceHeaps reaches every thread that loaded the addon, from another thread: each starts a
 *   memory-reducing mark-compact on its own loop, and a thread that exits is forgotten;
 * - the primary's timer does both; interval 0 runs nothing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import { join } from 'node:path'
import { loadHandoff } from '../../src/primary/handoff'
import { startMemoryRelease } from '../../src/primary/memory-release'
import { waitFor } from '../helpers'

const MB = 1024 * 1024
const glibc = (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime !== undefined
const handoffModule = join(__dirname, '..', '..', 'src', 'primary', 'handoff.js')

/**
 * A worker thread (so its own malloc arena, not the main one) allocates `mb` MB of 16 KiB
 * Buffers (malloc-backed: larger than node's 8 KiB pool), keeps one in 8 alive, drops the
 * rest and collects them, then reports and waits for a message to exit: the kept buffers pin
 * the freed chunks between them, where glibc does not give pages back by itself.
 */
async function fragmentArena (mb: number): Promise<{ worker: Worker, freedMb: number }> {
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const v8 = require('node:v8'); const vm = require('node:vm')
    v8.setFlagsFromString('--expose-gc')
    const collect = vm.runInNewContext('gc')
    let all = []
    for (let i = 0; i < ${mb} * 64; i++) all.push(Buffer.alloc(16384, i & 0xff))
    const kept = all.filter((_, i) => i % 8 === 0)
    all = null
    collect(); collect()
    // ArrayBuffer backing stores may be freed by V8's concurrent sweeper: give it a moment
    setTimeout(() => { collect(); parentPort.postMessage(kept.length) }, 200)
    parentPort.once('message', () => { kept.length = 0; process.exit(0) })
  `, { eval: true })
  const [kept] = await once(worker, 'message') as [number]
  return { worker, freedMb: mb - kept * 16384 / MB }
}

async function done (worker: Worker): Promise<void> {
  worker.postMessage('exit')
  await once(worker, 'exit')
}

test('trimMalloc gives back the pages another thread freed in its arena (glibc)', { skip: !glibc && 'not glibc: the addon has no trimMalloc' }, async () => {
  const addon = loadHandoff()
  assert.equal(typeof addon.trimMalloc, 'function', 'trimMalloc (npm install builds the addon)')
  const { worker, freedMb } = await fragmentArena(64)
  try {
    // V8 frees ArrayBuffer backing stores on a background thread after the collection: wait for it (CI failed once at 200 ms)
    const stats = addon.mallocStats
    if (stats !== undefined) await waitFor(() => stats().freeBytes >= freedMb * 0.5 * MB, 10_000, 'the arenas hold the freed memory')
    const before = process.memoryUsage.rss()
    const cpuMicros = await (addon.trimMalloc as () => Promise<number>)()
    const released = (before - process.memoryUsage.rss()) / MB
    assert.ok(cpuMicros >= 0 && cpuMicros < 1_000_000, `trimMalloc reports its CPU time: ${cpuMicros} µs`)
    assert.ok(released >= freedMb * 0.5, `malloc_trim gave back ${released.toFixed(1)} of the ${freedMb.toFixed(0)} MB freed`)
  } finally {
    await done(worker)
  }
})

test('reduceHeaps starts a mark-compact in every thread that loaded the addon, and forgets a thread that exited', async () => {
  const addon = loadHandoff()
  assert.equal(typeof addon.reduceHeaps, 'function', 'reduceHeaps (npm install builds the addon)')
  const alone = (addon.reduceHeaps as () => number)()
  assert.ok(alone >= 1, 'this thread is registered')
  // an idle worker: no allocation, so no collection of its own; it reports each major GC it sees
  const worker = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const { PerformanceObserver, constants } = require('node:perf_hooks')
    require(${JSON.stringify(handoffModule)}).loadHandoff()
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) parentPort.postMessage('major')
    }).observe({ entryTypes: ['gc'] })
    parentPort.postMessage('ready')
    parentPort.on('message', () => process.exit(0))
  `, { eval: true })
  let majors = 0
  worker.on('message', (m) => { if (m === 'major') majors++ })
  try {
    await once(worker, 'message')
    await new Promise((resolve) => setTimeout(resolve, 300))
    const before = majors
    assert.equal((addon.reduceHeaps as () => number)(), alone + 1, 'the worker is registered')
    await waitFor(() => majors > before, 5000, 'a major GC in the worker')
  } finally {
    worker.postMessage('exit')
    await once(worker, 'exit')
  }
  assert.equal((addon.reduceHeaps as () => number)(), alone, 'the exited worker is forgotten')
})

test('the primary\'s timer releases on its own; interval 0 starts none', { skip: !glibc && 'not glibc: the addon has no trimMalloc' }, async () => {
  const { worker, freedMb } = await fragmentArena(64)
  try {
    const before = process.memoryUsage.rss()
    const off = startMemoryRelease(0)
    await new Promise((resolve) => setTimeout(resolve, 300))
    off()
    assert.ok((before - process.memoryUsage.rss()) / MB < freedMb * 0.5, 'interval 0: nothing was trimmed')
    const stop = startMemoryRelease(50)
    try {
      await waitFor(() => (before - process.memoryUsage.rss()) / MB >= freedMb * 0.5, 5000, 'the trim')
    } finally {
      stop()
    }
  } finally {
    await done(worker)
  }
})
