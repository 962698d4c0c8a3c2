//! Typed job parameters: their schema, and validation of user input against it.
//!
//! Input arrives either typed (JSON numbers and booleans from the API) or as text
//! (`-p name=value` on the command line, form fields); both are checked by the same rules,
//! so the CLI, the API and the UI can never disagree about what is valid.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use crate::mask::unmaskable_secret;

/// Longest string value accepted when the schema sets no `max_length`.
pub const DEFAULT_MAX_LENGTH: usize = 4096;

#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: String,
    pub kind: ParamKind,
    pub required: bool,
    pub default: Option<ParamValue>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub enum ParamKind {
    String {
        max_length: usize,
        pattern: Option<Regex>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Boolean,
    Choice {
        choices: Vec<String>,
    },
    /// Never stored or shown in clear; delivered to the job only through its environment.
    Secret {
        max_length: usize,
    },
}

impl ParamKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamKind::String { .. } => "string",
            ParamKind::Integer { .. } => "integer",
            ParamKind::Boolean => "boolean",
            ParamKind::Choice { .. } => "choice",
            ParamKind::Secret { .. } => "secret",
        }
    }
}

/// A value a user supplied, before validation.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamInput {
    Text(String),
    Integer(i64),
    Boolean(bool),
    /// A value of a type no parameter accepts (a float, a list, an object); holds its type's name.
    Unsupported(&'static str),
}

/// A validated value.
#[derive(Clone, PartialEq, Eq)]
pub enum ParamValue {
    Text(String),
    Integer(i64),
    Boolean(bool),
    Secret(String),
}

impl ParamValue {
    /// The text handed to the job (argv or environment).
    pub fn as_arg(&self) -> String {
        match self {
            ParamValue::Text(text) | ParamValue::Secret(text) => text.clone(),
            ParamValue::Integer(number) => number.to_string(),
            ParamValue::Boolean(flag) => flag.to_string(),
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, ParamValue::Secret(_))
    }
}

impl fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Text(text) => write!(f, "Text({text:?})"),
            ParamValue::Integer(number) => write!(f, "Integer({number})"),
            ParamValue::Boolean(flag) => write!(f, "Boolean({flag})"),
            ParamValue::Secret(_) => f.write_str("Secret(<redacted>)"),
        }
    }
}

/// Parameters that passed validation, in schema order, defaults filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedParams {
    values: Vec<(String, ParamValue)>,
}

impl ResolvedParams {
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamValue)> {
        self.values.iter().map(|(key, value)| (key.as_str(), value))
    }

    pub fn from_values(values: Vec<(String, ParamValue)>) -> ResolvedParams {
        ResolvedParams { values }
    }
}

/// Why one field was rejected; `field` is the parameter name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Checks `inputs` against `specs`. Every problem is reported, not just the first.
pub fn resolve(
    specs: &[ParamSpec],
    mut inputs: BTreeMap<String, ParamInput>,
) -> Result<ResolvedParams, Vec<FieldError>> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for spec in specs {
        match inputs.remove(&spec.name) {
            Some(input) => match spec.check(input) {
                Ok(value) => values.push((spec.name.clone(), value)),
                Err(message) => errors.push(FieldError { field: spec.name.clone(), message }),
            },
            None => match &spec.default {
                Some(default) => values.push((spec.name.clone(), default.clone())),
                None if spec.required => {
                    errors.push(FieldError { field: spec.name.clone(), message: "is required".to_string() })
                }
                None => {}
            },
        }
    }
    for unknown in inputs.into_keys() {
        let known: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
        let message = if known.is_empty() {
            "unknown parameter (this job takes none)".to_string()
        } else {
            format!("unknown parameter (known: {})", known.join(", "))
        };
        errors.push(FieldError { field: unknown, message });
    }
    if errors.is_empty() {
        Ok(ResolvedParams { values })
    } else {
        Err(errors)
    }
}

impl ParamSpec {
    /// Validates one supplied value; the error is a message for the user, without the field name.
    pub fn check(&self, input: ParamInput) -> Result<ParamValue, String> {
        if let ParamInput::Unsupported(found) = input {
            return Err(format!("must be {}, not {found}", self.kind.expected()));
        }
        match &self.kind {
            ParamKind::String { max_length, pattern } => {
                let text = input_text(input, "a string")?;
                check_text(&text, *max_length)?;
                if let Some(pattern) = pattern {
                    if !pattern.is_match(&text) {
                        return Err(format!("must match the pattern {}", pattern.as_str()));
                    }
                }
                Ok(ParamValue::Text(text))
            }
            ParamKind::Secret { max_length } => {
                let text = input_text(input, "a string")?;
                check_text(&text, *max_length)?;
                if let Some(problem) = unmaskable_secret(&text) {
                    return Err(problem);
                }
                Ok(ParamValue::Secret(text))
            }
            ParamKind::Integer { min, max } => {
                let number = match input {
                    ParamInput::Integer(number) => number,
                    ParamInput::Text(text) => {
                        text.trim().parse::<i64>().map_err(|_| format!("must be an integer, not {}", quote(&text)))?
                    }
                    ParamInput::Boolean(_) => return Err("must be an integer, not a boolean".into()),
                    ParamInput::Unsupported(_) => unreachable!("handled above"),
                };
                if let Some(min) = min.filter(|min| number < *min) {
                    return Err(format!("must be at least {min}"));
                }
                if let Some(max) = max.filter(|max| number > *max) {
                    return Err(format!("must be at most {max}"));
                }
                Ok(ParamValue::Integer(number))
            }
            ParamKind::Boolean => match input {
                ParamInput::Boolean(flag) => Ok(ParamValue::Boolean(flag)),
                ParamInput::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" => Ok(ParamValue::Boolean(true)),
                    "false" | "no" | "off" | "0" => Ok(ParamValue::Boolean(false)),
                    _ => Err(format!("must be true or false, not {}", quote(&text))),
                },
                ParamInput::Integer(_) => Err("must be true or false, not a number".into()),
                ParamInput::Unsupported(_) => unreachable!("handled above"),
            },
            ParamKind::Choice { choices } => {
                let text = input_text(input, "one of the choices")?;
                if choices.contains(&text) {
                    Ok(ParamValue::Text(text))
                } else {
                    Err(format!("must be one of: {}", choices.join(", ")))
                }
            }
        }
    }
}

impl ParamKind {
    fn expected(&self) -> &'static str {
        match self {
            ParamKind::String { .. } | ParamKind::Secret { .. } => "a string",
            ParamKind::Integer { .. } => "an integer",
            ParamKind::Boolean => "true or false",
            ParamKind::Choice { .. } => "one of the choices",
        }
    }
}

fn input_text(input: ParamInput, expected: &str) -> Result<String, String> {
    match input {
        ParamInput::Text(text) => Ok(text),
        // A number where a string is expected is what a user means when typing `-p count=5`
        // into a string field through JSON; accept its decimal text.
        ParamInput::Integer(number) => Ok(number.to_string()),
        ParamInput::Boolean(_) => Err(format!("must be {expected}, not a boolean")),
        ParamInput::Unsupported(found) => Err(format!("must be {expected}, not {found}")),
    }
}

fn check_text(text: &str, max_length: usize) -> Result<(), String> {
    // A NUL cannot be passed in argv or the environment; refuse it rather than truncate.
    if text.contains('\0') {
        return Err("must not contain a NUL character".into());
    }
    let length = text.chars().count();
    if length > max_length {
        return Err(format!("must be at most {max_length} characters (got {length})"));
    }
    Ok(())
}

fn quote(text: &str) -> String {
    const SHOWN: usize = 40;
    if text.chars().count() > SHOWN {
        format!("{:?}…", text.chars().take(SHOWN).collect::<String>())
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: ParamKind, required: bool) -> ParamSpec {
        ParamSpec { name: name.into(), kind, required, default: None, description: String::new() }
    }

    fn inputs(pairs: &[(&str, ParamInput)]) -> BTreeMap<String, ParamInput> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn reports_every_problem() {
        let specs = vec![
            spec("name", ParamKind::String { max_length: 5, pattern: Some(Regex::new("^[a-z]+$").unwrap()) }, true),
            spec("count", ParamKind::Integer { min: Some(1), max: Some(10) }, true),
            spec("env", ParamKind::Choice { choices: vec!["dev".into(), "prod".into()] }, false),
        ];
        let errors = resolve(
            &specs,
            inputs(&[
                ("name", ParamInput::Text("Bob".into())),
                ("env", ParamInput::Text("qa".into())),
                ("extra", ParamInput::Boolean(true)),
            ]),
        )
        .unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            vec![
                "name: must match the pattern ^[a-z]+$",
                "count: is required",
                "env: must be one of: dev, prod",
                "extra: unknown parameter (known: name, count, env)",
            ]
        );
    }

    #[test]
    fn text_and_typed_input_follow_the_same_rules() {
        let count = spec("count", ParamKind::Integer { min: Some(1), max: Some(10) }, true);
        assert_eq!(count.check(ParamInput::Text("7".into())), Ok(ParamValue::Integer(7)));
        assert_eq!(count.check(ParamInput::Integer(7)), Ok(ParamValue::Integer(7)));
        assert_eq!(count.check(ParamInput::Integer(11)), Err("must be at most 10".into()));
        assert_eq!(count.check(ParamInput::Text("seven".into())), Err("must be an integer, not \"seven\"".into()));
        assert_eq!(
            count.check(ParamInput::Unsupported("a number with a fraction")),
            Err("must be an integer, not a number with a fraction".into())
        );
        let flag = spec("dry_run", ParamKind::Boolean, false);
        assert_eq!(flag.check(ParamInput::Text("yes".into())), Ok(ParamValue::Boolean(true)));
        assert_eq!(flag.check(ParamInput::Boolean(false)), Ok(ParamValue::Boolean(false)));
        assert!(flag.check(ParamInput::Text("maybe".into())).is_err());
    }

    #[test]
    fn defaults_fill_in_and_optional_may_be_absent() {
        let mut with_default = spec("batch", ParamKind::Integer { min: None, max: None }, false);
        with_default.default = Some(ParamValue::Integer(100));
        let optional = spec("note", ParamKind::String { max_length: 10, pattern: None }, false);
        let resolved = resolve(&[with_default, optional], BTreeMap::new()).unwrap();
        assert_eq!(resolved.get("batch"), Some(&ParamValue::Integer(100)));
        assert_eq!(resolved.get("note"), None);
    }

    #[test]
    fn hostile_strings_are_values_not_code() {
        let any = spec("x", ParamKind::String { max_length: 100, pattern: None }, true);
        for hostile in ["; rm -rf /", "$(id)", "`id`", "a\nb", "' OR 1=1 --"] {
            assert_eq!(any.check(ParamInput::Text(hostile.into())), Ok(ParamValue::Text(hostile.into())));
        }
        assert_eq!(any.check(ParamInput::Text("a\0b".into())), Err("must not contain a NUL character".into()));
        assert!(any.check(ParamInput::Text("x".repeat(101))).unwrap_err().contains("at most 100"));
    }

    #[test]
    fn secrets_too_short_to_mask_are_refused() {
        let token = spec("token", ParamKind::Secret { max_length: 100 }, false);
        assert_eq!(token.check(ParamInput::Text("s3cr".into())), Ok(ParamValue::Secret("s3cr".into())));
        assert_eq!(token.check(ParamInput::Text(String::new())), Ok(ParamValue::Secret(String::new())));
        let refused = token.check(ParamInput::Text("abc".into())).unwrap_err();
        assert!(refused.starts_with("must be at least 4 characters (got 3)"), "{refused}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let secret = ParamValue::Secret("hunter2".into());
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
