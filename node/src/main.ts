/**
 * The node process: `tsx node/src/main.ts --id 0 --data-dir /data --peer-template ...`.
 *
 * Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 for invalid configuration (including
 * missing, unreadable or mismatched TLS files, and a --restore-from backup that is missing,
 * truncated or corrupted, or a data directory that already holds data), 3 when
 * the data directory is corrupt or incomplete (the node refuses to start), 1 for anything
 * else, including a storage failure while running.
 */
import pino from 'pino';
import { ConfigError, USAGE, parseNodeConfig } from './io/config.js';
import { CorruptLogError, CorruptSnapshotError, IncompleteDataDirError } from './io/storage.js';
import { MissingBootstrapError, NodeServer, RestoreRefusedError } from './io/server.js';
import { BackupFileError } from './io/backup-file.js';
import { TlsFilesError } from './io/tls.js';

async function main(): Promise<number> {
  let config;
  try {
    config = parseNodeConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`paxos-node: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (config === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const logger = pino({ level: config.logLevel, base: { node: config.id } });
  let node: NodeServer;
  try {
    node = await NodeServer.start(config, {
      logger,
      onFatal: (err) => {
        // An fsync or write error leaves the page cache in an unknown state: never retry it.
        logger.fatal({ err }, 'storage failure; exiting');
        process.exit(1);
      },
    });
  } catch (err) {
    if (err instanceof CorruptLogError || err instanceof CorruptSnapshotError || err instanceof IncompleteDataDirError) {
      logger.fatal({ err: { name: err.name, message: err.message } }, 'refusing to start: data directory damaged');
      process.stderr.write(`paxos-node: refusing to start: ${err.message}\nSee docs/data-dir.md for recovery.\n`);
      return 3;
    }
    if (err instanceof TlsFilesError) {
      logger.fatal({ err: { name: err.name, message: err.message } }, 'refusing to start: TLS files unusable');
      process.stderr.write(`paxos-node: TLS: ${err.message}\n`);
      return 2;
    }
    if (err instanceof BackupFileError || err instanceof RestoreRefusedError) {
      logger.fatal({ err: { name: err.name, message: err.message } }, 'refusing to restore');
      process.stderr.write(`paxos-node: --restore-from: ${err.message}\nNothing was written to the data directory.\n`);
      return 2;
    }
    if (err instanceof MissingBootstrapError) {
      process.stderr.write(`paxos-node: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  return new Promise<number>((resolve) => {
    let signalled = false;
    const stop = (signal: string): void => {
      if (signalled) {
        logger.warn({ signal }, 'second signal; exiting now');
        process.exit(1);
      }
      signalled = true;
      logger.info({ signal }, 'stopping');
      node.shutdown().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`paxos-node: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
