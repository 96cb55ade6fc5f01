/**
 * What the README says of `log.level` and `log.access`: access lines are info lines, so the access
 * log is written only when both `log.access` is on and the level shows info lines; `--log-level`
 * alone (setLogLevel) follows the same rule.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { accessLog, configureLog, logger, setLogLevel } from '../../src/log'

test('log.access with each log.level: the access log is on at info, debug and trace only', () => {
  const expected: Record<string, boolean> = { fatal: false, error: false, warn: false, info: true, debug: true, trace: true, silent: false }
  for (const [level, on] of Object.entries(expected)) {
    configureLog({ level, access: true })
    assert.equal(logger.level, level)
    assert.equal(accessLog.on, on, `level ${level}`)
    configureLog({ level, access: false })
    assert.equal(accessLog.on, false, `level ${level}, log.access false`)
  }
})

test('--log-level alone keeps log.access as configured', () => {
  configureLog({ level: 'info', access: true })
  setLogLevel('warn')
  assert.equal(accessLog.on, false)
  setLogLevel('debug')
  assert.equal(accessLog.on, true)
  configureLog({ level: 'info', access: false })
  setLogLevel('trace')
  assert.equal(accessLog.on, false, 'log.access false stays off')
})
