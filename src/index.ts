/** Programmatic API: start a switchyard from a config object. */
import { resolveConfig } from './config/load'
import { Switchyard } from './primary/server'
import { logger } from './log'

export { Switchyard } from './primary/server'
export { resolveConfig, loadConfigFile } from './config/load'
export type { Config } from './config/types'
export { ConfigError, SwitchyardError, errorCatalogue } from './errors'

/** Validate `raw` (defaults applied) and start listening. */
export async function start (raw: Record<string, unknown>): Promise<Switchyard> {
  const warnings: string[] = []
  const config = resolveConfig(raw, 'configuration', warnings)
  for (const w of warnings) logger.warn(w)
  return await Switchyard.start(config)
}
