/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core):
 * it shows an upstream healthy, then unhealthy within 3 s of that upstream
 * dying (active checks every 500 ms, the page polls every second), and leaves
 * a screenshot in test/artifacts/dashboard.png.
 */
import { test } from 'node:test'
import * as assert from 'node:assert/strict'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext } from 'playwright-core'
import { startLb, type RunningLb } from './harness'
import { startEchoUpstream, httpRequest, waitFor } from '../helpers'
import { startAdmin, type AdminServer } from '../../src/admin/server'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = join(__dirname, '..', '..', '..', 'test', 'artifacts')

test('dashboard shows upstream health and notices an upstream going down within 3 s', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.skip('chromium not installed: apt-get install -y chromium')
    return
  }
  const token = 'dashboard-test-token'
  const a = await startEchoUpstream('a')
  const b = await startEchoUpstream('b')
  let running: RunningLb | null = null
  let admin: AdminServer | null = null
  let context: BrowserContext | null = null
  const userDataDir = mkdtempSync(join(tmpdir(), 'switchyard-chromium-'))
  let trafficOn = true
  let traffic: Promise<void> = Promise.resolve()
  try {
    running = await startLb({
      upstreams: [{ address: a.address }, { address: b.address }],
      healthCheck: { active: { path: '/', intervalMs: 500, timeoutMs: 400 } },
    }, 0)
    admin = await startAdmin(running.lb, { listen: '127.0.0.1:0', token })
    const port = running.port
    // a light, steady load so the chart and rates have something to show
    traffic = (async () => {
      while (trafficOn) {
        await httpRequest(port, { path: '/' }).catch(() => {})
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    })()

    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1100, height: 760 },
    })
    const page = context.pages()[0] ?? await context.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))
    page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(msg.text()) })

    await page.goto(`${admin.url}/?token=${token}`)
    await page.waitForSelector(`[data-upstream="${a.address}"][data-health="up"]`, { timeout: 5000 })
    await page.waitForSelector(`[data-upstream="${b.address}"][data-health="up"]`, { timeout: 5000 })
    assert.equal(await page.textContent(`[data-upstream="${b.address}"] .badge`), 'up')
    // rates need two polls: wait until requests/s shows a number
    await waitFor(async () => /\d/.test(await page.textContent(`[data-upstream="${a.address}"] td:nth-child(3)`) ?? ''), 5000, 'a requests/s figure')

    await b.close()
    const killedAt = Date.now()
    await page.waitForSelector(`[data-upstream="${b.address}"][data-health="down"]`, { timeout: 3000 })
    const noticedMs = Date.now() - killedAt
    assert.ok(noticedMs < 3000, `noticed after ${noticedMs} ms`)
    assert.equal(await page.getAttribute(`[data-upstream="${a.address}"]`, 'data-health'), 'up')
    assert.equal(await page.textContent(`[data-upstream="${b.address}"] .badge`), 'down')
    assert.ok(await page.$('[data-worker="0"]') !== null, 'the worker table has a row')
    assert.ok(await page.$('#chart polyline') !== null, 'the chart has a line')
    assert.deepEqual(pageErrors, [], 'no errors on the page (CSP included)')

    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true })
  } finally {
    trafficOn = false
    await traffic
    await context?.close()
    await admin?.close()
    await running?.stop()
    await Promise.all([a.close(), b.close().catch(() => {})])
    rmSync(userDataDir, { recursive: true, force: true })
  }
})
