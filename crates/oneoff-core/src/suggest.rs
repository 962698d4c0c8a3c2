//! "Did you mean …?" for the closed vocabularies of the config file: parameter types, keys,
//! provider kinds.
//!
//! A word is matched against the known ones by a table of aliases first (`int` is what a
//! programmer writes for `integer`, at an edit distance no threshold would accept), then by
//! edit distance: the closest known word, when it is close enough to be a typo and no other
//! word is as close. No suggestion is better than a wrong one.

/// The known word `word` was most likely meant as, if any.
pub fn did_you_mean<'a>(word: &str, known: &[&'a str], aliases: &[(&str, &str)]) -> Option<&'a str> {
    let lowered = word.trim().to_lowercase();
    if let Some((_, target)) = aliases.iter().find(|(alias, _)| *alias == lowered) {
        if let Some(found) = known.iter().find(|candidate| *candidate == target) {
            return Some(found);
        }
    }
    if let Some(found) = known.iter().find(|candidate| candidate.to_lowercase() == lowered) {
        return Some(found);
    }
    // One edit per three characters is a typo; more is another word.
    let allowed = (lowered.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    let mut tied = false;
    for candidate in known {
        let distance = edit_distance(&lowered, &candidate.to_lowercase());
        if distance > allowed {
            continue;
        }
        match best {
            Some((closest, _)) if distance > closest => {}
            Some((closest, _)) if distance == closest => tied = true,
            _ => {
                best = Some((distance, candidate));
                tied = false;
            }
        }
    }
    best.filter(|_| !tied).map(|(_, candidate)| candidate)
}

/// `: did you mean `x`?` to append to a message, or nothing.
pub fn hint(word: &str, known: &[&str], aliases: &[(&str, &str)]) -> String {
    did_you_mean(word, known, aliases).map_or_else(String::new, |found| format!(": did you mean `{found}`?"))
}

/// Levenshtein distance over characters (insertions, deletions, substitutions; a swap of two
/// neighbours costs two, which the threshold allows for words of six characters or more).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: &[&str] = &["string", "integer", "boolean", "choice", "secret"];
    const ALIASES: &[(&str, &str)] = &[("int", "integer"), ("bool", "boolean"), ("str", "string")];

    #[test]
    fn aliases_name_what_a_programmer_means() {
        assert_eq!(did_you_mean("int", TYPES, ALIASES), Some("integer"));
        assert_eq!(did_you_mean("Bool", TYPES, ALIASES), Some("boolean"));
        assert_eq!(did_you_mean("str", TYPES, ALIASES), Some("string"));
    }

    #[test]
    fn typos_are_corrected_and_other_words_are_not() {
        assert_eq!(did_you_mean("integr", TYPES, &[]), Some("integer"));
        assert_eq!(did_you_mean("boolen", TYPES, &[]), Some("boolean"));
        assert_eq!(did_you_mean("secert", TYPES, &[]), Some("secret"));
        assert_eq!(did_you_mean("INTEGER", TYPES, &[]), Some("integer"));
        assert_eq!(did_you_mean("colour", TYPES, &[]), None);
        assert_eq!(did_you_mean("x", TYPES, &[]), None);
        assert_eq!(did_you_mean("", TYPES, &[]), None);
    }

    #[test]
    fn an_alias_to_a_word_not_known_here_is_not_suggested() {
        assert_eq!(did_you_mean("int", &["string"], ALIASES), None);
    }

    #[test]
    fn a_tie_suggests_nothing() {
        assert_eq!(did_you_mean("ab", &["aa", "bb"], &[]), None);
        assert_eq!(did_you_mean("timout", &["timeout", "grace"], &[]), Some("timeout"));
    }

    #[test]
    fn hint_reads_as_the_end_of_a_message() {
        assert_eq!(hint("int", TYPES, ALIASES), ": did you mean `integer`?");
        assert_eq!(hint("colour", TYPES, ALIASES), "");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("é", "e"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
