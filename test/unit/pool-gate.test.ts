/**
 * The pool gate's modes as a table: which upstreams a pick may choose for a
 * given health / drain / backup state and panic threshold; the panic switch
 * flipped and logged once across gates (threads); connection caps; the slow
 * start ramp.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import * as L from '../../src/shared/layout'
import { SharedState, type UpstreamEntry } from '../../src/shared/state'
import { PoolGate, rampFactor, RAMP_MIN, type PoolMode } from '../../src/proxy/pool-gate'
import { RoundRobinBalancer } from '../../src/balancer/round-robin'
import { PickContext } from '../../src/balancer/types'

interface Spec { healthy: boolean, backup?: boolean, drained?: boolean, source?: number, maxConnections?: number }

function setup (specs: Spec[], threshold: number): { state: SharedState, table: UpstreamEntry[], gate: PoolGate, logs: string[] } {
  const state = SharedState.create(0)
  const table: UpstreamEntry[] = specs.map((s, i) => {
    state.initUpstreamSlot(i)
    if (!s.healthy) state.eject(i, s.source ?? L.EJECT_PASSIVE, state.now())
    if (s.drained === true) state.storeUpstream(i, L.U_ADMIN_STATE, L.ADMIN_DRAINING)
    return { slot: i, index: i, address: `10.0.0.${i}:80`, host: `10.0.0.${i}`, port: 80, weight: 1, id: `u${i}`, pool: 'default', poolSlot: 0, backup: s.backup === true, maxConnections: s.maxConnections ?? 0, slowStartMs: 0 }
  })
  state.healthChanged()
  const logs: string[] = []
  const log = { info: (_: object, m: string) => { logs.push(m) }, warn: (_: object, m: string) => { logs.push(m) } }
  const gate = new PoolGate({ name: 'default', index: 0, panicThresholdPercent: threshold }, state, table, log)
  return { state, table, gate, logs }
}

const H = { healthy: true }
const D = { healthy: false }

const CASES: Array<{ name: string, specs: Spec[], threshold: number, mode: PoolMode, eligible: number[] }> = [
  { name: 'all healthy', specs: [H, H, H], threshold: 50, mode: 'normal', eligible: [0, 1, 2] },
  { name: 'one of three down: 67% >= 50%', specs: [H, D, H], threshold: 50, mode: 'normal', eligible: [0, 2] },
  { name: 'two of three down: 33% < 50%', specs: [H, D, D], threshold: 50, mode: 'panic', eligible: [0, 1, 2] },
  { name: 'half down at threshold 50 is not below it', specs: [H, D], threshold: 50, mode: 'normal', eligible: [0] },
  { name: 'lone upstream ejected: panic', specs: [D], threshold: 50, mode: 'panic', eligible: [0] },
  { name: 'threshold 0: never panic', specs: [H, D, D], threshold: 0, mode: 'normal', eligible: [0] },
  { name: 'threshold 0, lone upstream ejected passively: still used (nginx)', specs: [D], threshold: 0, mode: 'last', eligible: [0] },
  { name: 'threshold 0, lone upstream failing active checks: not used', specs: [{ healthy: false, source: L.EJECT_ACTIVE }], threshold: 0, mode: 'none', eligible: [] },
  { name: 'threshold 0, all of two down: none', specs: [D, D], threshold: 0, mode: 'none', eligible: [] },
  { name: 'panic ignores active verdicts too', specs: [{ healthy: false, source: L.EJECT_ACTIVE }, D, H], threshold: 50, mode: 'panic', eligible: [0, 1, 2] },
  { name: 'drained upstreams never count nor serve', specs: [H, { healthy: true, drained: true }, D], threshold: 50, mode: 'normal', eligible: [0] },
  { name: 'everything drained', specs: [{ healthy: true, drained: true }], threshold: 50, mode: 'none', eligible: [] },
  { name: 'primaries up: backup idle', specs: [H, H, { healthy: true, backup: true }], threshold: 50, mode: 'normal', eligible: [0, 1] },
  { name: 'one primary of two up: backup idle', specs: [H, D, { healthy: true, backup: true }], threshold: 50, mode: 'normal', eligible: [0] },
  { name: 'primaries down: backup serves', specs: [D, D, { healthy: true, backup: true }], threshold: 50, mode: 'backup', eligible: [2] },
  { name: 'primaries down, backup down: panic over all', specs: [D, D, { healthy: false, backup: true }], threshold: 50, mode: 'panic', eligible: [0, 1, 2] },
  { name: 'primaries below threshold but some up: panic over all, backup included', specs: [H, D, D, { healthy: true, backup: true }], threshold: 50, mode: 'panic', eligible: [0, 1, 2, 3] },
]

describe('pool gate: modes', () => {
  for (const c of CASES) {
    test(c.name, () => {
      const { gate, table } = setup(c.specs, c.threshold)
      gate.beginPick(Date.now())
      assert.equal(gate.mode, c.mode)
      assert.deepEqual(table.filter((e) => gate.isAvailable(e.slot)).map((e) => e.index), c.eligible)
    })
  }

  test('the panic switch is counted and logged once however many threads (gates) see it', () => {
    const { state, table, gate, logs } = setup([H, H, H], 50)
    const other = new PoolGate({ name: 'default', index: 0, panicThresholdPercent: 50 }, state, table, { info: (_, m) => { logs.push('other: ' + m) }, warn: (_, m) => { logs.push('other: ' + m) } })
    gate.beginPick(0); other.beginPick(0)
    assert.equal(state.pool(0, L.P_PANIC), 0)
    state.eject(1, L.EJECT_PASSIVE, state.now())
    state.eject(2, L.EJECT_PASSIVE, state.now())
    gate.beginPick(0); other.beginPick(0)
    assert.equal(gate.mode, 'panic')
    assert.equal(other.mode, 'panic')
    assert.equal(state.pool(0, L.P_PANIC), 1)
    assert.equal(state.pool(0, L.P_PANIC_TRANSITIONS), 1)
    assert.equal(logs.length, 1)
    state.revive(1)
    other.beginPick(0); gate.beginPick(0)
    assert.equal(gate.mode, 'normal')
    assert.equal(state.pool(0, L.P_PANIC), 0)
    assert.equal(state.pool(0, L.P_PANIC_TRANSITIONS), 2)
    assert.deepEqual(logs, ['pool in panic mode: too few healthy upstreams, balancing over all of them', 'other: pool out of panic mode'])
  })

  test('a health change is seen by the next pick (the generation moves)', () => {
    const { state, gate } = setup([H, H], 50)
    gate.beginPick(0)
    assert.equal(gate.isAvailable(1), true)
    state.storeUpstream(1, L.U_ADMIN_STATE, L.ADMIN_DRAINING)
    state.healthChanged()
    gate.beginPick(0)
    assert.equal(gate.isAvailable(1), false)
  })
})

describe('pool gate: connection caps', () => {
  test('acquire takes slots up to maxConnections, across gates, and the picker sees the cap', () => {
    const { state, table, gate } = setup([{ healthy: true, maxConnections: 2 }, H], 50)
    const other = new PoolGate({ name: 'default', index: 0, panicThresholdPercent: 50 }, state, table)
    gate.beginPick(0); other.beginPick(0)
    assert.equal(gate.acquire(-1, 0), true)
    assert.equal(other.acquire(3, 0), true)
    assert.equal(gate.acquire(-1, 0), false, 'the third is refused')
    assert.equal(state.upstream(0, L.U_ACTIVE_REQUESTS), 2)
    assert.equal(state.held(3, 0, L.U_ACTIVE_REQUESTS), 1, 'held by the worker that took it')
    gate.beginPick(0)
    assert.equal(gate.isAvailable(0), false)
    assert.equal(gate.sawFull, true)
    const rr = new RoundRobinBalancer(table, gate)
    const pick = new PickContext()
    for (let i = 0; i < 5; i++) assert.equal(rr.pick(pick), 1, 'the capped upstream is skipped')
    state.addHeld(-1, 0, L.U_ACTIVE_REQUESTS, -1)
    gate.beginPick(0)
    assert.equal(gate.isAvailable(0), true)
  })
})

describe('pool gate: slow start', () => {
  test('the ramp: RAMP_MIN at the start, linear, full weight at the end and after', () => {
    assert.equal(rampFactor(0, 1000), RAMP_MIN)
    assert.ok(Math.abs(rampFactor(500, 1000) - (RAMP_MIN + (1 - RAMP_MIN) / 2)) < 1e-9)
    assert.equal(rampFactor(1000, 1000), 1)
    assert.equal(rampFactor(5000, 1000), 1)
    assert.equal(rampFactor(10, 0), 1, 'off')
    assert.equal(rampFactor(-5, 1000), 1, 'a start time in the future (wrapped clock) is no ramp')
  })

  test('a recovering upstream is admitted in proportion to its factor over the largest; all ramping together is no ramp', () => {
    const state = SharedState.create(0)
    const table: UpstreamEntry[] = [0, 1].map((i) => {
      state.initUpstreamSlot(i)
      return { slot: i, index: i, address: `10.0.0.${i}:80`, host: `10.0.0.${i}`, port: 80, weight: 1, id: `u${i}`, pool: 'default', poolSlot: 0, backup: false, maxConnections: 0, slowStartMs: 10_000 }
    })
    const gate = new PoolGate({ name: 'default', index: 0, panicThresholdPercent: 50 }, state, table)
    gate.beginPick(0)
    assert.equal(gate.ramping, false, 'both started together: equal shares')
    // upstream 0 has been up for the whole ramp, upstream 1 just came back
    state.storeUpstream(0, L.U_RAMP_START, state.now() - 20_000)
    state.eject(1, L.EJECT_PASSIVE, state.now())
    state.revive(1)
    gate.beginPick(1000)
    assert.equal(gate.ramping, true)
    assert.equal(gate.admitProbability(0), 1)
    assert.ok(Math.abs(gate.admitProbability(1) - RAMP_MIN) < 0.01)
  })
})
