// Argv as a shell command line that, pasted into bash, zsh or ksh, runs the same argv: the
// same rules as crates/oneoff-core/src/shell.rs. Words of plain characters stay bare, others
// go in '…', and a word with a control character (a newline of a multi-line `sh -c` script,
// an ESC) in $'…' with escapes, so the page never holds a raw control byte.

/** Words a shell reads as syntax when they come first on a command line. */
const RESERVED = new Set(['!', '{', '}', '[[', ']]', 'case', 'coproc', 'do', 'done', 'elif', 'else', 'esac', 'fi',
  'for', 'function', 'if', 'in', 'select', 'then', 'time', 'until', 'while']);

const PLAIN = /^[A-Za-z0-9\-_./:=,+@%]+$/;

/** Control characters, and invisible ones that reorder or hide text. */
function needsEscape(code) {
  return code < 0x20 || (code >= 0x7f && code < 0xa0)
    || (code >= 0x200b && code <= 0x200f) || (code >= 0x2028 && code <= 0x202e)
    || (code >= 0x2060 && code <= 0x2069) || code === 0xfeff;
}

const NAMED = { '\\': '\\\\', "'": "\\'", '\n': '\\n', '\t': '\\t', '\r': '\\r', '\x1b': '\\e' };
const encoder = new TextEncoder();

function ansiCQuote(word) {
  let out = "$'";
  for (const ch of word) {
    const code = ch.codePointAt(0);
    if (NAMED[ch]) out += NAMED[ch];
    else if (needsEscape(code)) {
      // Octal bytes of the UTF-8 encoding: exact in every shell and locale.
      for (const byte of encoder.encode(ch)) out += `\\${byte.toString(8).padStart(3, '0')}`;
    } else out += ch;
  }
  return `${out}'`;
}

/** One word, quoted; `first` for the command's name, where `=`, a leading `%` and reserved words are syntax. */
export function shellQuote(word, first = false) {
  word = String(word);
  for (const ch of word) {
    if (needsEscape(ch.codePointAt(0))) return ansiCQuote(word);
  }
  const plain = PLAIN.test(word) && !word.startsWith('=')
    && !(first && (word.includes('=') || word.startsWith('%') || RESERVED.has(word)));
  return plain ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/** The command line for an argv, words separated by one space. */
export function commandLine(argv) {
  return (argv || []).map((word, index) => shellQuote(word, index === 0)).join(' ');
}
