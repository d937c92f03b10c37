//! "Did you mean …?" for misspelt names: trigger fields, config keys, zones, tasks and
//! subcommands.
//!
//! Distance is the optimal string alignment distance (Damerau–Levenshtein without
//! edits of a substring already edited): an insertion, a deletion, a substitution or a
//! swap of two neighbouring characters each count one. The swap matters: `huor` is one
//! slip of the fingers away from `hour`, and plain Levenshtein calls it two.

/// The candidate closest to `written` by edit distance, if it is close enough to be a
/// likely typo (at most a third of the word, and at least one edit). Case is ignored;
/// of equally close candidates the first wins.
pub(crate) fn closest<'a>(written: &str, candidates: &[&'a str]) -> Option<&'a str> {
    closest_of(written, candidates.iter().copied())
}

/// [`closest`] over any list of names (a registry's, the zone database's).
pub fn closest_of<'a>(
    written: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let written = written.to_lowercase();
    let allowed = (written.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = edit_distance(&written, &candidate.to_lowercase());
        if distance <= allowed && best.is_none_or(|(shortest, _)| distance < shortest) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// The optimal string alignment distance over characters: insertions, deletions,
/// substitutions and transpositions of two adjacent characters each cost one.
pub fn edit_distance(left: &str, right: &str) -> usize {
    let left: Vec<char> = left.chars().collect();
    let right: Vec<char> = right.chars().collect();
    // Three rows of the matrix: the one two back is what a transposition reads.
    let mut before: Vec<usize> = vec![0; right.len() + 1];
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for i in 0..left.len() {
        let mut current = vec![i + 1; right.len() + 1];
        for j in 0..right.len() {
            let cost = usize::from(left[i] != right[j]);
            let mut best = (previous[j] + cost)
                .min(previous[j + 1] + 1)
                .min(current[j] + 1);
            if i > 0 && j > 0 && left[i] == right[j - 1] && left[i - 1] == right[j] {
                best = best.min(before[j - 1] + 1);
            }
            current[j + 1] = best;
        }
        before = std::mem::replace(&mut previous, current);
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

    #[test]
    fn a_transposition_is_one_edit() {
        assert_eq!(edit_distance("huor", "hour"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(
            edit_distance("ca", "abc"),
            3,
            "OSA, not unrestricted Damerau"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("東京", "京東"), 1);
        assert_eq!(closest("huor", &["hour", "minute"]), Some("hour"));
    }

    #[test]
    fn zones_and_case() {
        let zones = ["Europe/Berlin", "Europe/Bern", "Asia/Shanghai"];
        assert_eq!(closest("Europe/Berln", &zones), Some("Europe/Berlin"));
        assert_eq!(closest("asia/shanghai", &zones), Some("Asia/Shanghai"));
    }
}
