/**
 * The request path's clock, read at most once per read callback.
 *
 * A request reads the time about ten times: when its head starts, for the
 * client's and the upstream's deadlines, when it is sent, when the response
 * head comes, for passive health, the duration and the access log. Each
 * `performance.now()` or `Date.now()` is a call out of JavaScript into the
 * clock (75-107 ns on the development VM), and most of them fall inside the
 * same read callback, microseconds apart. So the read callbacks of the
 * request path (onClientRead in client.ts, onRead in upstream.ts) bracket
 * their work with beginRead()/endRead(), and inside that bracket each clock
 * is read once, on first use, and reused. nginx does the same: it updates
 * its cached time once per event-loop wake-up (ngx_time_update).
 *
 * Outside a read callback (timers, connects, 'data' events of TLS sockets,
 * drains) both functions read the clock itself, so nothing sees a time older
 * than the callback it runs in. Inside one, what is measured is as precise as
 * the callback is short: a callback that serves many pipelined requests gives
 * them one time, which only ever shortens a deadline by that long (deadlines
 * are checked once per sweeper tick, 5 ms or more, anyway).
 */
import { performance } from 'node:perf_hooks'
import { arenaView } from '../net/read-arena'

let reading = false
/** performance.now() and Date.now() as first read in this callback; -1: not read yet. */
let monotonic = -1
let wall = -1

/** A read callback starts: the clocks are read afresh, once each, until endRead(). */
export function beginRead (): void {
  reading = true
  monotonic = -1
  wall = -1
}

/** The read callback is over: every read of the time reads the clock again. */
export function endRead (): void {
  reading = false
}

/** performance.now(): monotonic milliseconds, for durations. */
export function monotonicNow (): number {
  if (!reading) return performance.now()
  if (monotonic < 0) monotonic = performance.now()
  return monotonic
}

/** Date.now(): milliseconds since the epoch, for deadlines and the shared state's timestamps. */
export function wallNow (): number {
  if (!reading) return Date.now()
  if (wall < 0) wall = Date.now()
  return wall
}

/** A connection of the request path that reads into the thread's read arena (client.ts, upstream.ts). */
export interface ArenaReader {
  handleData (chunk: Buffer): void
  /** The read is over: copy what is kept past it (read-arena.ts). */
  settleBorrowed (): void
}

/** The body of a read callback: the new bytes to `conn`, with the time read once for all of it. */
export function deliverRead (conn: ArenaReader, bytes: number): void {
  beginRead()
  try {
    conn.handleData(arenaView(bytes))
    conn.settleBorrowed()
  } finally {
    endRead()
  }
}
