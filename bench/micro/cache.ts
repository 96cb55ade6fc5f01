/**
 * SharedCacheStore lookup (hit) and store, for a 1 KB and a 100 KB entry,
 * next to the naive way to share responses between threads: serialise each
 * entry to a JSON string (binary body as base64) and keep it in a Map, which
 * is what shipping entries through postMessage or a string store amounts to;
 * every hit then parses and decodes. A per-thread Map of Buffers (no copy, no
 * sharing: each thread would hold its own copy of every entry) is listed as
 * the floor a shared store cannot reach, since it must copy out.
 */
import { SharedCacheStore, CacheEntry, type CacheEntryInput } from '../../src/cache/store'
import { varyValues, type HeaderSource } from '../../src/cache/key'
import { SharedState } from '../../src/shared/state'
import type { MicroCase, MicroSuite } from './types'

const NOW = 1_760_000_000_000
const KEYS = 256
/** Written by every case so the JIT cannot drop the work. */
export let sink = 0

function input (size: number): CacheEntryInput {
  const body = Buffer.alloc(size, 0x61)
  return {
    status: 200,
    head: Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${size}\r\nETag: "v1"\r\nCache-Control: max-age=60\r\n\r\n`, 'latin1'),
    body,
    storedAtMs: NOW,
    responseDateMs: NOW,
    initialAgeSec: 0,
    freshForMs: 60_000,
    etag: '"v1"',
    lastModified: null,
    varyNames: null,
    varyValues: null,
  }
}

const keys = Array.from({ length: KEYS }, (_, i) => `example.com /assets/${i}.js?v=3`)

/** The naive shared cache: one JSON string per entry. */
class NaiveJsonCache {
  private readonly entries = new Map<string, string>()
  store (key: string, e: CacheEntryInput): void {
    this.entries.set(key, JSON.stringify({
      status: e.status,
      head: e.head.toString('latin1'),
      body: e.body.toString('base64'),
      storedAtMs: e.storedAtMs,
      responseDateMs: e.responseDateMs,
      initialAgeSec: e.initialAgeSec,
      freshForMs: e.freshForMs,
      etag: e.etag,
      lastModified: e.lastModified,
    }))
  }

  lookup (key: string, out: CacheEntry): boolean {
    const text = this.entries.get(key)
    if (text === undefined) return false
    const o = JSON.parse(text) as { status: number, head: string, body: string, freshForMs: number, etag: string | null }
    out.status = o.status
    out.head = Buffer.from(o.head, 'latin1')
    out.body = Buffer.from(o.body, 'base64')
    out.freshForMs = o.freshForMs
    out.etag = o.etag
    return true
  }
}

function newStore (maxBytes: number): SharedCacheStore {
  return new SharedCacheStore(SharedCacheStore.allocate(maxBytes, 1 << 20), SharedState.create(0))
}

function lookupSuite (size: number, label: string): MicroSuite {
  const e = input(size)
  // an arena that holds every key: all lookups hit
  const shared = newStore(KEYS * (size + 1024) * 2)
  const naive = new NaiveJsonCache()
  const local = new Map<string, CacheEntryInput>()
  for (const key of keys) { shared.store(key, e); naive.store(key, e); local.set(key, e) }
  const out = new CacheEntry()
  let n = 0
  let m = 0
  let l = 0
  const cases: MicroCase[] = [
    { name: 'SharedCacheStore.lookup', fn: () => { if (shared.lookup(keys[n++ & (KEYS - 1)], NOW, out)) sink += out.body.length } },
    { name: 'naive Map<string, JSON> + parse', fn: () => { if (naive.lookup(keys[m++ & (KEYS - 1)], out)) sink += out.body.length } },
    { name: 'per-thread Map<string, Buffer> (unshared)', fn: () => { const hit = local.get(keys[l++ & (KEYS - 1)]); if (hit !== undefined) sink += hit.body.length } },
  ]
  return { name: `lookup hit: ${label} entry`, cases }
}

function storeSuite (size: number, label: string): MicroSuite {
  const e = input(size)
  // a ring a quarter the size of the key set: stores evict as they go
  const shared = newStore(Math.max(1 << 20, (KEYS * size) >> 2))
  const naive = new NaiveJsonCache()
  let n = 0
  let m = 0
  const cases: MicroCase[] = [
    { name: 'SharedCacheStore.store (evicting)', fn: () => { if (shared.store(keys[n++ & (KEYS - 1)], e)) sink++ } },
    { name: 'naive Map<string, JSON> + stringify', fn: () => { naive.store(keys[m++ & (KEYS - 1)], e); sink++ } },
  ]
  return { name: `store: ${label} entry`, cases }
}

function varySuite (): MicroSuite {
  const names = ['accept-encoding']
  const requests: HeaderSource[] = ['gzip', 'br', 'identity'].map((v) => ({ header: (name: string) => name === 'accept-encoding' ? v : null }))
  const shared = newStore(16 << 20)
  const plain = newStore(16 << 20)
  for (const key of keys) {
    plain.store(key, input(1024))
    for (const req of requests) shared.store(key, { ...input(1024), varyNames: names, varyValues: varyValues(names, req) })
  }
  const out = new CacheEntry()
  let n = 0
  let m = 0
  return {
    name: 'lookup hit: 1 KB entry with Vary (marker -> variant)',
    cases: [
      { name: 'SharedCacheStore.lookup, Vary: accept-encoding', fn: () => { const i = n++; if (shared.lookup(keys[i & (KEYS - 1)], NOW, out, requests[i % 3])) sink += out.body.length } },
      { name: 'SharedCacheStore.lookup, no Vary (baseline)', fn: () => { if (plain.lookup(keys[m++ & (KEYS - 1)], NOW, out)) sink += out.body.length } },
    ],
  }
}

export const suites: MicroSuite[] = [
  lookupSuite(1024, '1 KB'),
  lookupSuite(100 * 1024, '100 KB'),
  storeSuite(1024, '1 KB'),
  storeSuite(100 * 1024, '100 KB'),
  varySuite(),
]
