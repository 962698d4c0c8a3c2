//! Argv shown as a shell command line that, pasted into bash, zsh or ksh, runs the same argv.
//!
//! A run's argv is never given to a shell, so its words can hold anything: newlines (a
//! multi-line `sh -c` script), quotes, `$`, escape bytes. Shown raw, or with control
//! characters flattened to spaces, it would mean something else; so each word is quoted:
//! left bare when it holds only characters no shell treats specially, in `'…'` otherwise,
//! and in `$'…'` when it holds a control character, which is then written as an escape
//! (`\n`, `\t`, `\e`, or octal bytes). The result holds no control character at all, so it
//! is also safe to print on a terminal or put in a page. `web/shell.js` follows the same rules.

/// The command line for `argv`, words separated by one space.
pub fn command_line(argv: &[String]) -> String {
    argv.iter().enumerate().map(|(index, word)| quote(word, index == 0)).collect::<Vec<_>>().join(" ")
}

/// Words a shell reads as syntax when they come first on a command line.
const RESERVED: &[&str] = &[
    "!", "{", "}", "[[", "]]", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for", "function", "if",
    "in", "select", "then", "time", "until", "while",
];

/// One word, quoted as a shell needs it; `first` for the command's own name, where an `=`
/// (an assignment), a leading `%` (a job) and reserved words mean something else.
pub fn quote(word: &str, first: bool) -> String {
    if word.chars().any(needs_escape) {
        return ansi_c_quote(word);
    }
    if is_plain(word, first) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn is_plain(word: &str, first: bool) -> bool {
    let safe =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | ',' | '+' | '@' | '%');
    !word.is_empty()
        && word.chars().all(safe)
        // zsh expands a word starting with `=` to a program's path.
        && !word.starts_with('=')
        && !(first && (word.contains('=') || word.starts_with('%') || RESERVED.contains(&word)))
}

/// Control characters, and the invisible ones that reorder or hide text (bidirectional
/// overrides, zero-width characters, line separators), which a reader could not see.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `$'…'`: backslash escapes for what needs one, every other character as it is.
fn ansi_c_quote(word: &str) -> String {
    let mut out = String::from("$'");
    for c in word.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            '\r' => out.push_str(r"\r"),
            '\u{1b}' => out.push_str(r"\e"),
            c if needs_escape(c) => {
                // Octal bytes of the UTF-8 encoding: exact in every shell and every locale
                // (three digits each, so a following digit cannot join the escape).
                let mut buffer = [0; 4];
                for byte in c.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("\\{byte:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(argv: &[&str]) -> String {
        command_line(&argv.iter().map(|word| word.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn plain_words_stay_bare() {
        assert_eq!(
            line(&["backup", "--count=5", "/var/lib/x.db", "user@host:path", "a,b", "50%"]),
            "backup --count=5 /var/lib/x.db user@host:path a,b 50%"
        );
    }

    #[test]
    fn empty_words_and_spaces_are_single_quoted() {
        assert_eq!(line(&["echo", "", "two words"]), "echo '' 'two words'");
    }

    #[test]
    fn quotes_and_shell_syntax_are_single_quoted() {
        assert_eq!(quote("it's", false), r"'it'\''s'");
        assert_eq!(quote("$(rm -rf /)", false), "'$(rm -rf /)'");
        assert_eq!(quote("`id`", false), "'`id`'");
        assert_eq!(quote("say \"hi\"", false), "'say \"hi\"'");
        assert_eq!(quote("*.log", false), "'*.log'");
        assert_eq!(quote("~root", false), "'~root'");
        assert_eq!(quote("#comment", false), "'#comment'");
        assert_eq!(quote("{a,b}", false), "'{a,b}'");
        assert_eq!(quote("a\\b", false), r"'a\b'");
        assert_eq!(quote("=ls", false), "'=ls'");
    }

    #[test]
    fn the_command_name_is_quoted_where_a_shell_would_read_syntax() {
        assert_eq!(line(&["FOO=bar", "FOO=bar"]), "'FOO=bar' FOO=bar");
        assert_eq!(line(&["%1", "%1"]), "'%1' %1");
        assert_eq!(line(&["if", "if"]), "'if' if");
        assert_eq!(line(&["!"]), "'!'");
    }

    #[test]
    fn a_multi_line_script_keeps_its_newlines_as_escapes() {
        let script = "since=\"$1\"; batch=\"$2\"\ntable=\"$3\"\necho \"$since\" 'done'";
        assert_eq!(
            line(&["sh", "-c", script, "sh", "2026-01-01"]),
            r#"sh -c $'since="$1"; batch="$2"\ntable="$3"\necho "$since" \'done\'' sh 2026-01-01"#
        );
    }

    #[test]
    fn control_characters_become_escapes_and_never_appear_raw() {
        assert_eq!(quote("\u{1b}[31mred\u{1b}[0m", false), r"$'\e[31mred\e[0m'");
        assert_eq!(quote("a\tb\rc", false), r"$'a\tb\rc'");
        assert_eq!(quote("\u{7}1", false), r"$'\0071'");
        assert_eq!(quote("\u{7f}", false), r"$'\177'");
        assert_eq!(quote("\u{85}", false), r"$'\302\205'", "a C1 control, as its UTF-8 bytes");
        assert_eq!(quote("back\\slash\n", false), r"$'back\\slash\n'");
        assert_eq!(quote("\0", false), r"$'\000'");
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let shown = quote(&format!("x{c}y"), false);
            assert!(!shown.chars().any(char::is_control), "{c:?} shown raw in {shown:?}");
            assert!(shown.starts_with("$'") && shown.ends_with('\''), "{shown}");
        }
    }

    #[test]
    fn unicode_text_stays_readable_and_invisible_characters_do_not() {
        assert_eq!(quote("José", false), "'José'");
        assert_eq!(quote("日本語 ✓", false), "'日本語 ✓'");
        assert_eq!(quote("José\n", false), r"$'José\n'");
        assert_eq!(quote("abc\u{202E}def", false), r"$'abc\342\200\256def'", "a right-to-left override");
        assert_eq!(quote("\u{200B}", false), r"$'\342\200\213'", "a zero-width space");
    }
}
