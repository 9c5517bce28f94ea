//! Byte sizes as humans write them: `"5MB"` (SI, 5·10^6) and `"5MiB"` (binary, 5·2^20),
//! matching the server's `body_limit` convention so one spelling means one number everywhere.

/// Parses `"500KB"`, `"5MB"`, `"5MiB"`, `"1GB"`, `"1024"`, `"10 B"` into bytes.
/// Units are case-insensitive; the number must be a whole number.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "max_size \"{s}\" is not a size (write e.g. \"5MB\", \"5MiB\", \"500KB\", \"1GB\" or a number of bytes)"
        )
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("max_size \"{s}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn units() {
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("5MiB"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_size("500KB"), Ok(500_000));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10 kib"), Ok(10_240));
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("MB").is_err());
        assert!(parse_size("-5MB").is_err());
        assert!(parse_size("1.5MB").is_err());
        assert!(parse_size("99999999999999TB").is_err());
    }
}
