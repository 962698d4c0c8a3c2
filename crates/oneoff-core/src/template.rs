//! Argv templates: `{param}` placeholders substituted inside one argument, never through a shell.
//!
//! Syntax: `{name}` where name is an identifier is a placeholder; `{{` and `}}` are literal
//! braces; any other brace is literal, so `awk '{print $1}'` needs no escaping. A placeholder
//! for an absent optional parameter renders as the empty string, except that an argument which
//! is nothing but that placeholder is dropped, so `["tool", "{flag}"]` does not pass `""`.

/// One parsed piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Placeholder(String),
}

/// A parsed argument or environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    pub fn parse(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(ch) = rest.chars().next() {
            if rest.starts_with("{{") {
                literal.push('{');
                rest = &rest[2..];
            } else if rest.starts_with("}}") {
                literal.push('}');
                rest = &rest[2..];
            } else if ch == '{' {
                match placeholder_name(&rest[1..]) {
                    Some(name) => {
                        if !literal.is_empty() {
                            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                        }
                        pieces.push(Piece::Placeholder(name.to_string()));
                        rest = &rest[name.len() + 2..];
                    }
                    None => {
                        literal.push('{');
                        rest = &rest[1..];
                    }
                }
            } else {
                literal.push(ch);
                rest = &rest[ch.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Template { pieces }
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Placeholder(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }

    /// Renders with `lookup`; `None` when the template is a lone placeholder whose value is absent.
    pub fn render<'a>(&self, lookup: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        if let [Piece::Placeholder(name)] = self.pieces.as_slice() {
            return lookup(name).map(str::to_string);
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Placeholder(name) => out.push_str(lookup(name).unwrap_or("")),
            }
        }
        Some(out)
    }
}

/// The identifier at the start of `text` if it is followed by `}`.
fn placeholder_name(text: &str) -> Option<&str> {
    let end = text.find('}')?;
    let name = &text[..end];
    is_identifier(name).then_some(name)
}

pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, name: &str, value: Option<&str>) -> Option<String> {
        Template::parse(template).render(|key| if key == name { value } else { None })
    }

    #[test]
    fn substitutes_inside_one_argument() {
        assert_eq!(render("--since={since}", "since", Some("2026-01-01")).unwrap(), "--since=2026-01-01");
        assert_eq!(render("{x}", "x", Some("; rm -rf /")).unwrap(), "; rm -rf /");
    }

    #[test]
    fn braces_that_are_not_placeholders_stay_literal() {
        assert_eq!(render("awk '{print $1}'", "x", None).unwrap(), "awk '{print $1}'");
        assert_eq!(render("{{x}}", "x", Some("no")).unwrap(), "{x}");
        assert_eq!(render("{ x }", "x", Some("no")).unwrap(), "{ x }");
        assert_eq!(render("{", "x", None).unwrap(), "{");
    }

    #[test]
    fn lone_absent_placeholder_drops_the_argument() {
        assert_eq!(render("{flag}", "flag", None), None);
        assert_eq!(render("--flag={flag}", "flag", None).unwrap(), "--flag=");
    }

    #[test]
    fn lists_placeholders() {
        let template = Template::parse("{a}-{b}-{{c}}-é{d}");
        assert_eq!(template.placeholders().collect::<Vec<_>>(), vec!["a", "b", "d"]);
    }
}
