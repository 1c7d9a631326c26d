//! Counts in words: "1 test passed", "2 tests passed".

/// `n` and the noun that fits it.
pub(crate) fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular() {
        assert_eq!(super::plural(1u32, "test", "tests"), "1 test");
        assert_eq!(super::plural(0u32, "test", "tests"), "0 tests");
        assert_eq!(super::plural(2u32, "test", "tests"), "2 tests");
    }
}
