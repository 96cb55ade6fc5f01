/**
 * Slow start (issue #14 item 3), end to end in both modes: an upstream added
 * by a reload next to one at full weight ramps from ~10% of its weight to all
 * of it over slowStartMs. With round robin (a fresh draw per pick) its share
 * is f / (1 + f) for ramp factor f = 0.1 + 0.9 t / slowStartMs; measured in
 * two windows of the ramp it must be within ±10 points of that curve.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { U_RAMP_START } from '../../src/shared/layout'
import { resolveConfig } from '../../src/config/load'
import { rampFactor } from '../../src/proxy/pool-gate'
import { MODES, startLb } from './harness'
import { startScripted, send } from './resilience-util'

const RAMP_MS = 4000

for (const mode of MODES) {
  test(`${mode.name}: an upstream added by reload ramps from ~10% to its full share over slowStartMs`, async () => {
    const old = await startScripted('old')
    const added = await startScripted('added')
    // the old one has no ramp of its own (its override is 0): only the new one ramps
    const base = { listen: '127.0.0.1:0', log: { level: 'silent', access: false }, workers: mode.workers, healthCheck: { slowStartMs: RAMP_MS } }
    const run = await startLb({ ...base, upstreams: [{ address: old.address, slowStartMs: 0 }] }, mode.workers)
    try {
      run.lb.reload(resolveConfig({ ...base, upstreams: [{ address: old.address, slowStartMs: 0 }, { address: added.address }] }))
      const entry = run.lb.table.find((e) => e.address === added.address)
      assert.ok(entry !== undefined)
      const state = run.lb.state
      const rampStart = state.upstream(entry.slot, U_RAMP_START)
      const elapsed = (): number => state.now() - rampStart
      // a window of the ramp: the share measured against the curve averaged over the same requests
      const window = async (fromMs: number, toMs: number): Promise<{ share: number, expected: number, n: number }> => {
        while (elapsed() < fromMs) await new Promise((resolve) => setTimeout(resolve, 10))
        let n = 0
        let toAdded = 0
        let expected = 0
        const client = async (): Promise<void> => {
          while (elapsed() < toMs) {
            const t = elapsed()
            const a = await send(run.port)
            assert.equal(a.status, 200)
            const f = rampFactor(t, RAMP_MS)
            expected += f / (1 + f)
            n++
            if (a.upstream === 'added') toAdded++
          }
        }
        await Promise.all([client(), client(), client(), client()])
        return { share: toAdded / n, expected: expected / n, n }
      }
      const early = await window(300, 1300)
      const late = await window(2500, 3500)
      console.log(`${mode.name}: added upstream's share ${(early.share * 100).toFixed(1)}% (curve ${(early.expected * 100).toFixed(1)}%, n=${early.n}) early, ` +
        `${(late.share * 100).toFixed(1)}% (curve ${(late.expected * 100).toFixed(1)}%, n=${late.n}) late`)
      assert.ok(Math.abs(early.share - early.expected) <= 0.10, `early: ${early.share} vs ${early.expected}`)
      assert.ok(Math.abs(late.share - late.expected) <= 0.10, `late: ${late.share} vs ${late.expected}`)
      assert.ok(late.share > early.share, 'the share grows along the ramp')
      // past the ramp: an even split
      while (elapsed() < RAMP_MS + 100) await new Promise((resolve) => setTimeout(resolve, 20))
      let toAdded = 0
      for (let i = 0; i < 40; i++) if ((await send(run.port)).upstream === 'added') toAdded++
      assert.ok(toAdded >= 16 && toAdded <= 24, `full weight after the ramp: ${toAdded} of 40`)
    } finally {
      await run.stop()
      await Promise.all([old.close(), added.close()])
    }
  })
}
