import { readFileSync } from 'node:fs'
import { join } from 'node:path'

/** package.json's version; dist/src/version.js sits two levels below the package root. */
export const version: string = (JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version
