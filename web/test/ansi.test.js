// Unit tests of the ANSI / `\r` renderer: `node --test web/test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderLine, plainText, applySgr, applyHighlights, color256, styleClasses } from '../ansi.js';

const texts = (spans) => spans.map((span) => span.text);
const only = (text) => {
  const spans = renderLine(text);
  assert.equal(spans.length, 1, JSON.stringify(spans));
  return spans[0];
};

test('plain text is one unstyled span, and an empty line has none', () => {
  assert.deepEqual(renderLine('hello world'), [{ text: 'hello world', style: null }]);
  assert.deepEqual(renderLine(''), []);
  assert.equal(plainText('hello'), 'hello');
});

test('16 colours, foreground and background, bright variants, and reset', () => {
  const spans = renderLine('\x1b[32mbatch 1/5\x1b[0m: 500 rows');
  assert.deepEqual(texts(spans), ['batch 1/5', ': 500 rows']);
  assert.equal(spans[0].style.fg, 2);
  assert.equal(spans[1].style, null);
  assert.equal(only('\x1b[91mx').style.fg, 9);
  assert.equal(only('\x1b[44mx').style.bg, 4);
  assert.equal(only('\x1b[103mx').style.bg, 11);
  assert.equal(only('\x1b[31;39mx').style, null, 'default foreground resets the colour');
  assert.equal(only('\x1b[41;49mx').style, null, 'default background resets the colour');
  assert.equal(only('\x1b[31m\x1b[mx').style, null, 'ESC[m is a reset');
});

test('256 colours and true colour, with semicolons and with colons', () => {
  assert.equal(only('\x1b[38;5;208mx').style.fg, 208);
  assert.equal(only('\x1b[48;5;21mx').style.bg, 21);
  assert.equal(only('\x1b[38;2;255;128;0mx').style.fg, '#ff8000');
  assert.equal(only('\x1b[48;2;1;2;3mx').style.bg, '#010203');
  assert.equal(only('\x1b[38:5:99mx').style.fg, 99);
  assert.equal(only('\x1b[38:2::10:20:30mx').style.fg, '#0a141e');
  // Parameters after an extended colour still apply.
  const style = only('\x1b[38;5;1;1mx').style;
  assert.equal(style.fg, 1);
  assert.equal(style.bold, true);
  assert.equal(color256(16), '#000000');
  assert.equal(color256(196), '#ff0000');
  assert.equal(color256(231), '#ffffff');
  assert.equal(color256(232), '#080808');
  assert.equal(color256(255), '#eeeeee');
  assert.equal(color256(3), null, 'palette 0-15 is themed in CSS');
});

test('bold, dim, italic, underline, inverse, strike and their resets', () => {
  const all = only('\x1b[1;2;3;4;7;9mx').style;
  assert.deepEqual(
    [all.bold, all.dim, all.italic, all.underline, all.inverse, all.strike],
    [true, true, true, true, true, true],
  );
  let style = applySgr(all, '22');
  assert.equal(style.bold, false);
  assert.equal(style.dim, false);
  style = applySgr(style, '23;24;27;29');
  assert.deepEqual([style.italic, style.underline, style.inverse, style.strike], [false, false, false, false]);
  assert.equal(only('\x1b[4:0mx').style, null, 'underline style 0 is no underline');
  assert.equal(only('\x1b[4:3mx').style.underline, true, 'curly underline is an underline');
});

test('styles accumulate across sequences and reset in the middle of a line', () => {
  const spans = renderLine('a\x1b[1mb\x1b[31mc\x1b[0md');
  assert.deepEqual(texts(spans), ['a', 'b', 'c', 'd']);
  assert.equal(spans[0].style, null);
  assert.equal(spans[1].style.bold, true);
  assert.equal(spans[2].style.bold, true);
  assert.equal(spans[2].style.fg, 1);
  assert.equal(spans[3].style, null);
});

test('carriage returns rewrite the line: a progress bar shows its final state', () => {
  assert.equal(plainText('progress   0%\rprogress  50%\rprogress 100%'), 'progress 100%');
  assert.equal(plainText('\rprogress   5%\rprogress  10%'), 'progress  10%');
  // Like a terminal, a shorter rewrite leaves the tail of the longer text.
  assert.equal(plainText('downloading\rdone'), 'doneloading');
  // A trailing \r moves the cursor but erases nothing.
  assert.equal(plainText('50%\r'), '50%');
  // Colours survive the rewrite per cell.
  const spans = renderLine('\x1b[31m[    ]\r\x1b[32m[==');
  assert.deepEqual(texts(spans), ['[==', '  ]']);
  assert.equal(spans[0].style.fg, 2);
  assert.equal(spans[1].style.fg, 1);
});

test('erase in line: ESC[K, ESC[0K, ESC[1K and ESC[2K', () => {
  assert.equal(plainText('downloading\r\x1b[Kdone'), 'done');
  assert.equal(plainText('downloading\r\x1b[0Kdone'), 'done');
  assert.equal(plainText('abcdef\x1b[3D\x1b[K'), 'abc');
  assert.equal(plainText('abcdef\x1b[3D\x1b[1K'), '    ef');
  assert.equal(plainText('abcdef\x1b[2K\rxy'), 'xy');
  // Erasing at the end of plain text changes nothing.
  assert.equal(plainText('\x1b[32mok\x1b[K'), 'ok');
});

test('cursor column moves and backspace', () => {
  assert.equal(plainText('abc\x1b[1GX'), 'Xbc');
  assert.equal(plainText('abc\x1b[GX'), 'Xbc');
  assert.equal(plainText('a\x1b[3Cb'), 'a   b');
  assert.equal(plainText('abc\bX'), 'abX');
  assert.equal(plainText('\b\bab'), 'ab');
});

test('other escape sequences and control characters are dropped, tabs kept', () => {
  assert.equal(plainText('\x1b]0;window title\x07visible'), 'visible');
  assert.equal(plainText('\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\ text'), 'link text');
  assert.equal(plainText('\x1b(Bplain'), 'plain');
  assert.equal(plainText('up\x1b[2Aand'), 'upand');
  assert.equal(plainText('bell\x07 nul\x00 del\x7f c1\x9b'), 'bell nul del c1');
  assert.equal(plainText('a\tb'), 'a\tb');
  assert.equal(plainText('\x1b[?25lhidden cursor\x1b[?25h'), 'hidden cursor');
  assert.equal(plainText('truncated \x1b['), 'truncated ');
  assert.equal(plainText('lone \x1b'), 'lone ');
  assert.equal(plainText('\x1b]unterminated osc eats the rest'), '');
});

test('unicode stays whole, one code point per column', () => {
  assert.equal(plainText('héllo 🎉\rH'), 'Héllo 🎉');
  assert.equal(plainText('🎉🎉\rx'), 'x🎉');
});

test('job text is data: markup stays text', () => {
  const hostile = '<img src=x onerror=alert(1)> &amp; <script>';
  assert.deepEqual(renderLine(hostile), [{ text: hostile, style: null }]);
  assert.equal(plainText(`\x1b[31m${hostile}`), hostile);
});

test('highlights cut spans at match boundaries', () => {
  const spans = renderLine('ab\x1b[31mcdef\x1b[0mgh');
  const pieces = applyHighlights(spans, [[1, 3, 'match'], [5, 7, 'current']]);
  assert.deepEqual(pieces.map((piece) => [piece.text, piece.mark, piece.style?.fg ?? null]), [
    ['a', null, null],
    ['b', 'match', null],
    ['c', 'match', 1],
    ['de', null, 1],
    ['f', 'current', 1],
    ['g', 'current', null],
    ['h', null, null],
  ]);
  assert.equal(pieces.map((piece) => piece.text).join(''), 'abcdefgh');
  assert.deepEqual(applyHighlights(spans, []).map((piece) => piece.mark), [null, null, null]);
});

test('style classes: themed palette, inline colours, inverse', () => {
  assert.deepEqual(styleClasses(only('\x1b[1;31;42mx').style), { classes: ['f1', 'b2', 'ansi-bold'], css: {} });
  assert.deepEqual(styleClasses(only('\x1b[38;5;208mx').style).css, { color: '#ff8700' });
  assert.deepEqual(styleClasses(only('\x1b[7mx').style).classes, ['ansi-inv-fg', 'ansi-inv-bg']);
  assert.deepEqual(styleClasses(only('\x1b[7;31mx').style).classes, ['ansi-inv-fg', 'b1']);
  assert.deepEqual(styleClasses(only('\x1b[97;41mx').style), { classes: ['b1'], css: { color: '#ffffff' } });
  assert.deepEqual(styleClasses(only('\x1b[30;43mx').style), { classes: ['b3'], css: { color: '#000000' } });
});

test('a long coloured line renders quickly', () => {
  const line = '\x1b[32m' + 'x'.repeat(60000) + '\x1b[0m\r\x1b[31mdone';
  const started = performance.now();
  const spans = renderLine(line);
  assert.equal(spans[0].text, 'done');
  assert.equal(spans.map((span) => span.text).join('').length, 60000);
  assert.ok(performance.now() - started < 500);
});
