#!/usr/bin/env node
/**
 * The switchyard command: parse flags, load and validate the config (exit 1
 * with every error before binding anything), start, and handle signals.
 */
import { parseArgs, mergeOverrides, baseWithoutFile, usage, type CliOptions } from './cli-args'
import { readConfigFile, resolveConfig, fileErrors } from './config/load'
import { ConfigError } from './errors'
import type { Config } from './config/types'
import { Switchyard } from './primary/server'
import { logger, flushLogs } from './log'
import { version } from './version'

function loadRaw (configPath: string | null, overrides: Record<string, unknown>): Record<string, unknown> {
  const base = configPath !== null ? readConfigFile(configPath) : baseWithoutFile()
  return mergeOverrides(base, overrides)
}

/** Load and validate everything `--check` and start-up check; throws one ConfigError with every problem. */
function loadConfig (options: CliOptions, warnings: string[]): Config {
  const source = options.configPath ?? 'command line'
  const config = resolveConfig(loadRaw(options.configPath, options.overrides), source, warnings)
  const missing = fileErrors(config)
  if (missing.length > 0) throw new ConfigError(missing, source)
  return config
}

async function main (): Promise<void> {
  let options: CliOptions
  try {
    options = parseArgs(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`switchyard: ${(err as Error).message}\n`)
    process.exit(2)
  }
  if (options.help) { process.stdout.write(usage); return }
  if (options.version) { process.stdout.write(`switchyard ${version}\n`); return }
  if (options.configPath === null && options.overrides.upstreams === undefined) {
    // without this, the flags-only path would report a missing "upstreams" key of a file nobody wrote
    process.stderr.write(`switchyard: no configuration: there is no ./lb.json in ${process.cwd()} and no --upstream flag; ` +
      'give --config PATH or --upstream HOST:PORT (see --help)\n')
    process.exit(1)
  }
  const warnings: string[] = []
  let config: Config
  try {
    config = loadConfig(options, warnings)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`switchyard: ${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
  if (options.check) {
    for (const w of warnings) process.stdout.write(`warning: ${w}\n`)
    process.stdout.write('configuration OK\n')
    return
  }
  for (const w of warnings) logger.warn({ source: options.configPath ?? 'command line' }, w)
  let lb: Switchyard
  try {
    lb = await Switchyard.start(config)
  } catch (err) {
    process.stderr.write(`switchyard: cannot start: ${(err as Error).message}\n`)
    await flushLogs()
    process.exit(1)
  }

  // reload (SIGHUP, POST /api/reload): what a valid file still warns about is logged as at start
  lb.configSource = () => {
    const reloadWarnings: string[] = []
    const next = loadConfig(options, reloadWarnings)
    for (const w of reloadWarnings) logger.warn({ source: options.configPath ?? 'command line' }, w)
    return next
  }

  let signals = 0
  const shutdown = (signal: string): void => {
    signals++
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now')
      void flushLogs(50).then(() => process.exit(1))
    }
    logger.info({ signal, drainMs: lb.config.timeouts.drainMs }, 'draining: no new connections, finishing in-flight requests')
    lb.stop().then(async () => { await flushLogs(); process.exit(0) }, async (err: Error) => {
      logger.error({ err: err.message }, 'error while stopping')
      void flushLogs(50).then(() => process.exit(1))
    })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  // logrotate's postrotate: open log.accessFile again (every thread)
  process.on('SIGUSR1', () => { lb.reopenLogs() })
  process.on('SIGHUP', () => {
    try {
      const next = (lb.configSource as () => Config)()
      const result = lb.reload(next)
      if (result.restartNeeded.length > 0) logger.warn({ keys: result.restartNeeded }, 'these changes need a restart and were not applied')
    } catch (err) {
      if (err instanceof ConfigError) logger.error({ errors: err.errors }, 'reload rejected: invalid configuration; still serving the previous one')
      else logger.error({ err: (err as Error).message }, 'reload failed; still serving the previous configuration')
    }
  })
}

void main()
