import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { shellQuote, commandLine } from '../shell.js';

test('plain words stay bare, others are single-quoted', () => {
  assert.equal(commandLine(['backup', '--count=5', '/var/lib/x.db', 'user@host:path', 'a,b', '50%']),
    'backup --count=5 /var/lib/x.db user@host:path a,b 50%');
  assert.equal(commandLine(['echo', '', 'two words']), "echo '' 'two words'");
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  assert.equal(shellQuote('$(rm -rf /)'), "'$(rm -rf /)'");
  assert.equal(shellQuote('*.log'), "'*.log'");
  assert.equal(shellQuote('{a,b}'), "'{a,b}'");
  assert.equal(shellQuote('~root'), "'~root'");
  assert.equal(shellQuote('=ls'), "'=ls'");
  assert.equal(shellQuote('a\\b'), "'a\\b'");
});

test('the command name is quoted where a shell reads syntax', () => {
  assert.equal(commandLine(['FOO=bar', 'FOO=bar']), "'FOO=bar' FOO=bar");
  assert.equal(commandLine(['%1', '%1']), "'%1' %1");
  assert.equal(commandLine(['if', 'if']), "'if' if");
});

test('a multi-line script keeps its newlines as escapes', () => {
  const script = 'since="$1"; batch="$2"\ntable="$3"\necho "$since" \'done\'';
  assert.equal(commandLine(['sh', '-c', script, 'sh', '2026-01-01']),
    "sh -c $'since=\"$1\"; batch=\"$2\"\\ntable=\"$3\"\\necho \"$since\" \\'done\\'' sh 2026-01-01");
});

test('control characters become escapes and never appear raw', () => {
  assert.equal(shellQuote('\x1b[31mred\x1b[0m'), "$'\\e[31mred\\e[0m'");
  assert.equal(shellQuote('a\tb\rc'), "$'a\\tb\\rc'");
  assert.equal(shellQuote('\x071'), "$'\\0071'");
  assert.equal(shellQuote('\x7f'), "$'\\177'");
  assert.equal(shellQuote('\u0085'), "$'\\302\\205'");
  assert.equal(shellQuote('\0'), "$'\\000'");
  for (let code = 0; code < 0xa0; code++) {
    if (code >= 0x20 && code < 0x7f) continue;
    const shown = shellQuote(`x${String.fromCharCode(code)}y`);
    assert.ok(!/[\u0000-\u001f\u007f-\u009f]/.test(shown), `U+${code.toString(16)} shown raw in ${shown}`);
    assert.ok(shown.startsWith("$'") && shown.endsWith("'"), shown);
  }
});

test('unicode text stays readable and invisible characters do not', () => {
  assert.equal(shellQuote('José'), "'José'");
  assert.equal(shellQuote('日本語 ✓'), "'日本語 ✓'");
  assert.equal(shellQuote('José\n'), "$'José\\n'");
  assert.equal(shellQuote('abc\u202edef'), "$'abc\\342\\200\\256def'");
  assert.equal(shellQuote('😀 '), "'😀 '");
});

test('bash reads the command line back as the same argv', (t) => {
  let bash;
  try { bash = execFileSync('bash', ['-c', 'command -v bash']).toString().trim(); } catch { return t.skip('no bash'); }
  const argv = ['printf', '%s\\0', '', 'two words', "it's", 'a\nb', '\x1b[1m', '$HOME', 'José', '\u202e', '\\', "'\n'", '*'];
  const out = execFileSync(bash, ['-c', commandLine(argv)]).toString();
  assert.deepEqual(out.split('\0').slice(0, -1), argv.slice(2));
});
