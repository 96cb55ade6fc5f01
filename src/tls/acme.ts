/**
 * Automatic certificates over ACME (RFC 8555) for `listen[].tls.acme`, on the
 * primary. The protocol is the `acme-client` library's (a maintained client:
 * JWS, nonces, orders, polling); this module decides when to order, answers
 * HTTP-01 (RFC 8555 §8.3) through the threads' plain listeners, stores what
 * it gets, and hands certificates to the threads.
 *
 *   start: stored certificate valid and not due -> use it
 *          otherwise self-signed fallback (logged), then order in the background
 *   order: account key (stored, reused) -> HTTP-01 for every domain -> certificate
 *          -> files in storageDir (mode 0600) -> every thread, for new handshakes
 *   fail:  log the reason, retry with exponential backoff; serving never stops
 *   renew: checked every RENEW_CHECK_MS, ordered renewBeforeDays before notAfter
 *
 * The challenge table lives here; every thread gets a copy (a message to the
 * workers, the context itself in sequential mode) before the ACME server is
 * told to validate, so any worker that gets the validation request answers it.
 */
import { mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, get as httpsGet } from 'node:https'
import { get as httpGet } from 'node:http'
import { generateKeyPairSync } from 'node:crypto'
import * as acme from 'acme-client'
import type { AcmeConfig } from '../config/types'
import { describeCertificate, type CertificateMaterial } from './certificates'
import { selfSignedCertificate } from './self-signed'
import { covered } from './terminator'
import { logger } from '../log'

// acme-client's shared axios instance: its own retries of a failed request (5 attempts, 5 s x attempt)
// would hold an order for over a minute (and end in a TypeError that hides the cause): none, our backoff between orders decides
const acmeSettings = (acme.axios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number, retryDefaultDelay: number } }).acmeSettings
acmeSettings.retryMaxAttempts = 0
acmeSettings.retryDefaultDelay = 1
acme.axios.defaults.timeout = 30_000

const RENEW_CHECK_MS = 12 * 60 * 60 * 1000
const FIRST_RETRY_MS = 2000
const MAX_RETRY_MS = 60 * 60 * 1000

export type ChallengeTable = ReadonlyArray<readonly [token: string, keyAuthorization: string]>

export interface AcmeHooks {
  /** New certificates for listener `index` (issued, loaded from storage, or the fallback). */
  setCertificates (index: number, certificates: CertificateMaterial[]): void
  /** The challenge table changed: send it to every thread; resolves once every thread has it. */
  publishChallenges (table: ChallengeTable): Promise<void>
}

const challenges = new Map<string, string>()

export class AcmeListener {
  readonly index: number
  readonly config: AcmeConfig
  private readonly hooks: AcmeHooks
  private timer: NodeJS.Timeout | null = null
  private retryMs = FIRST_RETRY_MS
  private stopped = false
  private ordering = false
  /** The certificate in use and where it came from ('acme' or 'self-signed'). */
  current: CertificateMaterial | null = null
  lastError = ''
  /** Failed orders since the last success (the backoff doubles with each). */
  failures = 0

  constructor (index: number, config: AcmeConfig, hooks: AcmeHooks) {
    this.index = index
    this.config = config
    this.hooks = hooks
  }

  private get certPath (): string { return join(this.config.storageDir, `${this.config.domains[0]}.crt`) }
  private get keyPath (): string { return join(this.config.storageDir, `${this.config.domains[0]}.key`) }

  /** Load what is stored (or make the fallback); begin() starts ordering once every thread can answer HTTP-01. */
  async start (): Promise<void> {
    mkdirSync(this.config.storageDir, { recursive: true, mode: 0o700 })
    const stored = this.loadStored()
    if (stored !== null) {
      this.use(stored)
      logger.info({ domains: this.config.domains, notAfter: new Date(stored.notAfterMs).toISOString() }, 'ACME: using the stored certificate')
    } else {
      this.use(await selfSignedCertificate(this.config.domains))
      logger.warn({ domains: this.config.domains }, 'ACME: no certificate yet; serving a self-signed fallback until one is issued')
    }
  }

  /** Order now when due, else check again later (called once the listeners and the workers are up). */
  begin (): void {
    this.schedule(this.due() ? 0 : RENEW_CHECK_MS)
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== null) clearTimeout(this.timer)
  }

  /** A certificate must be ordered: none, the fallback, not covering a domain, or inside renewBeforeDays. */
  private due (): boolean {
    const c = this.current
    if (c === null || c.source !== 'acme') return true
    if (!this.config.domains.every((d) => covered([c], d))) return true
    return c.notAfterMs - Date.now() < this.config.renewBeforeDays * 86_400_000
  }

  private loadStored (): CertificateMaterial | null {
    let cert: string
    let key: string
    try {
      cert = readFileSync(this.certPath, 'utf8')
      key = readFileSync(this.keyPath, 'utf8')
    } catch { return null }
    try {
      return { ...describeCertificate(cert, key, this.certPath, this.keyPath), source: 'acme' }
    } catch (err) {
      logger.warn({ file: this.certPath, err: (err as Error).message }, 'ACME: the stored certificate cannot be used; ordering a new one')
      return null
    }
  }

  private use (material: CertificateMaterial): void {
    this.current = material
    this.hooks.setCertificates(this.index, [material])
  }

  private schedule (ms: number): void {
    if (this.stopped) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = setTimeout(() => { void this.tick() }, ms)
    this.timer.unref()
  }

  private async tick (): Promise<void> {
    if (this.stopped || this.ordering) return
    if (!this.due()) { this.schedule(RENEW_CHECK_MS); return }
    this.ordering = true
    try {
      const material = await this.order()
      if (this.stopped) return
      this.use(material)
      this.retryMs = FIRST_RETRY_MS
      this.lastError = ''
      this.failures = 0
      logger.info({ domains: this.config.domains, notAfter: new Date(material.notAfterMs).toISOString(), issuer: material.issuer }, 'ACME: certificate issued and in use for new handshakes')
      this.schedule(RENEW_CHECK_MS)
    } catch (err) {
      this.lastError = describeError(err)
      this.failures++
      logger.error({ domains: this.config.domains, directoryUrl: this.config.directoryUrl, err: this.lastError, retryInMs: this.retryMs }, 'ACME: ordering a certificate failed; still serving the current one, will retry')
      this.schedule(this.retryMs)
      this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2)
    } finally {
      this.ordering = false
    }
  }

  private async order (): Promise<CertificateMaterial> {
    const cfg = this.config
    // the ACME server's own HTTPS endpoint may be signed by a private CA (a private or test ACME server)
    const agent = new Agent(cfg.caFile !== undefined ? { ca: readFileSync(cfg.caFile, 'utf8') } : {})
    acme.axios.defaults.httpsAgent = agent
    // acme-client reports a server it cannot reach as a TypeError: ask once ourselves for a real reason
    await reachable(cfg.directoryUrl, agent)
    // acme-client's own retries (polling, badNonce) stay short: the backoff between orders is ours
    const client = new acme.Client({ directoryUrl: cfg.directoryUrl, accountKey: this.accountKey(), backoffAttempts: 5, backoffMin: 200, backoffMax: 2000 })
    const [key, csr] = await acme.crypto.createCsr({ commonName: cfg.domains[0], altNames: [...cfg.domains] })
    const cert = await client.auto({
      csr,
      email: cfg.email,
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      // acme-client would first fetch the token itself from port 80 of the domain: the ACME server's validation is the check
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        challenges.set(challenge.token, keyAuthorization)
        await this.hooks.publishChallenges([...challenges])
      },
      challengeRemoveFn: async (_authz, challenge) => {
        challenges.delete(challenge.token)
        await this.hooks.publishChallenges([...challenges])
      },
    })
    const keyPem = key.toString()
    const material = { ...describeCertificate(cert, keyPem, this.certPath, this.keyPath), source: 'acme' }
    writePrivate(this.keyPath, keyPem)
    writePrivate(this.certPath, cert)
    return material
  }

  /** The account key, made once and stored (0600) so restarts reuse the account. */
  private accountKey (): Buffer {
    const path = join(this.config.storageDir, 'account.key')
    try {
      return readFileSync(path)
    } catch {
      return createAndStore(path)
    }
  }
}

function createAndStore (path: string): Buffer {
  const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  writePrivate(path, pem)
  return Buffer.from(pem)
}

function writePrivate (path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 })
  chmodSync(path, 0o600) // an existing file keeps its mode on write
}

/** A reason for the log: node's network errors to a dual-stack name arrive as an AggregateError without a message. */
function describeError (err: unknown): string {
  const e = err as Error & { code?: string, errors?: Error[] }
  if (e.message !== undefined && e.message !== '') return e.message
  const inner = e.errors?.map((x) => x.message).join('; ')
  return inner !== undefined && inner !== '' ? inner : (e.code ?? String(err))
}

/** GET the directory once: throws with the network reason (ECONNREFUSED, a certificate error, a timeout). */
async function reachable (url: string, agent: Agent): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet
    const req = get(url, url.startsWith('https:') ? { agent, timeout: 10_000 } : { timeout: 10_000 }, (res) => {
      res.resume()
      if ((res.statusCode ?? 0) >= 400) reject(new Error(`the ACME directory ${url} answered ${res.statusCode ?? 0}`))
      else resolve()
    })
    req.on('timeout', () => { req.destroy(new Error(`the ACME directory ${url} did not answer within 10 s`)) })
    req.on('error', (err) => { reject(new Error(`cannot reach the ACME directory ${url}: ${describeError(err)}`)) })
  })
}
