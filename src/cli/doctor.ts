import { cliLogLevel } from './common.js';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../config.js';
import { inspectDataProtection, type DoctorReport } from '../security/production.js';

interface DoctorFlags {
  data?: string;
  config?: string;
  host?: string;
  json?: boolean;
}

function render(r: DoctorReport): string {
  const lines: string[] = [];
  lines.push(`mode: ${r.env}`);
  lines.push(`data dir: ${r.dataDir}`);
  lines.push('file modes:');
  if (r.modes.length === 0) lines.push('  (data dir does not exist yet)');
  for (const m of r.modes) lines.push(`  ${m.ok ? 'ok  ' : 'OPEN'} ${m.mode} ${m.path}${m.ok ? '' : ` (want ${m.want})`}`);
  lines.push('secrets:');
  for (const s of r.secrets) {
    const from = s.source === 'env' ? s.env : s.source === 'env_file' ? `${s.env}_FILE (${s.path ?? ''})` : s.source === 'data_file' ? `generated file ${s.path ?? ''}` : s.source === 'derived' ? 'derived from the key pepper (secrets.json)' : 'missing';
    lines.push(`  ${s.name}: ${from}${s.source === 'missing' ? '' : `, ${s.bytes} bytes`}${s.weak !== null && s.source !== 'missing' ? ` — weak: ${s.weak}` : ''}`);
  }
  const e = r.encryption;
  const src = e.source === 'env' ? 'BATON_ENCRYPTION_KEYS' : e.source === 'env_file' ? `BATON_ENCRYPTION_KEYS_FILE (${e.path ?? ''})` : e.source === 'data_file' ? `keyring file ${e.path ?? ''}` : 'no keys';
  lines.push(`encryption at rest: ${e.on ? 'on' : 'off'} (${src})${e.on ? `; current key ${e.current ?? ''}; key ids ${e.ids.join(', ')}` : ''}`);
  if (e.error !== undefined) lines.push(`  keyring error: ${e.error}`);
  lines.push(`bind address: ${r.tls.host} (${r.tls.loopback ? 'loopback' : 'beyond loopback'})`);
  lines.push(`TLS: ${r.tls.configured ? 'on (tlsCert, tlsKey)' : 'off'}${r.tls.allowInsecureHttp ? '; allowInsecureHttp set' : ''}`);
  lines.push(`production checks (${r.production.checked ? 'enforced: production mode' : 'advisory: development mode'}):`);
  if (r.production.problems.length === 0) lines.push('  all pass');
  for (const p of r.production.problems) lines.push(`  FAIL ${p}`);
  lines.push(r.ok ? 'doctor: ok' : 'doctor: problems found');
  return lines.join('\n') + '\n';
}

/**
 * `baton doctor`: file modes, secret sources, encryption and key ids, TLS and bind address, and
 * the production checks, for the configuration this command would start with. Changes nothing.
 * Exits 1 when a production check fails in production mode (or a file is open in development).
 */
export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('Check data protection and production readiness of this configuration')
    .option('--data <dir>', 'data directory (default .baton, or BATON_DATA)')
    .option('--config <file>', 'JSON config file')
    .option('--host <host>', 'bind address to check')
    .option('--json', 'print the report as one line of JSON')
    .action((opts: DoctorFlags) => {
      const config = loadConfig({ file: opts.config, flags: { dataDir: opts.data, host: opts.host, logLevel: cliLogLevel() } });
      const report = inspectDataProtection(config, resolve(config.dataDir));
      process.stdout.write(opts.json === true ? JSON.stringify(report) + '\n' : render(report));
      if (!report.ok) process.exitCode = 1;
    });
}
