/**
 * What keeps resident memory down and flat (#18): each worker thread's young generation is capped
 * (config.workerMaxYoungGenerationSizeMb, passed to piscina as resourceLimits), the primary
 * loads the ACME client and the admin API's metrics library only when the configuration uses them
 * (together 8 MB of its old generation, and their loading doubled its young generation at start),
 * and every worker registers its V8 heap for the primary's memory release (config.memoryReleaseIntervalMs,
 * src/primary/memory-release.ts; the mechanism itself is tested in test/unit/memory-release.test.ts).
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { startEchoUpstream, type TestServer } from '../helpers'
import { loadHandoff } from '../../src/primary/handoff'
import { startLb } from './harness'

const upstreams: TestServer[] = []
after(async () => { for (const u of upstreams) await u.close() })

async function upstream (): Promise<string> {
  const u = await startEchoUpstream()
  upstreams.push(u)
  return `127.0.0.1:${u.port}`
}

function youngGenerationCaps (run: Awaited<ReturnType<typeof startLb>>): number[] {
  const pool = run.lb.workerPool
  assert.ok(pool !== null, 'worker mode has a pool')
  return pool.pool.threads.map((t) => t.resourceLimits?.maxYoungGenerationSizeMb ?? -1)
}

test('workers=2: every worker thread runs with the young-generation cap (default 12 MB, or workerMaxYoungGenerationSizeMb)', async () => {
  const address = await upstream()
  const byDefault = await startLb({ upstreams: [{ address }] }, 2)
  try {
    assert.deepEqual(youngGenerationCaps(byDefault), [12, 12])
  } finally {
    await byDefault.stop()
  }
  const configured = await startLb({ upstreams: [{ address }], workerMaxYoungGenerationSizeMb: 6 }, 2)
  try {
    assert.deepEqual(youngGenerationCaps(configured), [6, 6])
  } finally {
    await configured.stop()
  }
})

test('workers=2: both workers register their V8 heap for the memory release, and a stopped pool unregisters them', async () => {
  const address = await upstream()
  const reduceHeaps = loadHandoff().reduceHeaps as () => number
  const before = reduceHeaps()
  const run = await startLb({ upstreams: [{ address }] }, 2)
  try {
    assert.equal(run.lb.config.memoryReleaseIntervalMs, 10_000, 'on by default')
    assert.equal(reduceHeaps(), before + 2)
  } finally {
    await run.stop()
  }
  assert.equal(reduceHeaps(), before)
})

/** Start switchyard in a fresh process with `config` and list the packages it loaded (node_modules names). */
async function packagesLoaded (config: Record<string, unknown>): Promise<string[]> {
  const index = join(__dirname, '..', '..', 'src', 'index.js')
  const script = `
    const { start } = require(${JSON.stringify(index)})
    start(${JSON.stringify(config)}).then(async (lb) => {
      const names = new Set()
      for (const file of Object.keys(require.cache)) {
        const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(file)
        if (m !== null) names.add(m[1])
      }
      process.stdout.write(JSON.stringify([...names].sort()))
      await lb.stop(100)
    }, (err) => { console.error(err); process.exit(1) })`
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  assert.equal(code, 0, `the child exited with ${code}`)
  return JSON.parse(out) as string[]
}

test('the primary loads neither the ACME client nor prom-client when no listener has tls.acme and admin is off', async () => {
  const address = await upstream()
  const base = { listen: '127.0.0.1:0', upstreams: [{ address }], workers: 0, log: { level: 'silent', access: false } }
  const plain = await packagesLoaded(base)
  for (const name of ['acme-client', 'axios', 'node-forge', '@peculiar/x509', 'prom-client', '@opentelemetry/api']) {
    assert.ok(!plain.includes(name), `${name} was loaded: ${plain.join(', ')}`)
  }
  assert.ok(plain.includes('pino'), `the list is read right: ${plain.join(', ')}`)
  // and an admin listener still gets its metrics library
  const withAdmin = await packagesLoaded({ ...base, admin: { listen: '127.0.0.1:0' } })
  assert.ok(withAdmin.includes('prom-client'), `prom-client with admin: ${withAdmin.join(', ')}`)
})
