/**
 * src/cluster/clock.ts: the offset to Redis's clock comes from the sample with the shortest round
 * trip over the last one to two epochs. An old best gives way to the best of the samples since, not
 * to whichever comes next: one slow sample (a reply read late by a busy loop) would shift every
 * window boundary by up to half its round trip, and the leases of a window that has ended would be
 * spent in the next one.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SharedState } from '../../src/shared/state'
import { EPOCH_MS, RedisClock } from '../../src/cluster/clock'

/** A sample sent at `at`, answered after `rtt` ms, whose reply spent `back` ms of it on the way back (true offset `offset`). */
function sample (clock: RedisClock, at: number, rtt: number, back: number, offset: number): void {
  clock.sample(at, at + (rtt - back) + offset, at + rtt)
}

test('the shortest round trip wins; one just as short after it tracks drift', () => {
  const clock = new RedisClock(SharedState.create(0))
  sample(clock, 1000, 20, 20, 0) // all of it on the way back: estimate -10
  assert.equal(clock.offsetMs, -10)
  sample(clock, 1100, 2, 1, 0)
  assert.equal(clock.offsetMs, 0)
  sample(clock, 1200, 30, 0, 0) // slower: ignored (estimate +15)
  assert.equal(clock.offsetMs, 0)
  sample(clock, 1300, 2.5, 1.25, 4) // within the tolerance, the clocks drifted by 4 ms
  assert.equal(clock.offsetMs, 4)
})

test('an old best is replaced by the best sample since, not by the next slow one', () => {
  const clock = new RedisClock(SharedState.create(0))
  sample(clock, 0, 1, 0.5, 0)
  assert.equal(clock.offsetMs, 0)
  // past the epoch: a reply that waited 99 ms to be read (estimate -49) does not replace it
  sample(clock, EPOCH_MS + 1, 100, 99.5, 0)
  assert.equal(clock.offsetMs, 0, 'a slow sample after the epoch does not move the windows')
  // a fast sample of this epoch does
  sample(clock, EPOCH_MS + 500, 1, 0.5, 2)
  assert.equal(clock.offsetMs, 2)
})

test('a best sample is kept no longer than two epochs', () => {
  const clock = new RedisClock(SharedState.create(0))
  sample(clock, 0, 1, 0.5, 0)
  sample(clock, EPOCH_MS + 1, 40, 30, 0) // estimate -10: the previous epoch's best still rules
  assert.equal(clock.offsetMs, 0)
  sample(clock, 2 * EPOCH_MS + 2, 40, 30, 0) // the first sample is over two epochs old: the best left rules
  assert.equal(clock.offsetMs, -10)
})

test('after a silence longer than two epochs, the first sample rules', () => {
  const clock = new RedisClock(SharedState.create(0))
  sample(clock, 0, 1, 0.5, 0)
  sample(clock, 3 * EPOCH_MS, 40, 30, 0)
  assert.equal(clock.offsetMs, -10)
})

test('a negative round trip (a clock stepped back) is not a sample', () => {
  const clock = new RedisClock(SharedState.create(0))
  sample(clock, 1000, 2, 1, 7)
  clock.sample(5000, 123456, 4000)
  assert.equal(clock.offsetMs, 7)
})
