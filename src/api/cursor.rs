//! The opaque `cursor` of `GET /jobs` and `GET /runs`: where the next page starts.
//!
//! A cursor is a position in the listing it came from, bound to that route and to its
//! filters: sent to another route, or with other filters, it is refused (400
//! `invalid_cursor`) rather than read as a position in a different list. Clients treat
//! it as opaque text; its form (hex of `route:filters-hash:offset`) may change.
//!
//! It is a position, not a key: runs finished between two requests push older ones
//! down, so the next page may repeat a run or two from the end of the one before, and
//! never skips one. Jobs are ordered by next run time, which running them changes.

use super::error::ApiError;

/// The cursor for the page of `route` with these `filters` that starts at `offset`.
pub(super) fn encode(route: &str, filters: &str, offset: usize) -> String {
    let text = format!("{route}:{:016x}:{offset}", fnv1a(filters));
    text.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// The offset `cursor` stands for, if it came from `route` with these `filters`.
pub(super) fn decode(route: &str, filters: &str, cursor: &str) -> Result<usize, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_cursor",
            "cursor: not a next_cursor of this listing with these filters; start again without it",
        )
    };
    if cursor.len() % 2 != 0 || cursor.len() > 512 {
        return Err(invalid());
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|at| {
            cursor
                .get(at..at + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some(from), Some(hash), Some(offset)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if from != route || hash != format!("{:016x}", fnv1a(filters)) {
        return Err(invalid());
    }
    offset.parse().map_err(|_| invalid())
}

/// FNV-1a: a hash that every build and every node computes alike, so a cursor from one
/// node of a cluster works on another.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_comes_back_only_to_its_route_and_filters() {
        let cursor = encode("runs", "job_id=a", 1050);
        assert_eq!(decode("runs", "job_id=a", &cursor).ok(), Some(1050));
        assert!(decode("jobs", "job_id=a", &cursor).is_err());
        assert!(decode("runs", "job_id=b", &cursor).is_err());
        for garbage in ["", "zz", "abc", "00", &"ab".repeat(300)] {
            assert!(decode("runs", "", garbage).is_err(), "{garbage}");
        }
    }
}
