/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core):
 * it counts switchyard's own 502s in its 5xx figures (the card and the
 * upstream rows), shows percentiles, bytes, open connections, time in state
 * and true loop lag, draws a chart with a legend, time labels, a 5xx line and
 * unstretched text; it shows an upstream healthy, then unhealthy within 3 s
 * of that upstream dying (active checks every 500 ms, the page polls every
 * second), and leaves a screenshot in test/artifacts/dashboard.png.
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
  // GET /boom: the upstream drops the connection, and switchyard answers 502 itself
  const boom = (req: { url?: string, socket: { destroy: () => void } }): boolean => {
    if (req.url !== '/boom') return false
    req.socket.destroy()
    return true
  }
  const a = await startEchoUpstream('a', boom)
  const b = await startEchoUpstream('b', boom)
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
      retries: 0,
    }, 0)
    admin = await startAdmin(running.lb, { listen: '127.0.0.1:0', token })
    const port = running.port
    for (let i = 0; i < 5; i++) assert.equal((await httpRequest(port, { path: '/boom' })).status, 502)
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
    await waitFor(async () => /\d/.test(await page.textContent(`[data-upstream="${a.address}"] [data-col="rps"]`) ?? ''), 5000, 'a requests/s figure')

    // the five local 502s are in the 5xx card and in the upstreams' 5xx figures
    const text = async (selector: string): Promise<string> => ((await page.textContent(selector)) ?? '').trim()
    const count = (t: string): number => Number(t.replace(/,/g, ''))
    assert.equal(await text('[data-card="5xx"] .value'), '5')
    assert.match(await text('[data-card="5xx"] .sub'), /^5 local, 0 from upstreams$/)
    const rowFives = [count(await text(`[data-upstream="${a.address}"] [data-col="5xx"]`)), count(await text(`[data-upstream="${b.address}"] [data-col="5xx"]`))]
    assert.equal(rowFives[0] + rowFives[1], 5, `per-upstream 5xx: ${rowFives.join(' + ')}`)
    const status = JSON.parse((await httpRequest(admin.address.port, { path: '/api/status', headers: { authorization: `Bearer ${token}` } })).body)
    assert.equal(status.totals.responses['5xx'], 5)
    for (const address of [a.address, b.address]) {
      const row = `[data-upstream="${address}"]`
      assert.match(await text(`${row} [data-col="latency"]`), /^[\d.]+ \/ [\d.]+ \/ [\d.]+$/, 'p50 / p95 / p99')
      assert.match(await text(`${row} [data-col="open"]`), /^\d+$/, 'open connections now')
      assert.match(await text(`${row} [data-col="bytes"]`), /^[\d.]+ (B|KiB|MiB) \/ [\d.]+ (B|KiB|MiB)$/)
      assert.match(await text(`${row} [data-col="inState"]`), /^\d+m \d+s$/)
      assert.match(await text(`${row} [data-col="retries"]`), /^\d+$/)
    }
    assert.match(await text('[data-card="duration"] .value'), /^[\d.]+ \/ [\d.]+ \/ [\d.]+ ms$/)
    assert.match(await text('[data-card="open"] .value'), /^\d+$/)
    const lag = await text('[data-worker="0"] [data-col="lag"]')
    assert.match(lag, /^[\d.]+ ms$/)
    assert.ok(Number(lag.split(' ')[0]) < 1000, `loop lag ${lag}`)
    assert.match(await text('[data-worker="0"] [data-col="open"]'), /^\d+$/)

    // the chart: a legend naming every line, clock-time labels, a 5xx line, drawn at its own pixel size
    await waitFor(async () => await page.$('#chart polyline[data-series="5xx"]') !== null, 5000, 'a 5xx line')
    assert.deepEqual(await page.$$eval('#legend [data-series]', (items) => items.map((i) => i.getAttribute('data-series'))),
      ['total', a.address, b.address, '5xx'])
    assert.ok(await page.$(`#chart polyline[data-series="${a.address}"]`) !== null)
    const times = await page.$$eval('#chart text.time', (items) => items.map((i) => i.textContent ?? ''))
    assert.ok(times.length === 3 && times.every((t) => /^\d\d:\d\d:\d\d$/.test(t)), `time labels: ${times.join(', ')}`)
    const geometry = await page.$eval('#chart', (svg) => ({ viewBox: svg.getAttribute('viewBox'), width: svg.clientWidth, height: svg.clientHeight, aspect: svg.getAttribute('preserveAspectRatio') }))
    assert.equal(geometry.viewBox, `0 0 ${geometry.width} ${geometry.height}`, 'one unit per CSS pixel: text is not stretched')
    assert.equal(geometry.aspect, null)

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
