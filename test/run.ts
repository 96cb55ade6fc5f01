/**
 * Test runner: Node 20's `node --test` does not expand globs, so list every
 * *.test.js under dist/test and hand them to it. Arguments filter by substring:
 *   node dist/test/run.js parser e2e/proxy
 */
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { spawnSync } from 'node:child_process'

function collect (dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) collect(path, out)
    else if (name.endsWith('.test.js')) out.push(path)
  }
  return out
}

const filters = process.argv.slice(2)
const files = collect(__dirname, []).filter((file) => {
  const rel = relative(__dirname, file)
  return filters.length === 0 || filters.some((f) => rel.includes(f))
})
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`)
  process.exit(1)
}
const result = spawnSync(process.execPath, ['--test', '--test-reporter=spec', ...files], { stdio: 'inherit' })
process.exit(result.status ?? 1)
