//! Keyset paging of the newest-first listings (`/runs`, `/audit`).
//!
//! A listing asks the store for one row more than the page holds: that row exists exactly
//! when an older page does, so `next_before` is `null` on the last page even when the last
//! page is full, and a client following `next_before` never gets an empty page.

/// The rows to ask the store for, for a page of `limit`.
pub fn rows_to_fetch(limit: u32) -> u32 {
    limit.saturating_add(1)
}

/// Cuts what the store returned (at most `rows_to_fetch(limit)` rows, newest first) to one
/// page, and gives the `before` of the next page: the id of its last row, when an older row
/// was found.
pub fn page<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return (rows, None);
    }
    rows.truncate(limit);
    let next_before = rows.last().map(id);
    (rows, next_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_last_page_has_no_next_page() {
        assert_eq!(page(vec![5, 4, 3], 3, |row| *row), (vec![5, 4, 3], None));
        assert_eq!(page(vec![5, 4], 3, |row| *row), (vec![5, 4], None));
        assert_eq!(page(Vec::<i64>::new(), 3, |row| *row), (vec![], None));
    }

    #[test]
    fn an_older_row_gives_the_next_page() {
        assert_eq!(page(vec![5, 4, 3, 2], 3, |row| *row), (vec![5, 4, 3], Some(3)));
        assert_eq!(rows_to_fetch(3), 4);
        assert_eq!(rows_to_fetch(u32::MAX), u32::MAX);
    }
}
