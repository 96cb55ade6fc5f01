/**
 * Memory the threads no longer use, given back while under load (#18): every
 * `memoryReleaseIntervalMs` the primary
 *
 * 1. asks every thread's V8 heap for a memory-reducing collection (native/heap-pressure.cc
 *    `reduceHeaps`: MemoryPressureNotification(kModerate), an incremental mark-compact that V8
 *    starts on that thread's own loop). V8 starts a mark-compact by itself only once the old
 *    generation has grown at least 8 MB past what survived the last one, and keeps those pages
 *    committed until then: in a 10-minute soak the workers' and the primary's old generations
 *    climbed for minutes, the rise the soak reads as "not flat". After a memory-reducing
 *    collection V8 allows 2 MB (or 10%) before the next, as its memory reducer does for an idle
 *    thread;
 * 2. calls malloc_trim(0) (glibc; native/fdhandoff.c `trimMalloc`) on a libuv pool thread: glibc
 *    gives each thread an arena (10 in a balancer with 2 workers) and returns an arena's memory
 *    to the kernel only from its top, so pages freed below a chunk still in use stay resident.
 *    One walk covers every thread's arena; it took 1.4-28 ms of CPU under load, which the
 *    primary's event loop does not wait for.
 *
 * Pay only for what is on: no timer when the interval is 0 or the addon is not built; no trim
 * when the C library is not glibc (the addon then has no trimMalloc).
 */
import { optionalHandoff, type FdHandoff } from './handoff'
import { logger } from '../log'

/** One release at a time: a tick that finds the last trim still running skips it. */
class MemoryRelease {
  private readonly addon: FdHandoff
  private trimming = false
  private rssBefore = 0
  // built once, not per tick
  private readonly onTrimmed = (cpuMicros: number): void => {
    this.trimming = false
    if (logger.isLevelEnabled('debug')) logger.debug({ trimCpuMicros: Math.round(cpuMicros), rssChangeBytes: process.memoryUsage.rss() - this.rssBefore }, 'memory release')
  }

  private readonly onTrimFailed = (err: Error): void => {
    this.trimming = false
    logger.warn({ err: err.message }, 'malloc trim failed')
  }

  constructor (addon: FdHandoff) {
    this.addon = addon
  }

  tick (): void {
    if (typeof this.addon.reduceHeaps === 'function') this.addon.reduceHeaps()
    if (this.trimming || typeof this.addon.trimMalloc !== 'function') return
    this.trimming = true
    if (logger.isLevelEnabled('debug')) this.rssBefore = process.memoryUsage.rss()
    this.addon.trimMalloc().then(this.onTrimmed, this.onTrimFailed)
  }
}

/**
 * Release memory every `intervalMs` on an unref'd timer (it never keeps the process alive), and
 * once right after start: what loading the modules left behind (the primary's start-up young
 * generation of 16 MB, each worker's garbage) goes before the load comes. Released only at the
 * first interval, it made the first seconds of load the run's highest resident memory (116-123 MB
 * in the soak; 108 MB with the release at start). Returns the function that stops it;
 * `intervalMs` 0 or no addon: nothing runs.
 */
export function startMemoryRelease (intervalMs: number): () => void {
  const addon = intervalMs > 0 ? optionalHandoff() : null
  if (addon === null) return () => {}
  const release = new MemoryRelease(addon)
  let timer = setTimeout(onFirst, 0)
  timer.unref()
  function onFirst (): void {
    release.tick()
    timer = setInterval(onInterval, intervalMs, release)
    timer.unref()
  }
  return () => { clearTimeout(timer) }
}

function onInterval (release: MemoryRelease): void {
  release.tick()
}
