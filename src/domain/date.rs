//! Calendar arithmetic (no clock: callers pass the time in).

/// Days since 1970-01-01 (negative before it) to `(year, month 1-12, day 1-31)`, proleptic
/// Gregorian: H. Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // doy, mp are in 0..366 and 0..12, so the day and month fit in u32.
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Unix seconds as the UTC `YYYY-MM-DD{separator}HH:MM:SS` (`T` for RFC 3339, a space for
/// people).
pub fn utc_date_time(secs: i64, separator: char) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}{separator}{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::{civil_from_days, utc_date_time};

    #[test]
    fn known_instants() {
        assert_eq!(utc_date_time(0, ' '), "1970-01-01 00:00:00");
        // 2000-02-29 12:34:56 UTC = 951827696 (leap day of a century leap year).
        assert_eq!(utc_date_time(951_827_696, ' '), "2000-02-29 12:34:56");
        // `date -u -d @-1 '+%F %T'`.
        assert_eq!(utc_date_time(-1, 'T'), "1969-12-31T23:59:59");
    }

    #[test]
    fn known_days() {
        // Reference points from `date -u -d @(N*86400) +%F`.
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(47_482), (2100, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
