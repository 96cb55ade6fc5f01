/** Programmatic API: start a switchyard from a config object. */
import { resolveConfig } from './config/load'
import { Switchyard } from './primary/server'

export { Switchyard } from './primary/server'
export { resolveConfig, loadConfigFile } from './config/load'
export type { Config } from './config/types'
export { ConfigError, SwitchyardError, errorCatalogue } from './errors'

/** Validate `raw` (defaults applied) and start listening. */
export async function start (raw: Record<string, unknown>): Promise<Switchyard> {
  return await Switchyard.start(resolveConfig(raw))
}
