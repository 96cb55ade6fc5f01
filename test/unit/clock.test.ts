/**
 * The request path's clock (src/proxy/clock.ts): inside a read callback each
 * clock is read once and reused; outside one, every call reads the clock.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { performance } from 'node:perf_hooks'
import { beginRead, endRead, monotonicNow, wallNow } from '../../src/proxy/clock'

/** Spin until both clocks have moved on from `fromMonotonic` / `fromWall` (bounded). */
function spinPast (fromMonotonic: number, fromWall: number): void {
  const deadline = performance.now() + 1000
  while ((performance.now() <= fromMonotonic + 0.01 || Date.now() <= fromWall) && performance.now() < deadline) { /* spin */ }
}

test('inside a read callback the time is read once, on first use, and reused', () => {
  beginRead()
  try {
    const m = monotonicNow()
    const w = wallNow()
    spinPast(m, w)
    assert.equal(monotonicNow(), m, 'the same monotonic time for the whole callback')
    assert.equal(wallNow(), w, 'the same wall time for the whole callback')
    assert.ok(Math.abs(w - Date.now()) < 1500, 'and it is the real wall time')
  } finally {
    endRead()
  }
})

test('the next read callback reads the clocks afresh', () => {
  beginRead()
  const m = monotonicNow()
  const w = wallNow()
  endRead()
  spinPast(m, w)
  beginRead()
  try {
    assert.ok(monotonicNow() > m)
    assert.ok(wallNow() > w)
  } finally {
    endRead()
  }
})

test('outside a read callback every call reads the clock', () => {
  const m = monotonicNow()
  const w = wallNow()
  spinPast(m, w)
  assert.ok(monotonicNow() > m)
  assert.ok(wallNow() > w)
  // a callback that ended leaves nothing cached behind
  beginRead()
  const inside = monotonicNow()
  endRead()
  spinPast(inside, wallNow())
  assert.ok(monotonicNow() > inside)
})
