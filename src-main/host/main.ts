/**
 * Runs the browser host until interrupted: `node dist/main/src-main/host/main.js [--port N]`.
 * `npm start` runs this when Electron's binary is not installed.
 */
import * as nodePath from 'node:path';
import { hostConfigDir } from '../services/recent';
import { startHost } from './server';

function parsePort(argv: string[]): number {
  const i = argv.indexOf('--port');
  if (i < 0) return 0;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`diskwright: --port expects a number from 0 to 65535, not '${argv[i + 1] ?? ''}'`);
    process.exit(1);
  }
  return n;
}

async function main(): Promise<void> {
  const host = await startHost({ port: parsePort(process.argv.slice(2)), recentFile: nodePath.join(hostConfigDir(), 'recent.json') });
  console.log(`diskwright is ready. Open this address in a browser on this machine:\n\n    ${host.url}\n`);
  console.log(
    'The address includes a key made for this run; without it the page will not open. Whoever has it can read and write\n' +
      'your files as you: share it with no one. Press Ctrl+C to stop.',
  );
  const stop = () => {
    void host.close().finally(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(`diskwright: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
