//! "Did you mean …?" for misspelt names: trigger fields now, config keys later.

/// The candidate closest to `written` by edit distance, if it is close enough to be a
/// likely typo (at most a third of the word, and at least one edit).
pub(crate) fn closest<'a>(written: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let written = written.to_ascii_lowercase();
    let allowed = (written.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|candidate| (edit_distance(&written, candidate), *candidate))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (i, left_char) in left.chars().enumerate() {
        let mut current = vec![i + 1; right.len() + 1];
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let fields = ["hour", "minute", "second", "day_of_week"];
        assert_eq!(closest("hours", &fields), Some("hour"));
        assert_eq!(closest("minuet", &fields), Some("minute"));
        assert_eq!(closest("day_of_weak", &fields), Some("day_of_week"));
        assert_eq!(closest("colour", &fields), None);
    }
}
