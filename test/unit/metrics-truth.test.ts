/**
 * The pieces behind truthful metrics, without sockets: client-response
 * counting in shared memory, monotonic process totals across a reload that
 * removes an upstream, quantiles from histogram buckets, the true loop lag,
 * and the round-robin tie-break of the worker hand-off.
 */
import { test } from 'node:test'
import * as assert from 'node:assert/strict'
import * as L from '../../src/shared/layout'
import { SharedState, type UpstreamEntry } from '../../src/shared/state'
import { CounterTotals } from '../../src/admin/totals'
import { quantile } from '../../src/admin/status'
import { trueLoopLagUs } from '../../src/proxy/thread'
import { fewestConnections, type BalancedWorker } from '../../src/primary/workers'

function entry (state: SharedState, slot: number, address: string): UpstreamEntry {
  state.initUpstreamSlot(slot)
  return Object.freeze({ slot, index: slot, pool: 'default', poolSlot: 0, address, host: '127.0.0.1', port: 8000 + slot, weight: 1, id: `u${slot}` })
}

test('recordClientResponse counts by source and class, bytes past 4 GiB, and the duration histogram', () => {
  const state = SharedState.create(0)
  const a = entry(state, 2, '127.0.0.1:8002')
  const w = state.claimWorkerSlot(7)
  state.recordClientResponse(w, a.slot, 200, false, 3, 100, 1000)
  state.recordClientResponse(w, a.slot, 502, true, 0.5, 80, 120)
  state.recordClientResponse(w, -1, 403, true, 0.2, 60, 90)
  state.recordClientResponse(w, -1, 101, false, -1, 10, 20) // a tunnel: no duration
  state.recordClientResponse(w, a.slot, 200, false, 20_000, 5 * 2 ** 32 + 7, 0)
  const totals = new CounterTotals(state)
  totals.sample([a])
  const t = (field: number): number => totals.allWorkersTotal(field)
  assert.equal(t(L.W_RESPONSES + L.SOURCE_UPSTREAM * 5 + 1), 2) // upstream 2xx
  assert.equal(t(L.W_RESPONSES + L.SOURCE_LOCAL * 5 + 4), 1) // local 5xx
  assert.equal(t(L.W_RESPONSES + L.SOURCE_LOCAL * 5 + 3), 1) // local 4xx
  assert.equal(t(L.W_RESPONSES + L.SOURCE_UPSTREAM * 5 + 0), 1) // the 101
  assert.equal(totals.allWorkersBytes(L.W_REQUEST_BYTES), 100 + 80 + 60 + 10 + 5 * 2 ** 32 + 7)
  assert.equal(totals.allWorkersBytes(L.W_RESPONSE_BYTES), 1000 + 120 + 90 + 20)
  let count = 0
  for (let b = 0; b <= L.LATENCY_BOUNDS_MS.length; b++) count += t(L.W_DURATION_BUCKETS + b)
  assert.equal(count, 4, 'the 101 has no duration')
  assert.equal(t(L.W_DURATION_BUCKETS + L.LATENCY_BOUNDS_MS.length), 1, '20 s is past the last bound')
  assert.equal(t(L.W_DURATION_SUM_US), 3000 + 500 + 200 + 20_000_000)
  assert.equal(totals.upstream(a.address, L.U_LOCAL_5XX), 1)
  assert.equal(totals.upstream(a.address, L.U_LOCAL_4XX), 0)
  assert.equal(totals.upstreamBytes(a.address, L.U_REQUEST_BYTES), 100 + 80 + 5 * 2 ** 32 + 7)
  assert.equal(totals.upstreamBytes(a.address, L.U_RESPONSE_BYTES), 1120)
})

test('process-wide upstream totals stay when a reload removes the upstream that counted them', () => {
  const state = SharedState.create(0)
  const a = entry(state, 0, '127.0.0.1:8001')
  const b = entry(state, 1, '127.0.0.1:8002')
  const totals = new CounterTotals(state)
  state.addUpstream(a.slot, L.U_REQUESTS, 10)
  state.addUpstream(b.slot, L.U_REQUESTS, 5)
  state.recordResponse(b.slot, 200, 1)
  totals.sample([a, b])
  assert.equal(totals.upstreamAll(L.U_REQUESTS), 15)
  state.addUpstream(b.slot, L.U_REQUESTS, 2) // counted before the table swap, seen by the last sample with b
  totals.sample([a, b])
  totals.sample([a]) // b removed by a reload
  assert.equal(totals.upstream(b.address, L.U_REQUESTS), 0, 'its own series is gone')
  assert.equal(totals.upstreamAll(L.U_REQUESTS), 17, 'the process total is not')
  assert.equal(totals.upstreamAll(L.U_STATUS_1XX + 1), 1)
  // its slot goes to a new upstream that starts from zero; the sum keeps growing
  const c = entry(state, 1, '127.0.0.1:8003')
  state.addUpstream(c.slot, L.U_REQUESTS, 1)
  totals.sample([a, c])
  assert.equal(totals.upstreamAll(L.U_REQUESTS), 18)
})

test('quantiles from non-cumulative buckets interpolate within the bucket (as histogram_quantile)', () => {
  const bounds = [1, 2, 5, 10]
  assert.equal(quantile([0, 0, 0, 0, 0], bounds, 0.5), null)
  assert.equal(quantile([10, 0, 0, 0, 0], bounds, 0.5), 0.5)
  assert.equal(quantile([0, 10, 0, 0, 0], bounds, 0.5), 1.5)
  assert.equal(quantile([50, 0, 0, 50, 0], bounds, 0.99), 5 + 5 * (49 / 50))
  assert.equal(quantile([0, 0, 0, 0, 3], bounds, 0.5), 10, 'the +Inf bucket reads as the highest bound')
})

test('event-loop lag: the monitor\'s sampling interval is subtracted, so an idle loop reads about 0', () => {
  // monitorEventLoopDelay({ resolution: 20 }) on an idle loop records ~20.2 ms per interval
  assert.equal(trueLoopLagUs(20_200_000, 20), 200)
  assert.equal(trueLoopLagUs(19_900_000, 20), 0, 'never negative')
  assert.equal(trueLoopLagUs(70_000_000, 20), 50_000, 'a 50 ms stall reads 50 ms')
  assert.equal(trueLoopLagUs(1e15, 20), 2 ** 31 - 1, 'fits an int32 cell')
})

test('hand-off: fewest connections first, ties taken round-robin', () => {
  const pick = fewestConnections()
  const workers: BalancedWorker[] = [0, 1, 2].map(() => ({ currentUsage: 0, terminating: false, destroyed: false }))
  const order = Array.from({ length: 6 }, () => workers.indexOf(pick(null, workers)))
  assert.deepEqual(order, [0, 1, 2, 0, 1, 2], 'idle workers take turns')
  workers[1].currentUsage = 1
  const tied = Array.from({ length: 4 }, () => workers.indexOf(pick(null, workers)))
  assert.ok(!tied.includes(1), 'a busier worker is not picked while others have fewer')
  assert.deepEqual(new Set(tied), new Set([0, 2]), 'the two tied at 0 share')
  workers[0].currentUsage = 5
  workers[2].currentUsage = 5
  assert.equal(pick(null, workers), workers[1], 'the least loaded wins outright')
  workers[1].terminating = true
  workers[0].destroyed = true
  assert.equal(pick(null, workers), workers[2])
  workers[2].destroyed = true
  assert.equal(pick(null, workers), null)
})

test('a status of 600..999 (relayed as it is) counts as 5xx, for the client and for the upstream; no status is not counted', () => {
  const state = SharedState.create(0)
  const a = entry(state, 3, '127.0.0.1:8003')
  const w = state.claimWorkerSlot(8)
  state.recordResponse(a.slot, 999, 1)
  state.recordResponse(a.slot, 600, 1)
  state.recordClientResponse(w, a.slot, 999, false, 1, 10, 20)
  state.recordClientResponse(w, a.slot, 0, false, 1, 10, 20) // the client went before any response
  const totals = new CounterTotals(state)
  totals.sample([a])
  assert.equal(totals.allWorkersTotal(L.W_RESPONSES + L.SOURCE_UPSTREAM * 5 + 4), 1)
  assert.equal(totals.allWorkersBytes(L.W_RESPONSE_BYTES), 20, 'the 999 counted once, the status 0 not at all')
  assert.equal(state.upstream(a.slot, L.U_STATUS_1XX + 4), 2)
  assert.deepEqual([0, 1, 2, 3].map((c) => state.upstream(a.slot, L.U_STATUS_1XX + c)), [0, 0, 0, 0])
})
