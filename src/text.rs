//! Text that came from a client, made safe to echo in an error or a log line.

/// `s` cut to `max` characters with control characters replaced, safe to echo in an error.
pub fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_cuts_and_cleans() {
        assert_eq!(printable("ab\ncd", 10), "ab?cd");
        assert_eq!(printable("abcdef", 3), "abc…");
    }
}
