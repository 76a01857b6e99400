//! One converted (ver 2) submission: `info`, `simpleMeasurements`, `histograms` and
//! the small sections real saved-session pings carry, shaped after the real samples
//! in `ss-ff-n-22.lzma` / `ss-ff-n-28.lzma`.
//!
//! Histogram arrays are `[bucket counts..., sum, log_sum, log_sum_squares,
//! sum_squares_lo, sum_squares_hi]`. Counts are drawn per bucket, and every sample
//! of a bucket is given one value inside that bucket, so `sum` and the other
//! statistics are exactly those of a possible sample set.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::histograms::{Definition, Kind};
use super::json::{push_f64, push_i64, push_str, push_u64, Obj};
use super::tree::{pick_weighted, Build, Dims, BUILDS};

/// A histogram definition with its bucket lower bounds, computed once per run.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub def: Definition,
    pub bounds: Vec<u64>,
}

/// Per-run inputs shared by every payload.
pub struct PayloadSpec<'a> {
    pub histograms: &'a [Prepared],
    /// Inclusive range of histograms per submission.
    pub histograms_per_submission: (usize, usize),
}

/// Appends one submission's JSON (no id, no newline) to `out`.
pub fn write_payload(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, dims: &Dims, spec: &PayloadSpec<'_>) {
    let build = dims.build();
    let os = draw_os(rng, build);
    let mut root = Obj::open(out);
    root.uint("ver", 2);
    write_info(&mut root, rng, dims, build, &os);
    if dims.reason == "android-anr-report" {
        write_anr_sections(&mut root, rng);
    } else {
        write_simple_measurements(&mut root, rng);
        write_histograms(&mut root, rng, spec);
        write_small_sections(&mut root, rng);
    }
    root.close();
}

/// The operating system a submission comes from.
struct Os {
    name: &'static str,
    version: &'static str,
    arch: &'static str,
}

fn draw_os(rng: &mut ChaCha8Rng, build: &Build) -> Os {
    if build.app == "Fennec" {
        let version = *pick_weighted(rng, ANDROID_KERNELS, |_| 1);
        return Os {
            name: "Android",
            version,
            arch: "armv7l",
        };
    }
    let roll = rng.random_range(0..100u32);
    if roll < 84 {
        let version = pick_weighted(rng, WINDOWS_VERSIONS, |&(_, w)| w).0;
        // Only nightly shipped 64-bit Windows builds in 2013.
        let win64 = build.channel == "nightly" && rng.random_bool(0.3);
        let arch = if win64 { "x86-64" } else { "x86" };
        Os {
            name: "WINNT",
            version,
            arch,
        }
    } else if roll < 94 {
        let version = pick_weighted(rng, DARWIN_VERSIONS, |&(_, w)| w).0;
        Os {
            name: "Darwin",
            version,
            arch: "x86-64",
        }
    } else {
        let version = *pick_weighted(rng, LINUX_KERNELS, |_| 1);
        let arch = if rng.random_bool(0.7) {
            "x86-64"
        } else {
            "x86"
        };
        Os {
            name: "Linux",
            version,
            arch,
        }
    }
}

/// Windows NT versions: XP, Vista, 7, 8, 8.1.
const WINDOWS_VERSIONS: &[(&str, u32)] = &[
    ("5.1", 16),
    ("6.0", 4),
    ("6.1", 58),
    ("6.2", 15),
    ("6.3", 7),
];
/// Darwin kernel versions, which is what `info.version` holds on OS X (10.6 .. 10.9).
const DARWIN_VERSIONS: &[(&str, u32)] = &[
    ("10.8.0", 10),
    ("11.4.2", 20),
    ("12.5.0", 40),
    ("13.0.0", 30),
];
const LINUX_KERNELS: &[&str] = &[
    "3.11.0-12-generic",
    "3.8.0-32-generic",
    "3.2.0-55-generic",
    "3.2.0-4-amd64",
    "3.11.6-200.fc19.x86_64",
    "3.10.17-1-ARCH",
];
const ANDROID_KERNELS: &[&str] = &[
    "3.0.31-g6fb96c9",
    "3.4.0-perf-g4f1a4c4",
    "2.6.35.7-perf",
    "3.0.8-01239-g9e2c7a4",
];
const LOCALES: &[(&str, u32)] = &[
    ("en-US", 45),
    ("de", 12),
    ("fr", 7),
    ("es-ES", 5),
    ("ru", 6),
    ("ja", 4),
    ("pl", 4),
    ("pt-BR", 4),
    ("it", 3),
    ("zh-CN", 3),
    ("en-GB", 3),
    ("nl", 2),
    ("sv-SE", 1),
    ("tr", 1),
];
/// Graphics adapters: vendor id, device id, description, Windows driver DLLs and
/// driver version.
const ADAPTERS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "0x10de",
        "0x1180",
        "NVIDIA GeForce GTX 680",
        NVIDIA_DLLS,
        "9.18.13.3165",
    ),
    (
        "0x10de",
        "0x0a20",
        "NVIDIA GeForce GT 220",
        NVIDIA_DLLS,
        "9.18.13.1106",
    ),
    (
        "0x8086",
        "0x0166",
        "Intel(R) HD Graphics 4000",
        INTEL_DLLS,
        "9.17.10.3223",
    ),
    (
        "0x8086",
        "0x0116",
        "Intel(R) HD Graphics 3000",
        INTEL_DLLS,
        "9.17.10.2932",
    ),
    (
        "0x8086",
        "0x2a42",
        "Mobile Intel(R) 4 Series Express Chipset Family",
        INTEL_DLLS,
        "8.15.10.2869",
    ),
    (
        "0x1002",
        "0x6779",
        "AMD Radeon HD 6450",
        AMD_DLLS,
        "13.152.1.8000",
    ),
    (
        "0x1002",
        "0x9802",
        "AMD Radeon HD 6310 Graphics",
        AMD_DLLS,
        "8.920.0.0",
    ),
];
const NVIDIA_DLLS: &str = "nvd3dumx,nvwgf2umx,nvwgf2umx nvd3dum,nvwgf2um,nvwgf2um";
const INTEL_DLLS: &str = "igdumd64 igd10umd64 igdumdx32 igd10umd32";
const AMD_DLLS: &str = "aticfx64 aticfx64 aticfx64 aticfx32 aticfx32 aticfx32 atiumd64 atidxx64";

fn app_id(app: &str) -> &'static str {
    match app {
        "Fennec" => "{aa3c5121-dab2-40e2-81ca-7ea25febc110}",
        "Thunderbird" => "{3550f703-e582-4d05-9a08-453d09bdfdc6}",
        _ => "{ec8030f7-c20a-464f-9b0e-13a3a9e97384}",
    }
}

/// The hg changeset a build was made from: a stable function of the build id, so
/// all submissions of a build agree.
fn revision(build: &Build) -> String {
    let repo = match build.channel {
        "nightly" => "mozilla-central",
        "aurora" => "releases/mozilla-aurora",
        "beta" => "releases/mozilla-beta",
        _ => "releases/mozilla-release",
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in build.build_id.bytes().chain(build.app.bytes()) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("http://hg.mozilla.org/{repo}/rev/{:012x}", h >> 16)
}

fn write_info(root: &mut Obj<'_>, rng: &mut ChaCha8Rng, dims: &Dims, build: &Build, os: &Os) {
    let mut info = root.object("info");
    info.str("reason", dims.reason);
    info.str("OS", os.name);
    info.str("appID", app_id(build.app));
    info.str("appVersion", build.version);
    info.str("appName", build.app);
    info.str("appBuildID", build.build_id);
    info.str("appUpdateChannel", build.channel);
    info.str("platformBuildID", build.build_id);
    info.str("revision", &revision(build));
    info.str("locale", pick_weighted(rng, LOCALES, |&(_, w)| w).0);
    info.str("version", os.version);
    info.str("arch", os.arch);
    let cpus = *pick_weighted(rng, &[1u64, 2, 2, 2, 4, 4, 4, 8], |_| 1);
    info.uint("cpucount", cpus);
    let mem_gb = *pick_weighted(rng, &[1u64, 2, 2, 3, 4, 4, 6, 8, 8, 16], |_| 1);
    info.uint("memsize", mem_gb * 1024 - rng.random_range(0..120));
    let x86 = os.arch.starts_with('x');
    for (flag, p) in [
        ("hasMMX", 1.0),
        ("hasSSE", 1.0),
        ("hasSSE2", 1.0),
        ("hasSSE3", 0.97),
        ("hasSSSE3", 0.85),
        ("hasSSE4A", 0.15),
        ("hasSSE4_1", 0.7),
        ("hasSSE4_2", 0.6),
    ] {
        info.boolean(flag, x86 && rng.random_bool(p));
    }
    for flag in ["hasEDSP", "hasARMv6", "hasARMv7", "hasNEON"] {
        info.boolean(flag, !x86);
    }
    if os.name == "Android" {
        write_android_info(&mut info, rng);
    } else {
        write_desktop_info(&mut info, rng, build, os);
    }
    if let Some(previous) = previous_build(build).filter(|_| rng.random_bool(0.3)) {
        info.str("previousBuildID", previous);
    }
    info.close();
}

/// The latest earlier build of the same app and channel: what an updated profile
/// reports as `previousBuildID`.
fn previous_build(build: &Build) -> Option<&'static str> {
    BUILDS
        .iter()
        .filter(|b| b.app == build.app && b.channel == build.channel && b.build_id < build.build_id)
        .map(|b| b.build_id)
        .max()
}

fn write_android_info(info: &mut Obj<'_>, rng: &mut ChaCha8Rng) {
    let (device, manufacturer, hardware) = *pick_weighted(
        rng,
        &[
            ("GT-I9300", "samsung", "smdk4x12"),
            ("Nexus 7", "asus", "grouper"),
            ("Nexus 4", "LGE", "mako"),
            ("HTC One", "HTC", "qcom"),
            ("XT1032", "motorola", "qcom"),
        ],
        |_| 1,
    );
    info.str("device", device);
    info.str("manufacturer", manufacturer);
    info.str("hardware", hardware);
}

fn write_desktop_info(info: &mut Obj<'_>, rng: &mut ChaCha8Rng, build: &Build, os: &Os) {
    let (vendor, device, description, dlls, driver) = *pick_weighted(rng, ADAPTERS, |_| 1);
    info.str("adapterDescription", description);
    info.str("adapterVendorID", vendor);
    info.str("adapterDeviceID", device);
    info.str(
        "adapterRAM",
        ["512", "1024", "2048", "Unknown"][rng.random_range(0..4)],
    );
    if os.name == "WINNT" {
        info.str("adapterDriver", dlls);
        info.str("adapterDriverVersion", driver);
        info.str("adapterDriverDate", "10-23-2013");
        let modern = os.version != "5.1";
        info.boolean("D2DEnabled", modern && rng.random_bool(0.8));
        info.boolean("DWriteEnabled", modern && rng.random_bool(0.85));
        if modern {
            info.str("DWriteVersion", "6.1.7601.18126");
        }
        info.boolean("isWow64", os.arch == "x86" && rng.random_bool(0.6));
    }
    if rng.random_bool(0.85) {
        let flash = [
            "11.9.900.117",
            "11.9.900.152",
            "11.8.800.175",
            "11.7.700.224",
        ];
        info.str("flashVersion", flash[rng.random_range(0..flash.len())]);
    }
    if rng.random_bool(0.6) {
        // The default theme, versioned like the app.
        let addons = format!(
            "%7B972ce4c6-7e08-4474-a285-3208198ce6fd%7D:{}",
            build.version
        );
        info.str("addons", &addons);
    }
}

/// Startup milestones in ms since process start, in their real order, plus I/O
/// counters and the nested `js` / `addonManager` objects the real pings carry.
fn write_simple_measurements(root: &mut Obj<'_>, rng: &mut ChaCha8Rng) {
    let mut sm = root.object("simpleMeasurements");
    let mut t = rng.random_range(0..2500u64);
    sm.uint("main", t);
    for key in [
        "selectProfile",
        "startupCrashDetectionBegin",
        "AMI_startup_begin",
        "XPI_startup_begin",
        "XPI_bootstrap_addons_begin",
        "XPI_bootstrap_addons_end",
        "XPI_startup_end",
        "AMI_startup_end",
        "XPI_finalUIStartup",
        "createTopLevelWindow",
        "sessionRestoreInitialized",
        "firstPaint",
        "sessionRestoreRestoring",
        "delayedStartupStarted",
        "delayedStartupFinished",
        "firstLoadURI",
        "sessionRestored",
    ] {
        t += rng.random_range(0..900u64);
        sm.uint(key, t);
    }
    sm.uint(
        "startupCrashDetectionEnd",
        t + rng.random_range(25_000..40_000),
    );
    sm.uint("uptime", log_uniform(rng, 1, 2000));
    sm.uint("debuggerAttached", 0);
    sm.uint("startupInterrupted", u64::from(rng.random_bool(0.4)));
    sm.uint("maximalNumberOfConcurrentThreads", rng.random_range(18..64));
    if rng.random_bool(0.8) {
        sm.uint("shutdownDuration", log_uniform(rng, 100, 20_000));
    }
    let read = rng.random_range(20_000_000..90_000_000u64);
    sm.uint("startupWindowVisibleReadBytes", read);
    sm.uint(
        "startupWindowVisibleWriteBytes",
        rng.random_range(100_000..5_000_000u64),
    );
    sm.uint(
        "startupSessionRestoreReadBytes",
        read + rng.random_range(0..3_000_000),
    );
    sm.uint(
        "startupSessionRestoreWriteBytes",
        rng.random_range(100_000..5_000_000u64),
    );
    let mut js = sm.object("js");
    js.uint("customIter", rng.random_range(0..20));
    js.uint("setProto", rng.random_range(0..3));
    js.close();
    let mut am = sm.object("addonManager");
    let reasons = am.key("XPIDB_startup_load_reasons");
    reasons.extend_from_slice(br#"["appChanged","directoryState"]"#);
    am.uint("XPIDB_syncRead_MS", rng.random_range(0..10));
    am.uint("XPIDB_parseDB_MS", rng.random_range(0..10));
    am.uint("XPIDB_saves_total", rng.random_range(0..20));
    am.uint("XPIDB_saves_late", rng.random_range(0..2));
    am.close();
    sm.close();
}

/// An integer spread evenly over orders of magnitude in `[lo, hi)`.
fn log_uniform(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> u64 {
    let x = rng.random_range((lo as f64).ln()..(hi as f64).ln());
    (x.exp() as u64).clamp(lo, hi - 1)
}

/// 300-400 histograms drawn without replacement (see [`sample_indices`]), written
/// in definition order; a
/// few are repeated under their `STARTUP_` name, as Firefox's
/// `gatherStartupHistograms` does (telemetry-server strips the prefix to find the
/// definition).
fn write_histograms(root: &mut Obj<'_>, rng: &mut ChaCha8Rng, spec: &PayloadSpec<'_>) {
    let (lo, hi) = spec.histograms_per_submission;
    let total = spec.histograms.len();
    let wanted = rng.random_range(lo..=hi).min(total);
    let startup = rng.random_range(0..=wanted / 20);
    let chosen = sample_indices(rng, spec.histograms, wanted - startup);
    let mut hs = root.object("histograms");
    let mut name = String::new();
    for (n, &i) in chosen.iter().enumerate() {
        let h = &spec.histograms[i];
        write_histogram(hs.key(&h.def.name), rng, h);
        if n < startup {
            name.clear();
            name.push_str("STARTUP_");
            name.push_str(&h.def.name);
            write_histogram(hs.key(&name), rng, h);
        }
    }
    hs.close();
}

/// `k` distinct histogram indices, sorted, drawn with weights `1/sqrt(n_buckets)`
/// (Efraimidis-Spirakis: keep the `k` largest `ln(u) * sqrt(n_buckets)`).
///
/// Real pings hold the histograms a session touched, which are mostly the small
/// ones: ~31 buckets on average in `ss-ff-n-28` against 101 over all definitions.
/// This weighting gives ~37 and payloads of the real size.
fn sample_indices(rng: &mut ChaCha8Rng, histograms: &[Prepared], k: usize) -> Vec<usize> {
    let mut keyed: Vec<(f64, usize)> = histograms
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            (u.ln() * (h.bounds.len() as f64).sqrt(), i)
        })
        .collect();
    if k < keyed.len() {
        keyed.select_nth_unstable_by(k, |a, b| b.0.total_cmp(&a.0));
        keyed.truncate(k);
    }
    let mut idx: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    idx.sort_unstable();
    idx
}

/// Sample statistics, accumulated the way Firefox does.
#[derive(Default)]
struct Stats {
    sum: u64,
    sum_squares: u64,
    log_sum: f64,
    log_sum_squares: f64,
}

impl Stats {
    /// `count` samples of `value`. Firefox keeps `sum_squares` in 64 bits
    /// (wrapping) and the log sums as `log(1 + value)`.
    fn add(&mut self, value: u64, count: u64, extended: bool) {
        self.sum = self.sum.wrapping_add(value.wrapping_mul(count));
        let sq = value.wrapping_mul(value);
        self.sum_squares = self.sum_squares.wrapping_add(sq.wrapping_mul(count));
        if extended {
            let l = (1.0 + value as f64).ln();
            self.log_sum += count as f64 * l;
            self.log_sum_squares += count as f64 * l * l;
        }
    }
}

/// Writes `[counts..., sum, log_sum, log_sum_squares, sum_squares_lo, sum_squares_hi]`.
fn write_histogram(out: &mut Vec<u8>, rng: &mut ChaCha8Rng, h: &Prepared) {
    let counts = draw_counts(rng, h);
    let extended = h.def.kind == Kind::Exponential && h.def.extended_statistics_ok;
    let mut stats = Stats::default();
    out.push(b'[');
    for (i, &c) in counts.iter().enumerate() {
        push_u64(out, c);
        out.push(b',');
        if c > 0 {
            stats.add(bucket_value(rng, &h.bounds, i), c, extended);
        }
    }
    push_u64(out, stats.sum);
    out.push(b',');
    if h.def.kind.carries_log_sums() {
        push_f64(out, stats.log_sum);
        out.push(b',');
        push_f64(out, stats.log_sum_squares);
        out.extend_from_slice(b",-1,-1]");
    } else {
        // Firefox 2013 reflected both halves with INT_TO_JSVAL, i.e. as int32: the
        // real samples hold negative `sum_squares_lo` values.
        out.extend_from_slice(b"-1,-1,");
        push_i64(out, i64::from(stats.sum_squares as u32 as i32));
        out.push(b',');
        push_i64(out, i64::from((stats.sum_squares >> 32) as u32 as i32));
        out.push(b']');
    }
}

/// One value inside bucket `i`: `[bounds[i], bounds[i + 1])`, the last bucket open
/// ended (Firefox's top bucket runs to INT_MAX; keep values near its start).
fn bucket_value(rng: &mut ChaCha8Rng, bounds: &[u64], i: usize) -> u64 {
    let lo = bounds[i];
    let hi = bounds.get(i + 1).copied().unwrap_or(lo + lo / 2 + 1);
    rng.random_range(lo..hi)
}

/// Bucket counts: flags hold one sample, booleans a yes/no split, enumerations a few
/// hot values, linear/exponential histograms a bell of buckets around a random
/// centre; some histograms only ever recorded zeros (bucket 0), as in real pings.
fn draw_counts(rng: &mut ChaCha8Rng, h: &Prepared) -> Vec<u64> {
    let n = h.def.n_buckets;
    let mut counts = vec![0u64; n];
    match h.def.kind {
        Kind::Flag => counts[usize::from(rng.random_bool(0.1))] = 1,
        Kind::Boolean => {
            let total = log_uniform(rng, 1, 500);
            let yes = rng.random_range(0..=total);
            counts[0] = total - yes;
            counts[1] = yes;
        }
        Kind::Enumerated => {
            for _ in 0..rng.random_range(1..=3) {
                // The top bucket (n_values) is the overflow one; values stay below.
                counts[rng.random_range(0..n - 1)] += log_uniform(rng, 1, 300);
            }
        }
        Kind::Linear | Kind::Exponential => {
            if rng.random_bool(0.15) {
                counts[0] = log_uniform(rng, 1, 50);
            } else {
                spread(rng, &mut counts);
            }
        }
    }
    counts
}

/// Distributes a sample total over a triangular window of buckets.
fn spread(rng: &mut ChaCha8Rng, counts: &mut [u64]) {
    let n = counts.len();
    let total = log_uniform(rng, 1, 5000);
    // Centres favour the lower two thirds, where real latencies and sizes sit.
    let centre = rng.random_range(0..n.saturating_mul(2) / 3 + 1).min(n - 1);
    let width = rng.random_range(0..=6usize);
    let first = centre.saturating_sub(width);
    let last = (centre + width).min(n - 1);
    let weight = |i: usize| (width + 1 - i.abs_diff(centre)) as u64;
    let weights: u64 = (first..=last).map(weight).sum();
    let mut given = 0;
    for (i, slot) in counts.iter_mut().enumerate().take(last + 1).skip(first) {
        let c = total * weight(i) / weights;
        *slot = c;
        given += c;
    }
    counts[centre] += total - given;
}

/// Sections that real saved-session pings carry, mostly empty.
fn write_small_sections(root: &mut Obj<'_>, rng: &mut ChaCha8Rng) {
    let mut slow = root.object("slowSQL");
    slow.object("mainThread").close();
    let mut other = slow.object("otherThreads");
    if rng.random_bool(0.4) {
        let v = other.key("COMMIT TRANSACTION");
        v.push(b'[');
        push_u64(v, rng.random_range(1..10));
        v.push(b',');
        push_u64(v, rng.random_range(100..2000));
        v.push(b']');
    }
    other.close();
    slow.close();
    root.key("chromeHangs")
        .extend_from_slice(br#"{"memoryMap":[],"durations":[],"stacks":[]}"#);
    root.key("lateWrites")
        .extend_from_slice(br#"{"memoryMap":[],"stacks":[]}"#);
    root.key("addonDetails")
        .extend_from_slice(br#"{"XPI":{"{972ce4c6-7e08-4474-a285-3208198ce6fd}":{"unpacked":1}}}"#);
    root.key("addonHistograms").extend_from_slice(b"{}");
}

/// Fennec's ANR reports: the Java traces and logcat as text, no histograms.
fn write_anr_sections(root: &mut Obj<'_>, rng: &mut ChaCha8Rng) {
    let mut sm = root.object("simpleMeasurements");
    sm.uint("uptime", log_uniform(rng, 1, 600));
    sm.close();
    root.key("histograms").extend_from_slice(b"{}");
    let mut anr = String::from(
        "----- pid 2315 at 2013-11-04 10:21:33 -----\nCmd line: org.mozilla.firefox\n",
    );
    for frame in 0..rng.random_range(20..60) {
        anr.push_str(&format!(
            "  at org.mozilla.gecko.GeckoAppShell.sendEventToGecko(GeckoAppShell.java:{})\n",
            200 + frame
        ));
    }
    push_str(root.key("androidANR"), &anr);
    let mut logcat = String::new();
    for line in 0..rng.random_range(40..120) {
        logcat.push_str(&format!(
            "11-04 10:21:{:02}.{:03} I/GeckoApp( 2315): event {}\n",
            line % 60,
            rng.random_range(0..1000),
            line
        ));
    }
    push_str(root.key("androidLogcat"), &logcat);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::histograms::{bucket_boundaries, default_definitions};
    use crate::gen::tree::Date;
    use rand::SeedableRng;

    fn prepared() -> Vec<Prepared> {
        default_definitions()
            .into_iter()
            .map(|def| Prepared {
                bounds: bucket_boundaries(&def),
                def,
            })
            .collect()
    }

    #[test]
    fn histograms_have_consistent_statistics() {
        let hs = prepared();
        let spec = PayloadSpec {
            histograms: &hs,
            histograms_per_submission: (300, 400),
        };
        let dims = Dims {
            reason: "saved-session",
            build: 0,
            submission_date: Date::new(2013, 11, 1),
        };
        assert_eq!(BUILDS[0].app, "Firefox");
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            let mut out = Vec::new();
            write_payload(&mut out, &mut rng, &dims, &spec);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let histograms = v["histograms"].as_object().unwrap();
            assert!((300..=400).contains(&histograms.len()));
            for (name, arr) in histograms {
                let find = |n: &str| hs.iter().find(|h| h.def.name == n);
                let h = find(name)
                    .or_else(|| find(name.strip_prefix("STARTUP_")?))
                    .unwrap();
                let arr = arr.as_array().unwrap();
                assert_eq!(arr.len(), h.def.n_buckets + 5, "{name}");
                let counts: Vec<u64> = arr[..h.def.n_buckets]
                    .iter()
                    .map(|c| c.as_u64().unwrap())
                    .collect();
                let stats = &arr[h.def.n_buckets..];
                let sum = stats[0].as_u64().unwrap();
                // Every sample lies in its bucket: lower bound <= sum < upper bound.
                let lower: u64 = counts.iter().zip(&h.bounds).map(|(c, b)| c * b).sum();
                assert!(sum >= lower, "{name}: sum {sum} < {lower}");
                let carried_by_kind = [stats[1] != -1, stats[3] != -1];
                let log_kind = h.def.kind == Kind::Exponential;
                assert_eq!(carried_by_kind, [log_kind, !log_kind], "{name}: {stats:?}");
            }
        }
    }
}
