//! What the published tree contains: the catalogue of apps, channels, versions and
//! builds (late October / November 2013, the epoch of the real samples), how
//! submissions are spread over them, and the object keys.
//!
//! Every submission's dimensions are drawn up front from the master RNG and grouped
//! by key prefix; each group is then an independent unit of work whose content and
//! file names come from its own RNG stream, so the tree does not depend on how the
//! groups are scheduled over threads.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One application build that sends telemetry.
#[derive(Debug)]
pub struct Build {
    pub app: &'static str,
    pub channel: &'static str,
    pub version: &'static str,
    /// `YYYYMMDDhhmmss`.
    pub build_id: &'static str,
    /// Relative share of submissions within its app.
    pub weight: u32,
}

const fn b(
    app: &'static str,
    channel: &'static str,
    version: &'static str,
    build_id: &'static str,
    weight: u32,
) -> Build {
    Build {
        app,
        channel,
        version,
        build_id,
        weight,
    }
}

/// Merge day was 2013-10-28: nightly 28.0a1, aurora 27.0a2, beta 26.0, release 25.0
/// (shipped 10-29). Older releases keep submitting, months after their build date.
/// Nightly and aurora get a build a day, beta one a week, release one per version.
/// Weights favour release but over-represent pre-release channels, where telemetry
/// was on by default.
pub static BUILDS: &[Build] = &[
    b("Firefox", "release", "25.0", "20131025151332", 330),
    b("Firefox", "release", "24.0", "20130910160258", 90),
    b("Firefox", "release", "23.0.1", "20130814063812", 20),
    b("Firefox", "beta", "26.0", "20131029141119", 60),
    b("Firefox", "beta", "26.0", "20131101144143", 60),
    b("Firefox", "beta", "26.0", "20131105175044", 60),
    b("Firefox", "beta", "26.0", "20131108132542", 40),
    b("Firefox", "beta", "25.0", "20131021145025", 20),
    b("Firefox", "aurora", "27.0a2", "20131028004002", 20),
    b("Firefox", "aurora", "27.0a2", "20131030004002", 20),
    b("Firefox", "aurora", "27.0a2", "20131102004002", 20),
    b("Firefox", "aurora", "27.0a2", "20131105004003", 20),
    b("Firefox", "aurora", "27.0a2", "20131108004001", 20),
    b("Firefox", "nightly", "28.0a1", "20131029030201", 30),
    b("Firefox", "nightly", "28.0a1", "20131031030205", 30),
    b("Firefox", "nightly", "28.0a1", "20131102030202", 30),
    b("Firefox", "nightly", "28.0a1", "20131104030204", 30),
    b("Firefox", "nightly", "28.0a1", "20131106030201", 30),
    b("Firefox", "nightly", "28.0a1", "20131108030204", 30),
    b("Firefox", "nightly", "27.0a1", "20131027030203", 10),
    b("Fennec", "release", "25.0", "20131025183012", 40),
    b("Fennec", "release", "24.0", "20130913184010", 10),
    b("Fennec", "beta", "26.0", "20131029164407", 15),
    b("Fennec", "beta", "26.0", "20131105184318", 15),
    b("Fennec", "aurora", "27.0a2", "20131030004004", 8),
    b("Fennec", "aurora", "27.0a2", "20131106004003", 8),
    b("Fennec", "nightly", "28.0a1", "20131030030204", 6),
    b("Fennec", "nightly", "28.0a1", "20131106030203", 6),
    b("Thunderbird", "release", "24.1.0", "20131028113147", 40),
    b("Thunderbird", "release", "24.0.1", "20131011001219", 20),
    b("Thunderbird", "beta", "25.0", "20131016134317", 10),
];

/// App shares of all submissions (Firefox, Fennec, Thunderbird).
const APP_WEIGHTS: &[(&str, u32)] = &[("Firefox", 85), ("Fennec", 10), ("Thunderbird", 5)];

/// First and last submission date of the generated tree (2013-10-29 .. 2013-11-12).
pub const FIRST_SUBMISSION: Date = Date::new(2013, 10, 29);
pub const LAST_SUBMISSION: Date = Date::new(2013, 11, 12);

/// A calendar day, stored as days since 1970-01-01 so ranges are arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i64);

impl Date {
    /// Howard Hinnant's `days_from_civil`.
    pub const fn new(y: i64, m: u32, d: u32) -> Date {
        let y = if m <= 2 { y - 1 } else { y };
        let era = (if y >= 0 { y } else { y - 399 }) / 400;
        let yoe = y - era * 400;
        let mp = (m as i64 + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Date(era * 146_097 + doe - 719_468)
    }

    /// Parses the `YYYYMMDD` prefix of a date or build id.
    pub fn from_yyyymmdd(s: &str) -> Option<Date> {
        let digits = s.get(..8)?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let n: u32 = digits.parse().ok()?;
        Some(Date::new((n / 10_000) as i64, n / 100 % 100, n % 100))
    }

    /// Howard Hinnant's `civil_from_days`.
    pub fn ymd(self) -> (i64, u32, u32) {
        let z = self.0 + 719_468;
        let era = (if z >= 0 { z } else { z - 146_096 }) / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    /// `YYYYMMDD`, the submission-date dimension.
    pub fn yyyymmdd(self) -> String {
        let (y, m, d) = self.ymd();
        format!("{y:04}{m:02}{d:02}")
    }
}

/// The dimensions shared by every submission of one group, i.e. one key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dims {
    /// The raw `info.reason` (`saved-session`), sanitised only in the key.
    pub reason: &'static str,
    /// Index into [`BUILDS`].
    pub build: usize,
    pub submission_date: Date,
}

impl Dims {
    pub fn build(&self) -> &'static Build {
        &BUILDS[self.build]
    }
}

/// A group of submissions written to the same key prefix (one or more files).
#[derive(Debug, Clone)]
pub struct Group {
    pub dims: Dims,
    pub submissions: u64,
}

/// Draws the dimensions of `submissions` submissions and groups them, in key
/// order (BTreeMap), so group indices are stable for a given seed and count.
pub fn plan(rng: &mut ChaCha8Rng, submissions: u64) -> Vec<Group> {
    let mut groups: BTreeMap<Dims, u64> = BTreeMap::new();
    for _ in 0..submissions {
        *groups.entry(draw_dims(rng)).or_default() += 1;
    }
    groups
        .into_iter()
        .map(|(dims, submissions)| Group { dims, submissions })
        .collect()
}

fn draw_dims(rng: &mut ChaCha8Rng) -> Dims {
    let app = pick_weighted(rng, APP_WEIGHTS, |&(_, w)| w).0;
    let builds: Vec<(usize, &Build)> = BUILDS
        .iter()
        .enumerate()
        .filter(|(_, b)| b.app == app)
        .collect();
    let (build, chosen) = *pick_weighted(rng, &builds, |(_, b)| b.weight);
    let reason = draw_reason(rng, app);
    Dims {
        reason,
        build,
        submission_date: draw_submission_date(rng, chosen),
    }
}

/// saved-session dominates; idle-daily pings come from long-running sessions;
/// Fennec also reports Android "application not responding" events.
fn draw_reason(rng: &mut ChaCha8Rng, app: &str) -> &'static str {
    let roll = rng.random_range(0..100u32);
    match (app, roll) {
        ("Fennec", 0..=5) => "android-anr-report",
        (_, 0..=13) => "idle-daily",
        _ => "saved-session",
    }
}

/// A day in the submission window, never before the build date; submissions thin
/// out with the age of the build in the window (users update).
fn draw_submission_date(rng: &mut ChaCha8Rng, build: &Build) -> Date {
    let built = Date::from_yyyymmdd(build.build_id).expect("catalogue build ids are dates");
    let first = built.max(FIRST_SUBMISSION).0;
    let last = LAST_SUBMISSION.0;
    // Two uniform draws, keep the earlier one more often: a mild decay.
    let a = rng.random_range(first..=last);
    let b = rng.random_range(first..=last);
    Date(if rng.random_bool(0.6) {
        a.min(b)
    } else {
        a.max(b)
    })
}

/// Picks one element with probability proportional to `weight`.
pub fn pick_weighted<'a, T>(
    rng: &mut ChaCha8Rng,
    items: &'a [T],
    weight: impl Fn(&T) -> u32,
) -> &'a T {
    let total: u32 = items.iter().map(&weight).sum();
    let mut roll = rng.random_range(0..total);
    for item in items {
        let w = weight(item);
        if roll < w {
            return item;
        }
        roll -= w;
    }
    unreachable!("roll < total")
}

pub use crate::logs::sanitize;

/// `reason/appName/channel/version/buildId.submissionDate.v2.log.<uuid>.<ext>`, built by
/// the same code the reader parses keys with.
pub fn object_key(dims: &Dims, uuid_hex: &str, ext: &str) -> String {
    let b = dims.build();
    let dimensions = crate::logs::Dimensions {
        reason: sanitize(dims.reason),
        app_name: sanitize(b.app),
        channel: sanitize(b.channel),
        version: sanitize(b.version),
        build_id: sanitize(b.build_id),
        submission_date: dims.submission_date.yyyymmdd(),
    };
    crate::logs::object_key(&dimensions, uuid_hex, ext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn dates_round_trip() {
        assert_eq!(Date::new(1970, 1, 1), Date(0));
        assert_eq!(Date::new(2013, 11, 1).yyyymmdd(), "20131101");
        assert_eq!(Date::new(2013, 10, 31).0 + 1, Date::new(2013, 11, 1).0);
        assert_eq!(Date::new(2012, 2, 29).0 + 1, Date::new(2012, 3, 1).0);
        let d = Date::from_yyyymmdd("20131029030201").unwrap();
        assert_eq!(d.ymd(), (2013, 10, 29));
    }

    #[test]
    fn catalogue_needs_no_sanitising_beyond_reasons() {
        for b in BUILDS {
            for v in [b.app, b.channel, b.version, b.build_id] {
                assert_eq!(sanitize(v), v);
            }
            assert_eq!(b.build_id.len(), 14);
            assert!(Date::from_yyyymmdd(b.build_id).unwrap() <= LAST_SUBMISSION);
        }
        assert_eq!(sanitize("saved-session"), "saved_session");
    }

    #[test]
    fn plan_is_spread_and_dated_after_builds() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let groups = plan(&mut rng, 5000);
        assert_eq!(groups.iter().map(|g| g.submissions).sum::<u64>(), 5000);
        assert!(groups.len() > 100, "only {} groups", groups.len());
        let mut late = 0;
        for g in &groups {
            let built = Date::from_yyyymmdd(g.dims.build().build_id).unwrap();
            assert!(g.dims.submission_date >= built);
            late += u64::from(g.dims.submission_date.0 - built.0 > 60) * g.submissions;
        }
        assert!(late > 0, "no submission more than 60 days after its build");
    }
}
