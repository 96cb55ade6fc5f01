/**
 * The client connection table (src/net/client-table.ts) on one thread, worker slots standing in for threads:
 * counts per address over every slot, the limit counted before it is compared, entries given back and taken
 * by another address, a dead worker's lanes zeroed, a full window admitting uncounted, a lock left behind
 * admitting uncounted rather than spinning.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SharedState } from '../../src/shared/state'
import { CLIENT_ENTRY_INTS, CLIENT_TABLE_ENTRIES, CLIENT_TABLE_OFFSET } from '../../src/shared/layout'
import { acquireClient, releaseClient, releaseClientLanes, clientCount, seedClientTable, CLIENT_REFUSED, CLIENT_UNCOUNTED } from '../../src/net/client-table'

function fresh (): SharedState {
  const state = SharedState.create(0)
  seedClientTable(state)
  return state
}

test('connections of one address are counted over every slot; the limit holds across slots; others are apart', () => {
  const state = fresh()
  const a = acquireClient(state, 0, '192.0.2.1', 3)
  const b = acquireClient(state, 5, '192.0.2.1', 3)
  const c = acquireClient(state, 9, '192.0.2.1', 3)
  assert.ok(a >= 0 && a === b && b === c, `one entry: ${a} ${b} ${c}`)
  assert.equal(clientCount(state, a), 3)
  assert.equal(acquireClient(state, 5, '192.0.2.1', 3), CLIENT_REFUSED)
  assert.equal(clientCount(state, a), 3, 'a refused connection leaves no count behind')
  // the IPv4-mapped spelling is the same client
  assert.equal(acquireClient(state, 0, '::ffff:192.0.2.1', 3), CLIENT_REFUSED)
  const other = acquireClient(state, 0, '192.0.2.2', 3)
  assert.ok(other >= 0 && other !== a)
  releaseClient(state, a, 5)
  assert.equal(acquireClient(state, 0, '192.0.2.1', 3), a, 'room again once one closed')
})

test('an entry whose connections all closed is taken by another address; the first gets a new one', () => {
  const state = fresh()
  const first = acquireClient(state, 1, '198.51.100.7', 2)
  releaseClient(state, first, 1)
  assert.equal(clientCount(state, first), 0)
  // fill the whole table's worth of addresses until one lands on `first` again
  let reused = -1
  for (let i = 0; i < 20_000 && reused === -1; i++) if (acquireClient(state, 2, `2001:db8::${i.toString(16)}`, 2) === first) reused = i
  assert.ok(reused !== -1, 'the freed entry was re-tagged')
  const again = acquireClient(state, 1, '198.51.100.7', 2)
  assert.ok(again !== first, 'the old address does not count on its former entry')
})

test('a dead worker\'s lanes are zeroed: its connections stop counting, the others stay', () => {
  const state = fresh()
  const e = acquireClient(state, 3, '203.0.113.9', 2)
  assert.equal(acquireClient(state, 4, '203.0.113.9', 2), e)
  assert.equal(acquireClient(state, 4, '203.0.113.9', 2), CLIENT_REFUSED)
  releaseClientLanes(state, 4)
  assert.equal(clientCount(state, e), 1, 'slot 3\'s connection still counts')
  assert.equal(acquireClient(state, 6, '203.0.113.9', 2), e)
})

test('a window whose every entry holds open connections admits uncounted; a lock left set admits uncounted too', () => {
  const state = fresh()
  // occupy every entry of the table with a live client: then any new address finds a full window
  let live = 0
  for (let i = 0; live < CLIENT_TABLE_ENTRIES && i < 200_000; i++) if (acquireClient(state, 0, `10.${i >> 16 & 255}.${i >> 8 & 255}.${i & 255}`, 1) >= 0) live++
  assert.equal(live, CLIENT_TABLE_ENTRIES, 'every entry taken')
  assert.equal(acquireClient(state, 0, '192.0.2.200', 1), CLIENT_UNCOUNTED)

  const locked = fresh()
  const e = acquireClient(locked, 0, '192.0.2.50', 5)
  const keyWord = CLIENT_TABLE_OFFSET + 1 + e * CLIENT_ENTRY_INTS
  Atomics.store(locked.i32, keyWord, Atomics.load(locked.i32, keyWord) | 1) // a thread stopped inside a re-tag
  assert.equal(acquireClient(locked, 1, '192.0.2.50', 5), CLIENT_UNCOUNTED)
})
