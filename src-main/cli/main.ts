/**
 * diskwright: the qemu-img-style command line. Same names, flags and exit codes as qemu-img so that people's
 * habits and scripts carry over. Every failure is one plain line on stderr and a non-zero exit.
 */
import { promises as fsp } from 'node:fs';
import { DiskError, toDiskError } from '../block/errors';
import { setForceShare } from '../block/lock';
import { useBlockingIo } from '../block/file';
import { DRIVERS, driverFor } from '../registry';
import { parseSize } from '../block/sizes';
import { has, last, parseArgs, type ParsedArgs } from './args';
import { BACKING, formatArg, need, optionsArg, outputArg, parseOffset, progressPrinter, type Io } from './common';
import { checkJson, checkText, infoText, mapJson, mapText, snapshotTable, toJson } from './output';
import { describeOptions, splitOptionString } from '../services/options';
import { forgetAllKeys, setKeyAsker } from '../keyring';
import { keyRefusal } from '../crypto/secret';
import { askPassphrase, canPrompt } from './prompt';
import { streamFor, writeText } from './stdio';

// Each command loads its service when it runs (`await import`), not at start-up: `info` of a small image should
// cost little more than a bare node start, and compiling convert, snapshot, compare... for it would not.

const USAGE = `usage: diskwright COMMAND [options]

Commands (flags as in qemu-img):
  info     [-f FMT] [--output human|json] [--backing-chain] IMAGE
  create   -f FMT [-o OPTIONS] [-b BACKING [-F FMT]] IMAGE [SIZE]
  convert  [-f FMT] (-O FMT | --target azure|esxi|hyperv|virtualbox|kvm) [-o OPTIONS] [-c | -C] [-p] [-t CACHE] [-B BACKING [-F FMT]] [-n]
           [-l SNAPSHOT | --keep-snapshots] [--accept-changed-backing] [--backing-file PATH] SRC DST
  check    [-f FMT] [-r leaks|all] [--output human|json] IMAGE
  compare  [-f FMT] [-F FMT] [-s] [-p] [--accept-changed-backing] [--backing-file PATH] A B
  map      [-f FMT] [--output human|json] IMAGE
  measure  [--output human|json] [-f FMT] -O FMT [-o OPTIONS] [--size SIZE | IMAGE]
  snapshot [-l | -c NAME | -a NAME | -d NAME | --diff A [B] [--output human|json]] [-f FMT] IMAGE
  resize   [-f FMT] [--shrink] IMAGE [+|-]SIZE
  read     [-f FMT] IMAGE OFFSET LENGTH [OUTFILE]
  write    [-f FMT] IMAGE OFFSET INFILE
  discard  [-f FMT] [-q] IMAGE OFFSET LENGTH
  commit   [-f FMT] [-b BASE] [-d] [-p] [-q] [--accept-changed-backing] [--backing-file PATH] IMAGE
  rebase   [-f FMT] [-F FMT] -b BACKING [-u] [-p] [-q] IMAGE
  lint     --target azure|esxi|hyperv|virtualbox|kvm [--fix] [--output human|json] IMAGE
  checksum [-f FMT] [-p] [--output human|json] IMAGE   (one hash of what the guest sees, in any format)
  sparsify [-f FMT] [-O FMT] [-o OPTIONS] [-c] [-p] [-q] [-t CACHE] [--output human|json] SRC DST
  sparsify --in-place [-f FMT] [-p] [-q] [--output human|json] IMAGE   (give back what the file systems freed)
  sparsify --dry-run [--in-place] [-f FMT] [--output human|json] IMAGE   (what either would give back, per partition)

Encrypted images (qcow2, LUKS or the old AES), as in qemu-img:
  --object secret,id=ID,data=STRING|file=PATH[,format=raw|base64]   (before or after the command's own flags)
  create/convert -O qcow2 -o encrypt.format=luks|aes,encrypt.key-secret=ID[,encrypt.iter-time=MS,...]
  --image-opts driver=qcow2,file.filename=IMAGE,encrypt.key-secret=ID[,backing.encrypt.key-secret=ID]
               (in place of IMAGE; convert's target: --target-image-opts with -n)
  On a terminal, a passphrase that was not given is asked for without echo.

Inside a disk (read-only, no mounting):
  partitions [-f FMT] [--output human|json] IMAGE
  ls       [-f FMT] [--output human|json] IMAGE[:PARTITION]:/PATH
  cp       [-f FMT] [-p] [-q] IMAGE[:PARTITION]:/PATH DEST

Formats:
${DRIVERS.map((d) => `  ${d.name.padEnd(9)}${d.description}${d.create ? '' : ' (creating it: not yet in this build)'}`).join('\n')}
'create -f FMT -o help' lists a format's options.
Exit codes: 0 success, 1 error; check: 2 corruptions, 3 leaks, 63 no check for the format; compare: 1 differ, 2 error.`;

async function cmdInfo(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '--output'], boolean: ['--backing-chain', '-U', '--force-share'] }, 'info');
  need(p, 1, 'info', 'an image file name');
  const format = formatArg(p);
  const output = outputArg(p);
  const { inspectImage } = await import('../services/info');
  const info = await inspectImage(p.positional[0], { format, backingChain: has(p, '--backing-chain'), backingPolicy: BACKING });
  if (output === 'json') {
    if (has(p, '--backing-chain')) {
      const chain = [];
      for (let i: typeof info | undefined = info; i; i = i['backing-image']) {
        const { ['backing-image']: _omit, ...rest } = i;
        chain.push(rest);
      }
      io.out(toJson(chain));
    } else io.out(toJson(info));
  } else {
    const parts: string[] = [];
    for (let i: typeof info | undefined = info; i; i = i['backing-image']) parts.push(infoText(i));
    io.out(parts.join('\n\n'));
  }
  return 0;
}

async function cmdCreate(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-o', '-b', '-F'], boolean: ['-q', '-u'] }, 'create');
  const format = last(p, '-f') ?? 'raw';
  const driver = driverFor(format);
  const opts = optionsArg(p);
  if ('help' in opts || opts['?'] !== undefined) {
    io.out(describeOptions(format, driver.createOptions));
    return 0;
  }
  need(p, 1, 'create', 'an image file name');
  const [path, sizeText] = p.positional;
  const backingFormat = formatArg(p, '-F');
  const backingFile = last(p, '-b') ?? opts.backing_file;
  delete opts.backing_file;
  const bf = backingFormat ?? opts.backing_fmt;
  delete opts.backing_fmt;
  const size = sizeText !== undefined ? parseSize(sizeText, 'image size') : opts.size !== undefined ? parseSize(opts.size, 'image size') : undefined;
  delete opts.size;
  await (await import('./image-opts')).takeTargetKey(path, opts);
  const { createImage } = await import('../services/create');
  await createImage({ path, format, size, options: opts, backingFile, backingFormat: bf });
  if (!has(p, '-q')) {
    const shown = Object.entries(opts).map(([k, v]) => ` ${k}=${v}`).join('');
    io.out(`Formatting '${path}', fmt=${format}${shown}${size !== undefined ? ` size=${size}` : ''}${backingFile ? ` backing_file=${backingFile}` : ''}`);
  }
  return 0;
}

async function cmdConvert(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-O', '-o', '-B', '-F', '-S', '-m', '-t', '-T', '-l', '-s', '--backing-file', '--target'], boolean: ['-c', '-C', '-p', '-n', '-q', '-U', '-W', '--keep-snapshots', '--accept-changed-backing'] }, 'convert');
  if (p.positional.length < 2) throw new DiskError('EINVAL', 'convert: expecting a source and a target file name');
  if (p.positional.length > 2) throw new DiskError('EINVAL', 'convert: several sources are not supported; give one source and one target');
  const sourceFormat = formatArg(p);
  const [source, target] = p.positional;
  // --target NAME (a hypervisor or cloud): the format, options and size come from the target (cli/targets.ts).
  const targeted = last(p, '--target') !== undefined ? await (await import('./targets')).planTargetedConvert(p, source, sourceFormat) : undefined;
  const targetFormat = targeted?.targetFormat ?? last(p, '-O') ?? 'raw';
  driverFor(targetFormat);
  for (const note of targeted?.notes ?? []) io.err(`diskwright: ${note}`);
  const options = targeted?.options ?? optionsArg(p);
  if (!has(p, '-n')) await (await import('./image-opts')).takeTargetKey(target, options, has(p, '-c'));
  if (has(p, '-C') && last(p, '-S') !== undefined) throw new DiskError('EINVAL', 'Cannot enable copy offloading when -S is used');
  const keepSnapshots = has(p, '--keep-snapshots');
  const convert = keepSnapshots ? (await import('../services/convert-snapshots')).convertKeepingSnapshots : (await import('../services/convert')).convertImage;
  await convert({
    keepSnapshots,
    sourceSnapshot: snapshotParam(p),
    source,
    sourceFormat,
    target,
    targetFormat,
    options,
    targetSize: targeted?.targetSize,
    compress: has(p, '-c'),
    // -C: always; -S (a zero-detection grain to honour): never; else the service's default (reflinks only).
    copyOffload: has(p, '-C') ? true : last(p, '-S') !== undefined ? false : undefined,
    backingFile: last(p, '-B'),
    acceptChangedBacking: has(p, '--accept-changed-backing'),
    backingOverride: last(p, '--backing-file'),
    backingFormat: formatArg(p, '-F'),
    existingTarget: has(p, '-n'),
    cache: last(p, '-t'),
    backingPolicy: BACKING,
    signal: io.signal,
    onProgress: progressPrinter(io, has(p, '-p')),
    onNotice: (text) => io.err(`diskwright: ${text}`),
  });
  if (has(p, '-p')) io.err(`    (100.00/100%)\n`);
  return 0;
}

/**
 * convert -l as qemu-img takes it: `snapshot.id=ID`, `snapshot.name=NAME` (both: the id must have that name), or a
 * bare id or name; -s SNAPSHOT is qemu-img's older spelling.
 */
function snapshotParam(p: ParsedArgs): string | undefined {
  const text = last(p, '-l') ?? last(p, '-s');
  if (text === undefined || !/^snapshot\.(id|name)=/.test(text)) return text;
  const fields = new Map(splitOptionString(text).map(([k, v]) => [k, v ?? '']));
  for (const k of fields.keys()) if (k !== 'snapshot.id' && k !== 'snapshot.name') throw new DiskError('EINVAL', `convert -l: unknown field '${k}' (snapshot.id or snapshot.name)`);
  return fields.get('snapshot.id') ?? fields.get('snapshot.name');
}

async function cmdCheck(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-r', '--output'], boolean: ['-q', '-U'] }, 'check');
  need(p, 1, 'check', 'an image file name');
  const format = formatArg(p);
  const output = outputArg(p);
  const r = last(p, '-r');
  if (r !== undefined && r !== 'leaks' && r !== 'all') throw new DiskError('EINVAL', `-r must be 'leaks' or 'all', not '${r}'`);
  const { checkExitCode, checkImage } = await import('../services/check');
  let report;
  try {
    report = await checkImage({ path: p.positional[0], format, repair: r, backingPolicy: BACKING, signal: io.signal });
  } catch (err) {
    const e = toDiskError(err, p.positional[0]);
    if (e.code === 'EUNSUPPORTED' && /does not support checks/.test(e.message)) {
      io.err(`diskwright: ${e.message}`);
      return 63;
    }
    throw e;
  }
  // As qemu-img: one line per problem on stderr, the report (human or JSON) on stdout.
  if (output === 'json') {
    for (const p of report.problems) io.err(p.message);
    io.out(checkJson(report));
  } else io.out(checkText(report, (line) => io.err(line)));
  return checkExitCode(report);
}

async function cmdCompare(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-F', '-T', '--backing-file'], boolean: ['-s', '-p', '-q', '-U', '--accept-changed-backing'] }, 'compare');
  // A usage error exits 1 as in qemu-img; only failures to open or read the images exit 2.
  if (p.positional.length !== 2) throw new DiskError('EINVAL', 'compare: expecting two image file names');
  try {
    const { compareImages } = await import('../services/compare');
    const res = await compareImages({
      a: p.positional[0],
      b: p.positional[1],
      formatA: formatArg(p),
      formatB: formatArg(p, '-F'),
      strict: has(p, '-s'),
      backingPolicy: BACKING,
      acceptChangedBacking: has(p, '--accept-changed-backing'),
      backingOverride: last(p, '--backing-file'),
      signal: io.signal,
    });
    if (!has(p, '-q')) io.out(res.messages.join('\n'));
    return res.identical ? 0 : 1;
  } catch (err) {
    io.err(`diskwright: ${toDiskError(err).message}`);
    return 2;
  }
}

async function cmdMap(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '--output'], boolean: ['-U'] }, 'map');
  need(p, 1, 'map', 'an image file name');
  const { mapImage } = await import('../services/map');
  const entries = await mapImage(p.positional[0], { format: formatArg(p), backingPolicy: BACKING, signal: io.signal });
  io.out(outputArg(p) === 'json' ? mapJson(entries) : mapText(entries));
  return 0;
}

async function cmdSnapshot(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '-c', '-a', '-d', '--diff', '--output'], boolean: ['-l', '-q', '-U'] }, 'snapshot');
  const format = formatArg(p);
  const actions = ['-l', '-c', '-a', '-d', '--diff'].filter((f) => has(p, f));
  if (actions.length > 1) throw new DiskError('EINVAL', 'snapshot: give only one of -l, -c, -a, -d, --diff');
  const action = actions[0] ?? '-l';
  const { applySnapshot, createSnapshot, deleteSnapshot, diffSnapshots, listSnapshots } = await import('../services/snapshot');
  if (action === '--diff') {
    // snapshot --diff A [B] IMAGE: B defaults to the current state.
    if (p.positional.length < 1 || p.positional.length > 2) throw new DiskError('EINVAL', 'snapshot --diff: expecting [B] and an image file name');
    const image = p.positional[p.positional.length - 1];
    const b = p.positional.length === 2 ? p.positional[0] : undefined;
    const ranges = await diffSnapshots(image, last(p, '--diff')!, b, format);
    if (outputArg(p) === 'json') io.out(toJson(ranges));
    else io.out(ranges.map((r) => `${r.start} ${r.length}`).join('\n'));
    return 0;
  }
  need(p, 1, 'snapshot', 'an image file name');
  const image = p.positional[0];
  switch (action) {
    case '-l': {
      const list = await listSnapshots(image, format);
      if (list.length) io.out(snapshotTable(list).join('\n'));
      return 0;
    }
    case '-c':
      await createSnapshot(image, last(p, '-c')!, format);
      return 0;
    case '-a':
      await applySnapshot(image, last(p, '-a')!, format);
      return 0;
    default:
      await deleteSnapshot(image, last(p, '-d')!, format);
      return 0;
  }
}

async function cmdResize(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f', '--preallocation'], boolean: ['--shrink', '-q'] }, 'resize');
  // A negative size ("-1G") would look like a flag; qemu-img takes it after the image name.
  if (p.positional.length !== 2) throw new DiskError('EINVAL', 'resize: expecting an image file name and a size');
  const [image, sizeText] = p.positional;
  let size: number | { delta: number };
  if (sizeText.startsWith('+')) size = { delta: parseSize(sizeText.slice(1)) };
  else if (sizeText.startsWith('-')) size = { delta: -parseSize(sizeText.slice(1)) };
  else size = parseSize(sizeText);
  const { resizeImage } = await import('../services/resize');
  await resizeImage({ path: image, format: formatArg(p), size, shrink: has(p, '--shrink'), backingPolicy: BACKING });
  if (!has(p, '-q')) io.out('Image resized.'); // as qemu-img says it
  return 0;
}

async function cmdRead(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f'], boolean: ['-U'] }, 'read');
  if (p.positional.length < 3 || p.positional.length > 4) throw new DiskError('EINVAL', 'read: expecting IMAGE OFFSET LENGTH [OUTFILE]');
  const [image, off, len, outFile] = p.positional;
  const { readBytes } = await import('../services/rw');
  const data = await readBytes({ path: image, format: formatArg(p), offset: parseOffset(off, 'offset'), length: parseOffset(len, 'length'), backingPolicy: BACKING });
  if (outFile !== undefined) await fsp.writeFile(outFile, data).catch((e) => { throw toDiskError(e, outFile); });
  else await io.writeOut(data);
  return 0;
}

async function cmdWrite(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f'], boolean: [] }, 'write');
  if (p.positional.length !== 3) throw new DiskError('EINVAL', 'write: expecting IMAGE OFFSET INFILE (- for standard input)');
  const [image, off, inFile] = p.positional;
  const data = inFile === '-' ? await io.readIn() : await fsp.readFile(inFile).catch((e) => { throw toDiskError(e, inFile); });
  const { writeBytes } = await import('../services/rw');
  await writeBytes({ path: image, format: formatArg(p), offset: parseOffset(off, 'offset'), data, backingPolicy: BACKING });
  return 0;
}

async function cmdDiscard(argv: string[], io: Io): Promise<number> {
  const p = parseArgs(argv, { withValue: ['-f'], boolean: ['-q'] }, 'discard');
  if (p.positional.length !== 3) throw new DiskError('EINVAL', 'discard: expecting IMAGE OFFSET LENGTH');
  const [image, off, len] = p.positional;
  const length = parseOffset(len, 'length');
  const { discardBytes } = await import('../services/rw');
  const r = await discardBytes({ path: image, format: formatArg(p), offset: parseOffset(off, 'offset'), length, backingPolicy: BACKING });
  // qemu-io reports the whole range as discarded; we say which part was released.
  if (r.wholeUnitBytes < length && !has(p, '-q')) {
    io.out(`Discarded ${r.wholeUnitBytes} of ${length} bytes: only whole ${r.granularity}-byte clusters are released; the partial clusters at the edges keep their data.`);
  }
  return 0;
}

const COMMANDS: Record<string, (argv: string[], io: Io) => Promise<number>> = {
  info: cmdInfo,
  create: cmdCreate,
  convert: cmdConvert,
  check: cmdCheck,
  compare: cmdCompare,
  map: cmdMap,
  measure: async (argv, io) => (await import('./measure')).cmdMeasure(argv, io),
  snapshot: cmdSnapshot,
  resize: cmdResize,
  read: cmdRead,
  write: cmdWrite,
  discard: cmdDiscard,
  commit: async (argv, io) => (await import('./backing')).cmdCommit(argv, io),
  rebase: async (argv, io) => (await import('./backing')).cmdRebase(argv, io),
  checksum: async (argv, io) => (await import('./checksum')).cmdChecksum(argv, io),
  lint: async (argv, io) => (await import('./targets')).cmdLint(argv, io),
  partitions: async (argv, io) => (await import('./inside')).cmdPartitions(argv, io),
  ls: async (argv, io) => (await import('./inside')).cmdLs(argv, io),
  cp: async (argv, io) => (await import('./inside')).cmdCp(argv, io),
  sparsify: async (argv, io) => (await import('./sparsify')).cmdSparsify(argv, io),
};

export async function runCli(argv: string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    io.out(USAGE);
    return command === undefined ? 1 : 0;
  }
  if (command === '--version' || command === '-V') {
    io.out('diskwright version 0.1.0');
    return 0;
  }
  const fn = COMMANDS[command];
  if (!fn) {
    io.err(`diskwright: unknown command '${command}' (try --help)`);
    return 1;
  }
  // -U / --force-share (qemu-img's): read an image another program holds. Only the commands that accept it
  // see it; where it reaches the lock layer it only relaxes reading, never writing.
  let args = rest.map((a) => (a === '--force-share' ? '-U' : a));
  setForceShare(args.includes('-U'));
  try {
    // --object secret / --image-opts (cli/image-opts.ts): loaded only when given, so that plain commands start as fast.
    if (args.some((a) => a.startsWith('--object') || a === '--image-opts' || a === '--target-image-opts')) {
      args = (await (await import('./image-opts')).takeCommonOptions(command, args)).args;
    }
    return await fn(args, io);
  } catch (err) {
    const e = toDiskError(err);
    if (e.code === 'ECANCELLED') {
      io.err('diskwright: cancelled; nothing was left half-written');
      return 130;
    }
    // The flag that gets past a changed base is the command line's business, not the format's message.
    let hint = e.code === 'EBACKINGCHANGED' && !e.message.includes('--accept-changed-backing') ? ' (give --accept-changed-backing to read it anyway)' : '';
    if (keyRefusal(e) === 'needed') {
      hint = ` (give it with --object secret,id=sec0,file=KEYFILE and --image-opts driver=qcow2,file.filename=${e.path ?? 'IMAGE'},encrypt.key-secret=sec0; a backing file's key as backing.encrypt.key-secret=sec0 on the image above it)`;
    }
    io.err(`diskwright: ${e.message}${hint}`);
    if (process.env.DISKWRIGHT_DEBUG) io.err(String((err as Error).stack));
    return 1;
  } finally {
    // Passphrases live only as long as the command: the secrets and the keyring's copies are wiped.
    (await import('./secrets')).wipeSecrets();
    forgetAllKeys();
  }
}

/** Entry point used by bin/diskwright.js. */
export async function main(): Promise<void> {
  // One job per process: blocking pread/pwrite on this thread copy faster than the thread pool (block/file.ts).
  if (process.env.DISKWRIGHT_ASYNC_IO !== '1') useBlockingIo(true);
  const io: Io = {
    // Lines through cli/stdio.ts (a write(2), not Node's stdout stream: ~10 ms less start-up).
    out: (s) => writeText('stdout', s.endsWith('\n') || s === '' ? s : s + '\n'),
    err: (s) => writeText('stderr', s.endsWith('\n') || s.endsWith('\r') ? s : s + '\n'),
    writeOut: (b) => new Promise((res, rej) => streamFor('stdout').write(b, (e) => (e ? rej(e) : res()))),
    readIn: async () => {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    },
  };
  // Ctrl-C and SIGTERM cancel the running command like the app's Cancel button: its temporary files are
  // removed and it exits 130 (143 for SIGTERM). A second signal exits at once.
  const ctl = new AbortController();
  io.signal = ctl.signal;
  let exitFor: number | undefined;
  const onSignal = (code: number) => () => {
    if (exitFor !== undefined) process.exit(code);
    exitFor = code;
    ctl.abort();
  };
  const onInt = onSignal(130);
  const onTerm = onSignal(143);
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  // On a terminal, an encrypted image whose key was not given is asked for (no echo).
  // Whether it can ask is looked at only when a key is wanted: process.stdin is costly to touch at start-up.
  setKeyAsker((path, attempt) => (canPrompt() ? askPassphrase(path, attempt, ctl.signal) : Promise.resolve(undefined)));
  try {
    const code = await runCli(process.argv.slice(2), io);
    process.exitCode = exitFor !== undefined && code === 130 ? exitFor : code;
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}

