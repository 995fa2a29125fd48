//! RFC 3339 timestamps without a calendar crate: state.json's `created` and the log lines.

use std::time::{SystemTime, UNIX_EPOCH};

/// `2026-11-22T05:34:06.123456789Z` for `t` (UTC, nanoseconds, as runc prints `created`).
pub fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, hms) = civil(d.as_secs());
    format!("{date}T{hms}.{:09}Z", d.subsec_nanos())
}

/// `2026-11-22T05:34:06Z`, the shape logrus writes in JSON logs.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (date, hms) = civil(d.as_secs());
    format!("{date}T{hms}Z")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's days_from_civil
/// inverse), and the time of day.
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}-{month:02}-{day:02}"), format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        let t = UNIX_EPOCH + Duration::new(0, 5);
        assert_eq!(rfc3339_nanos(t), "1970-01-01T00:00:00.000000005Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(rfc3339_seconds(t), "2000-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_325_646);
        assert_eq!(rfc3339_seconds(t), "2026-11-22T05:34:06Z");
    }
}
