// The layering of docs/architecture.md is enforced by ESLint: these cases prove each boundary bites (and
// that the allowed imports pass), by linting small sources as if they lay at the named paths.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ESLint } from 'eslint';
import { ROOT } from '../helpers';

const eslint = new ESLint({ cwd: ROOT });

async function boundaryErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return result.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

const cases: Array<{ file: string; from: string; refused: boolean }> = [
  { file: 'src-renderer/views/Some.ts', from: '../../src-main/registry', refused: true },
  { file: 'src-renderer/stores/some.ts', from: '../../src-main/block/errors', refused: true },
  { file: 'src-renderer/views/Some.ts', from: 'node:fs', refused: true },
  { file: 'src-renderer/views/Some.ts', from: '../../src-shared/api', refused: false },
  { file: 'src-renderer/views/Some.ts', from: '../format', refused: false },
  { file: 'src-shared/some.ts', from: '../src-main/block/types', refused: true },
  { file: 'src-shared/some.ts', from: './api', refused: false },
  { file: 'src-main/services/some.ts', from: '../electron/main', refused: true },
  { file: 'src-main/services/some.ts', from: '../host/server', refused: true },
  { file: 'src-main/services/some.ts', from: 'electron', refused: true },
  { file: 'src-main/services/some.ts', from: '../registry', refused: false },
  { file: 'src-main/formats/vmdk/some.ts', from: '../qcow2/layout', refused: true },
  { file: 'src-main/formats/vmdk/some.ts', from: '../../services/convert', refused: true },
  { file: 'src-main/formats/vmdk/some.ts', from: '../../registry', refused: true },
  { file: 'src-main/formats/vmdk/some.ts', from: '../../cli/main', refused: true },
  { file: 'src-main/formats/vmdk/some.ts', from: '../../api/index', refused: true },
  { file: 'src-main/formats/vmdk/some.ts', from: '../../block/bytes', refused: false },
  { file: 'src-main/formats/vmdk/some.ts', from: './layout', refused: false },
  { file: 'src-main/formats/qcow2/check/some.ts', from: '../layout', refused: false },
  { file: 'src-main/formats/qcow2/check/some.ts', from: '../../../block/bytes', refused: false },
  { file: 'src-main/formats/qcow2/check/some.ts', from: '../../vmdk/layout', refused: true },
  { file: 'src-main/formats/qcow2/check/some.ts', from: '../../../services/convert', refused: true },
  { file: 'src-main/formats/qcow2/check/some.ts', from: '../../../registry', refused: true },
  { file: 'src-main/block/some.ts', from: '../formats/qcow2/layout', refused: true },
  { file: 'src-main/block/some.ts', from: '../formats/index', refused: true },
  { file: 'src-main/block/some.ts', from: '../registry', refused: true },
  { file: 'src-main/block/some.ts', from: './errors', refused: false },
  { file: 'src-main/block/some.ts', from: '../crypto/luks', refused: true },
  { file: 'src-main/crypto/some.ts', from: '../block/errors', refused: false },
  { file: 'src-main/crypto/some.ts', from: './sector-cipher', refused: false },
  { file: 'src-main/crypto/some.ts', from: 'node:crypto', refused: false },
  { file: 'src-main/crypto/some.ts', from: 'node:fs', refused: true },
  { file: 'src-main/crypto/some.ts', from: '../formats/qcow2/layout', refused: true },
  { file: 'src-main/crypto/some.ts', from: '../services/convert', refused: true },
  { file: 'src-main/crypto/some.ts', from: '../registry', refused: true },
  { file: 'src-main/crypto/some.ts', from: 'zod', refused: true },
  { file: 'src-main/formats/qcow2/some.ts', from: '../../crypto', refused: false },
  { file: 'src-main/inside/fs/ext/some.ts', from: '../../../formats/qcow2/layout', refused: true },
  { file: 'src-main/inside/some.ts', from: '../services/convert', refused: true },
  { file: 'src-main/inside/some.ts', from: '../registry', refused: true },
  { file: 'src-main/inside/tables/some.ts', from: '../../cli/main', refused: true },
  { file: 'src-main/inside/some.ts', from: '../../src-shared/api', refused: true },
  { file: 'src-main/inside/some.ts', from: 'node:fs', refused: true },
  { file: 'src-main/inside/fs/ntfs/some.ts', from: '../../../block/errors', refused: false },
  { file: 'src-main/inside/fs/ntfs/some.ts', from: '../reader', refused: false },
];

for (const c of cases) {
  test(`${c.file} importing '${c.from}' is ${c.refused ? 'refused' : 'allowed'}`, async () => {
    const errors = await boundaryErrors(c.file, `import { x } from '${c.from}';\nexport const y = x;\n`);
    assert.equal(errors.length, c.refused ? 1 : 0, errors.join('\n'));
  });
}

test('a Vue component of the renderer importing src-main is refused too', async () => {
  const code = `<script setup lang="ts">\nimport { openImage } from '../../src-main/registry';\nvoid openImage;\n</script>\n<template><div /></template>\n`;
  const errors = await boundaryErrors('src-renderer/views/Some.vue', code);
  assert.equal(errors.length, 1);
  assert.match(errors[0], /renderer knows only the contract/);
});

test('the whole tree passes the boundaries as it stands', async () => {
  const results = await eslint.lintFiles(['src-main', 'src-shared', 'src-renderer']);
  const broken = results.flatMap((r) => r.messages.filter((m) => m.ruleId === 'no-restricted-imports').map((m) => `${r.filePath}:${m.line} ${m.message}`));
  assert.deepEqual(broken, []);
});
