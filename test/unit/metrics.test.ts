/**
 * /metrics rendering (prom-client) from a SharedState filled by hand, checked
 * with a small Prometheus text-format (0.0.4) parser written here and with
 * `promtool check metrics` when promtool is installed, and the 64-bit totals
 * that survive uint32 wrap-around.
 */
import { test } from 'node:test'
import * as assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import * as L from '../../src/shared/layout'
import { SharedState, type UpstreamEntry } from '../../src/shared/state'
import { CounterTotals, delta32 } from '../../src/admin/totals'
import { renderMetrics } from '../../src/admin/prometheus'

// ---- a strict little parser for the text exposition format --------------------

interface Sample { name: string, labels: Record<string, string>, value: number }
interface Family { name: string, type: string, help: string, samples: Sample[] }

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

function parseValue (text: string, line: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  if (text === 'NaN') return NaN
  assert.match(text, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `bad value in: ${line}`)
  return Number(text)
}

/** `name{a="b",c="d"} value` -> Sample; throws on any syntax error. */
function parseSample (line: string): Sample {
  let i = 0
  while (i < line.length && line[i] !== '{' && line[i] !== ' ') i++
  const name = line.slice(0, i)
  assert.match(name, METRIC_NAME, `bad metric name in: ${line}`)
  const labels: Record<string, string> = {}
  if (line[i] === '{') {
    i++
    while (line[i] !== '}') {
      const eq = line.indexOf('=', i)
      assert.ok(eq > i, `bad label in: ${line}`)
      const key = line.slice(i, eq)
      assert.match(key, LABEL_NAME, `bad label name "${key}" in: ${line}`)
      assert.equal(line[eq + 1], '"', `label value not quoted in: ${line}`)
      let j = eq + 2
      let value = ''
      for (;;) {
        assert.ok(j < line.length, `unterminated label value in: ${line}`)
        const c = line[j]
        if (c === '"') break
        if (c === '\\') {
          const next = line[j + 1]
          if (next === '\\') value += '\\'
          else if (next === '"') value += '"'
          else if (next === 'n') value += '\n'
          else assert.fail(`bad escape \\${next} in: ${line}`)
          j += 2
          continue
        }
        value += c
        j++
      }
      assert.ok(!(key in labels), `duplicate label ${key} in: ${line}`)
      labels[key] = value
      i = j + 1
      if (line[i] === ',') i++
      else assert.equal(line[i], '}', `expected , or } in: ${line}`)
    }
    i++
  }
  assert.equal(line[i], ' ', `expected a space before the value in: ${line}`)
  const rest = line.slice(i + 1).split(' ')
  assert.ok(rest.length === 1 || (rest.length === 2 && /^-?\d+$/.test(rest[1])), `bad value/timestamp in: ${line}`)
  return { name, labels, value: parseValue(rest[0], line) }
}

function familyOf (sampleName: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sampleName)
  if (direct !== undefined) return direct
  const m = /^(.*)_(bucket|sum|count)$/.exec(sampleName)
  if (m !== null) {
    const base = families.get(m[1])
    if (base !== undefined && (base.type === 'histogram' || base.type === 'summary')) return base
  }
  return undefined
}

function parseExposition (text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'exposition must end with a newline')
  const families = new Map<string, Family>()
  const finished = new Set<string>()
  let open: Family | null = null
  const seriesSeen = new Set<string>()
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') continue // the format ignores empty lines (prom-client puts one between families)
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP (\S+) (.*)$/.exec(line)
      assert.ok(m !== null, `bad HELP line: ${line}`)
      assert.match(m[1], METRIC_NAME)
      assert.doesNotMatch(m[2].replace(/\\[\\n]/g, ''), /\\/, `bad escape in HELP: ${line}`)
      assert.ok(!families.has(m[1]), `second HELP for ${m[1]}`)
      if (open !== null) finished.add(open.name)
      open = { name: m[1], type: 'untyped', help: m[2], samples: [] }
      families.set(m[1], open)
    } else if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE (\S+) (\S+)$/.exec(line)
      assert.ok(m !== null, `bad TYPE line: ${line}`)
      assert.ok(TYPES.has(m[2]), `unknown type in: ${line}`)
      assert.ok(open !== null && open.name === m[1] && open.samples.length === 0, `TYPE must follow HELP and precede samples: ${line}`)
      open.type = m[2]
    } else {
      assert.ok(!line.startsWith('#'), `unexpected comment: ${line}`)
      const sample = parseSample(line)
      const family = familyOf(sample.name, families)
      assert.ok(family !== undefined, `sample without HELP/TYPE: ${line}`)
      assert.ok(family === open && !finished.has(family.name), `samples of ${family.name} are not contiguous`)
      const key = sample.name + JSON.stringify(Object.entries(sample.labels).sort())
      assert.ok(!seriesSeen.has(key), `duplicate series: ${line}`)
      seriesSeen.add(key)
      family.samples.push(sample)
    }
  }
  for (const family of families.values()) {
    if (family.type === 'counter') {
      assert.match(family.name, /_total$/, `counter ${family.name} should end in _total`)
      for (const s of family.samples) assert.ok(s.value >= 0, `negative counter ${s.name}`)
    }
    if (family.type === 'histogram') checkHistogram(family)
  }
  return families
}

function checkHistogram (family: Family): void {
  const groups = new Map<string, { buckets: Array<{ le: number, value: number }>, sum?: number, count?: number }>()
  for (const s of family.samples) {
    const { le, ...rest } = s.labels
    const key = JSON.stringify(Object.entries(rest).sort())
    let g = groups.get(key)
    if (g === undefined) { g = { buckets: [] }; groups.set(key, g) }
    if (s.name === `${family.name}_bucket`) {
      assert.ok(le !== undefined, `bucket without le: ${s.name}`)
      g.buckets.push({ le: parseValue(le, le), value: s.value })
    } else if (s.name === `${family.name}_sum`) g.sum = s.value
    else if (s.name === `${family.name}_count`) g.count = s.value
    else assert.fail(`unexpected sample ${s.name} in histogram ${family.name}`)
  }
  for (const [key, g] of groups) {
    assert.ok(g.buckets.length > 0, `no buckets for ${key}`)
    for (let i = 1; i < g.buckets.length; i++) {
      assert.ok(g.buckets[i].le > g.buckets[i - 1].le, `le not increasing for ${key}`)
      assert.ok(g.buckets[i].value >= g.buckets[i - 1].value, `buckets not cumulative for ${key}`)
    }
    const last = g.buckets[g.buckets.length - 1]
    assert.equal(last.le, Infinity, `last bucket must be +Inf for ${key}`)
    assert.equal(g.count, last.value, `+Inf bucket must equal _count for ${key}`)
    assert.ok(g.sum !== undefined, `missing _sum for ${key}`)
  }
}

function value (families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = familyOf(name, families)
  assert.ok(family !== undefined, `no family for ${name}`)
  const found = family.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  assert.equal(found.length, 1, `expected one ${name} ${JSON.stringify(labels)}, found ${found.length}`)
  return found[0].value
}

// ---- fixtures -----------------------------------------------------------------

function entry (state: SharedState, slot: number, address: string): UpstreamEntry {
  state.initUpstreamSlot(slot)
  return Object.freeze({ slot, index: slot, pool: 'default', poolSlot: 0, address, host: '127.0.0.1', port: 8000 + slot, weight: 1, id: `u${slot}` })
}

function filledState (): { state: SharedState, table: UpstreamEntry[] } {
  const state = SharedState.create(64)
  const a = entry(state, 0, '127.0.0.1:8001')
  const b = entry(state, 3, 'odd"name\\with\nnewline:1')
  for (const ms of [0.5, 3, 3, 40, 700, 20_000]) state.recordResponse(a.slot, 200, ms)
  state.recordResponse(a.slot, 503, 12)
  state.recordResponse(a.slot, 404, 1)
  state.addUpstream(a.slot, L.U_REQUESTS, 9)
  state.addUpstream(a.slot, L.U_FAILURES, 1)
  state.addUpstream(a.slot, L.U_RETRIES, 1)
  state.addUpstream(a.slot, L.U_ACTIVE_REQUESTS, 2)
  state.addUpstream(a.slot, L.U_OPEN_SOCKETS, 4)
  state.storeUpstream(b.slot, L.U_HEALTHY, 0)
  state.storeUpstream(b.slot, L.U_ADMIN_STATE, L.ADMIN_DRAINING)
  state.addUpstream(b.slot, L.U_HEALTH_TRANSITIONS, 1)
  state.addUpstream(b.slot, L.U_ACTIVE_REQUESTS, -1) // a decrement seen before its increment
  const w = state.claimWorkerSlot(42)
  state.addWorker(w, L.W_OPEN_CONNECTIONS, 5)
  state.addWorker(w, L.W_REQUESTS, 8)
  state.storeWorker(w, L.W_LOOP_LAG_US, 1500)
  state.addHeader(L.H_RATE_LIMITED, 3)
  state.addHeader(L.H_FIREWALL_BLOCKED, 4)
  state.addHeader(L.H_PROTOCOL_ERRORS, 5)
  state.addHeader(L.H_WORKER_RESTARTS, 1)
  state.addHeader(L.H_CONNECTIONS_ACCEPTED, 6)
  state.storeHeader(L.H_RATE_SLOTS_USED, 10)
  return { state, table: [a, b] }
}

// ---- tests --------------------------------------------------------------------

test('every line of /metrics is valid text format 0.0.4 and the numbers match the state', async () => {
  const { state, table } = filledState()
  const totals = new CounterTotals(state)
  totals.sample(table)
  const text = await renderMetrics(state, table, totals, { version: '1.2.3', mode: 'workers', startedAtMs: 1_700_000_000_000 })
  const f = parseExposition(text)

  const a = { upstream: '127.0.0.1:8001' }
  assert.equal(value(f, 'switchyard_upstream_responses_total', { ...a, class: '2xx' }), 6)
  assert.equal(value(f, 'switchyard_upstream_responses_total', { ...a, class: '4xx' }), 1)
  assert.equal(value(f, 'switchyard_upstream_responses_total', { ...a, class: '5xx' }), 1)
  assert.equal(value(f, 'switchyard_upstream_responses_total', { ...a, class: '1xx' }), 0)
  assert.equal(value(f, 'switchyard_upstream_requests_total', a), 9)
  assert.equal(value(f, 'switchyard_upstream_failures_total', a), 1)
  assert.equal(value(f, 'switchyard_upstream_retries_total', a), 1)
  assert.equal(value(f, 'switchyard_upstream_response_seconds_count', a), 8)
  // latency sum is kept in microseconds, so sub-millisecond responses count (0.5 + 3 + 3 + 40 + 700 + 20000 + 12 + 1 ms)
  assert.equal(value(f, 'switchyard_upstream_response_seconds_sum', a), 20.7595)
  assert.equal(value(f, 'switchyard_upstream_response_seconds_bucket', { ...a, le: '0.001' }), 2) // 0.5 and 1 ms
  assert.equal(value(f, 'switchyard_upstream_response_seconds_bucket', { ...a, le: '0.005' }), 4)
  assert.equal(value(f, 'switchyard_upstream_response_seconds_bucket', { ...a, le: '10' }), 7)
  assert.equal(value(f, 'switchyard_upstream_response_seconds_bucket', { ...a, le: '+Inf' }), 8)
  assert.equal(value(f, 'switchyard_upstream_healthy', a), 1)
  assert.equal(value(f, 'switchyard_upstream_active_requests', a), 2)
  assert.equal(value(f, 'switchyard_upstream_open_sockets', a), 4)

  // label values are escaped and come back intact
  const b = { upstream: 'odd"name\\with\nnewline:1' }
  assert.ok(text.includes('upstream="odd\\"name\\\\with\\nnewline:1"'))
  assert.equal(value(f, 'switchyard_upstream_healthy', b), 0)
  assert.equal(value(f, 'switchyard_upstream_draining', b), 1)
  assert.equal(value(f, 'switchyard_upstream_active_requests', b), 0)
  assert.equal(value(f, 'switchyard_health_transitions_total', b), 1)
  assert.equal(value(f, 'switchyard_upstream_response_seconds_count', b), 0)

  assert.equal(value(f, 'switchyard_open_connections', { worker: '0' }), 5)
  assert.equal(value(f, 'switchyard_worker_requests_total', { worker: '0' }), 8)
  // one label name for a serving thread across families: its worker slot
  assert.equal(value(f, 'switchyard_event_loop_lag_seconds', { worker: '0' }), 0.0015)
  assert.equal(value(f, 'switchyard_rate_limited_total'), 3)
  assert.equal(value(f, 'switchyard_firewall_blocked_total'), 4)
  assert.equal(value(f, 'switchyard_protocol_errors_total'), 5)
  assert.equal(value(f, 'switchyard_worker_restarts_total'), 1)
  assert.equal(value(f, 'switchyard_connections_accepted_total'), 6)
  assert.equal(value(f, 'switchyard_rate_table_slots_used'), 10)
  assert.equal(value(f, 'switchyard_rate_table_slots'), 64)
  assert.equal(value(f, 'switchyard_cache_bytes'), 0)
  assert.equal(value(f, 'switchyard_info', { version: '1.2.3', mode: 'workers' }), 1)
  assert.equal(value(f, 'switchyard_start_time_seconds'), 1_700_000_000)

  for (const name of ['switchyard_upstream_responses_total', 'switchyard_upstream_response_seconds', 'switchyard_upstream_healthy', 'switchyard_event_loop_lag_seconds']) {
    assert.ok(f.get(name)?.help !== '', `${name} has HELP`)
  }
  assert.equal(f.get('switchyard_upstream_response_seconds')?.type, 'histogram')
  assert.equal(f.get('switchyard_upstream_open_sockets')?.type, 'gauge')
})

test('prom-client adds the process and Node.js families', async () => {
  const { state, table } = filledState()
  const totals = new CounterTotals(state)
  totals.sample(table)
  const f = parseExposition(await renderMetrics(state, table, totals))
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_open_fds', 'nodejs_heap_size_used_bytes', 'nodejs_gc_duration_seconds']) {
    assert.ok(f.has(name), `${name} is exported`)
  }
  assert.ok(value(f, 'process_resident_memory_bytes') > 0)
  assert.ok(value(f, 'process_cpu_seconds_total') > 0)
})

test('every family uses the label `worker` for a serving thread, never `thread`', async () => {
  const { state, table } = filledState()
  const totals = new CounterTotals(state)
  totals.sample(table)
  const f = parseExposition(await renderMetrics(state, table, totals))
  for (const family of f.values()) {
    for (const s of family.samples) assert.ok(!('thread' in s.labels), `${s.name} uses label thread`)
  }
})

const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p))

test('promtool check metrics finds no problem', { skip: PROMTOOL === undefined ? 'promtool is not installed' : false }, async () => {
  const { state, table } = filledState()
  const totals = new CounterTotals(state)
  totals.sample(table)
  const text = await renderMetrics(state, table, totals, { version: '1.2.3', mode: 'workers', startedAtMs: 1_700_000_000_000 })
  const result = spawnSync(PROMTOOL as string, ['check', 'metrics'], { input: text, encoding: 'utf8' })
  assert.equal(result.error, undefined)
  assert.equal(result.status, 0, `promtool: ${result.stdout}${result.stderr}`)
  assert.equal((result.stdout + result.stderr).trim(), '', 'promtool reports no lint problem')
})

test('an empty state renders valid output', async () => {
  const state = SharedState.create(0)
  const totals = new CounterTotals(state)
  totals.sample([])
  const f = parseExposition(await renderMetrics(state, [], totals))
  assert.equal(value(f, 'switchyard_connections_accepted_total'), 0)
  assert.equal(f.get('switchyard_upstream_responses_total')?.samples.length, 0)
})

test('the parser rejects malformed lines (it would catch a rendering bug)', () => {
  const good = '# HELP x_total h\n# TYPE x_total counter\nx_total{a="b"} 1\n'
  parseExposition(good)
  for (const bad of [
    'x_total 1\n', // no HELP/TYPE
    '# HELP x_total h\n# TYPE x_total counter\nx_total{a="b} 1\n',
    '# HELP x_total h\n# TYPE x_total counter\nx_total{a="\\q"} 1\n',
    '# HELP x_total h\n# TYPE x_total counter\nx_total one\n',
    '# HELP h h\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# HELP h h\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
  ]) {
    assert.throws(() => parseExposition(bad), assert.AssertionError, bad)
  }
})

test('uint32 counters that wrap become monotonic 64-bit totals', async () => {
  assert.equal(delta32(0x10, 0xFFFF_FFF0), 0x20)
  assert.equal(delta32(5, 5), 0)

  const state = SharedState.create(0)
  const a = entry(state, 0, '127.0.0.1:8001')
  const totals = new CounterTotals(state)
  state.storeUpstream(a.slot, L.U_REQUESTS, 0xFFFF_FFF0 | 0)
  state.storeHeader(L.H_CONNECTIONS_ACCEPTED, 0xFFFF_FFFF | 0)
  const w = state.claimWorkerSlot(9)
  state.storeWorker(w, L.W_REQUESTS, 0xFFFF_FFFE | 0)
  totals.sample([a])
  assert.equal(totals.upstream(a.address, L.U_REQUESTS), 0xFFFF_FFF0)

  state.addUpstream(a.slot, L.U_REQUESTS, 0x20) // wraps to 0x10
  state.addHeader(L.H_CONNECTIONS_ACCEPTED, 3) // wraps to 2
  state.addWorker(w, L.W_REQUESTS, 4) // wraps to 2
  assert.equal(state.upstream(a.slot, L.U_REQUESTS) >>> 0, 0x10)
  totals.sample([a])
  assert.equal(totals.upstream(a.address, L.U_REQUESTS), 0xFFFF_FFF0 + 0x20)
  assert.equal(totals.header(L.H_CONNECTIONS_ACCEPTED), 0xFFFF_FFFF + 3)
  assert.equal(totals.worker(w, L.W_REQUESTS), 0xFFFF_FFFE + 4)

  // three more full turns, sampled often enough: still exact
  let expected = 0xFFFF_FFF0 + 0x20
  for (let i = 0; i < 12; i++) {
    state.addUpstream(a.slot, L.U_REQUESTS, 0x4000_0000)
    expected += 0x4000_0000
    totals.sample([a])
  }
  assert.equal(totals.upstream(a.address, L.U_REQUESTS), expected)
  const f = parseExposition(await renderMetrics(state, [a], totals))
  assert.equal(value(f, 'switchyard_upstream_requests_total', { upstream: a.address }), expected)
  assert.ok(expected > 2 ** 32 * 3)
  assert.equal(value(f, 'switchyard_connections_accepted_total'), 0xFFFF_FFFF + 3)
})

test('a slot given to a new owner starts from zero instead of reading as a wrap', () => {
  const state = SharedState.create(0)
  const a = entry(state, 0, '127.0.0.1:8001')
  const totals = new CounterTotals(state)
  state.addUpstream(a.slot, L.U_REQUESTS, 100)
  totals.sample([a])
  // reload: a leaves, b takes slot 0 (initUpstreamSlot zeroes it) and serves 7
  const b = entry(state, 0, '127.0.0.1:9009')
  state.addUpstream(b.slot, L.U_REQUESTS, 7)
  totals.sample([b])
  assert.equal(totals.upstream(b.address, L.U_REQUESTS), 7)
  assert.equal(totals.upstream(a.address, L.U_REQUESTS), 0, 'a left the table')

  // a worker replaced after a crash: the new thread zeroes the slot
  const w = state.claimWorkerSlot(5)
  state.addWorker(w, L.W_REQUESTS, 50)
  totals.sample([b])
  state.releaseWorkerSlot(5)
  assert.equal(state.claimWorkerSlot(6), w)
  state.addWorker(w, L.W_REQUESTS, 2)
  totals.sample([b])
  assert.equal(totals.worker(w, L.W_REQUESTS), 2)
  assert.equal(totals.allWorkersTotal(L.W_REQUESTS), 52)
})
