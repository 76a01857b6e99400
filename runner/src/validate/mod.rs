//! `spotmill validate`: the check an analyst's CI runs before submitting a component.
//!
//! It loads the component the way a worker does, then dry-runs it on sample submissions
//! under the production limits, one record per call so that every number is per record,
//! and checks the contract: the merge must be associative and commutative, publish must
//! return safe paths, the analysis must not need what the sandbox never gives (files,
//! network, environment) and must not flood its logs.

mod samples;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::job::output::safe_join;
use crate::sandbox::bindings::mapper::Submission;
use crate::sandbox::{
    import_is_provided, CallError, FuelMeter, LoadedAnalysis, MapperInstance, ReducerInstance,
    Sandbox,
};

pub use samples::{load_samples, SampleRecord, SampleSource};

/// What to validate with.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// The job's parameters for `setup`.
    pub params: String,
    /// Price of one CPU-hour, for the projected cost per GB.
    pub cpu_hour_price: f64,
    /// Stop the dry-run after this many failed records.
    pub max_failures: usize,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            params: String::new(),
            cpu_hour_price: 0.02,
            max_failures: 5,
        }
    }
}

/// One check, passed or not, with what was seen.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Percentiles of a per-record measure.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Spread {
    fn of(mut values: Vec<u64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_unstable();
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Spread {
            p50: at(0.5),
            p99: at(0.99),
            max: *values.last().expect("not empty"),
        }
    }
}

/// Everything `spotmill validate` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ValidationReport {
    pub component: String,
    pub sha256: String,
    pub size_bytes: usize,
    pub exports_mapper: bool,
    pub exports_reducer: bool,
    pub imports: Vec<String>,
    pub compile_ms: f64,
    pub from_cache: bool,
    pub instantiate_ms: f64,
    pub sample_source: String,
    pub records: u64,
    pub record_bytes: u64,
    pub fuel_per_record: Spread,
    pub micros_per_record: Spread,
    pub peak_memory_bytes: u64,
    pub max_flush_bytes: u64,
    pub published_files: Vec<String>,
    pub fuel_per_gb: f64,
    pub cpu_seconds_per_gb: f64,
    pub cost_per_gb: f64,
    pub checks: Vec<Check>,
    pub passed: bool,
}

impl ValidationReport {
    fn check(&mut self, name: &str, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            passed,
            detail: detail.into(),
        });
    }
}

/// Validates a component. Never fails itself: every problem is a failed check.
pub fn validate(
    sandbox: &Sandbox,
    name: &str,
    bytes: &[u8],
    samples: &SampleSource,
    options: &ValidateOptions,
) -> ValidationReport {
    let mut report = ValidationReport {
        component: name.to_string(),
        size_bytes: bytes.len(),
        sample_source: samples.description.clone(),
        ..ValidationReport::default()
    };
    let Some(analysis) = load(sandbox, name, bytes, &mut report) else {
        report.passed = false;
        return report;
    };
    let partials = dry_run(&analysis, &samples.records, options, &mut report);
    if let Some(partials) = partials {
        check_reducer(&analysis, &partials, options, &mut report);
    }
    project_cost(options, &mut report);
    report.passed = report.checks.iter().all(|c| c.passed);
    report
}

/// Compiles and links, recording the component's shape.
fn load(
    sandbox: &Sandbox,
    name: &str,
    bytes: &[u8],
    report: &mut ValidationReport,
) -> Option<LoadedAnalysis> {
    let compiled = match sandbox.compile_checked(name, bytes) {
        Ok(compiled) => compiled,
        Err(e) => {
            report.check("component", false, format!("{e:#}"));
            return None;
        }
    };
    report.sha256 = compiled.hash.clone();
    report.compile_ms = ms(compiled.compile_time);
    report.from_cache = compiled.from_cache;
    report.imports = compiled.imports.clone();
    report.check(
        "component",
        true,
        format!("a WebAssembly component of {} bytes", bytes.len()),
    );
    let offending: Vec<&str> = compiled
        .imports
        .iter()
        .map(String::as_str)
        .filter(|i| !import_is_provided(i))
        .collect();
    report.check(
        "imports",
        offending.is_empty(),
        if offending.is_empty() {
            format!(
                "{} imports, all provided by the sandbox (WASI p2, nothing granted)",
                compiled.imports.len()
            )
        } else {
            format!(
                "imports the sandbox does not provide: {}",
                offending.join(", ")
            )
        },
    );
    if !offending.is_empty() {
        return None;
    }
    match sandbox.link(compiled) {
        Ok(analysis) => {
            (report.exports_mapper, report.exports_reducer) = analysis.exports();
            let world = match analysis.exports() {
                (true, true) => "analysis (mapper and reducer): runs with `spotmill run`",
                (true, false) => "map-only: needs a separate reducer",
                _ => "reduce-only: needs a separate mapper",
            };
            report.check("exports", true, world);
            Some(analysis)
        }
        Err(e) => {
            report.check("exports", false, format!("{e:#}"));
            None
        }
    }
}

/// Maps every sample record alone, measuring each; flushes at three points so the
/// reducer checks have three partials. Returns them, or None when there is no mapper.
fn dry_run(
    analysis: &LoadedAnalysis,
    samples: &[SampleRecord],
    options: &ValidateOptions,
    report: &mut ValidationReport,
) -> Option<Vec<Vec<u8>>> {
    if !report.exports_mapper {
        return Some(Vec::new());
    }
    let limits = analysis.sandbox.limits().clone();
    let mut meter = FuelMeter::new(u64::MAX);
    let started = Instant::now();
    let mut mapper = match MapperInstance::start(analysis, &options.params, &mut meter) {
        Ok(mapper) => mapper,
        Err(e) => {
            report.check(
                "instantiate",
                false,
                format!("instantiate and setup failed: {e}"),
            );
            return None;
        }
    };
    report.instantiate_ms = ms(started.elapsed());
    report.check(
        "instantiate",
        true,
        format!("instantiate and setup in {:.2} ms", report.instantiate_ms),
    );

    let mut run = DryRun::default();
    run.started(&mapper);
    let cuts = [samples.len() / 3, 2 * samples.len() / 3];
    let mut partials = Vec::new();
    for (index, sample) in samples.iter().enumerate() {
        if cuts.contains(&index) && index > 0 && !run.flush(&mut mapper, &mut meter, &mut partials)
        {
            mapper = run.restart(analysis, options, &mut meter, report)?;
        }
        if run.failures.len() >= options.max_failures {
            break;
        }
        let submission = Submission {
            id: sample.id.clone(),
            dimensions: crate::task::wit_dimensions(&sample.dimensions),
            json: sample.json.clone(),
        };
        let fuel_before = meter.used();
        let call_started = Instant::now();
        let result = mapper.map(std::slice::from_ref(&submission), &mut meter);
        run.micros.push(call_started.elapsed().as_micros() as u64);
        run.fuel.push(meter.used() - fuel_before);
        report.records += 1;
        report.record_bytes += sample.json.len() as u64;
        run.observe(&mapper);
        match result {
            Ok(rejected) => {
                if let Some(error) = rejected.into_iter().next() {
                    run.rejected.push(format!(
                        "{} ({}): {}",
                        sample.id, sample.origin, error.message
                    ));
                }
            }
            Err(e) => {
                run.failures
                    .push(format!("{} ({}): {e}", sample.id, sample.origin));
                mapper = run.restart(analysis, options, &mut meter, report)?;
            }
        }
    }
    let _ = run.flush(&mut mapper, &mut meter, &mut partials);
    run.report(&limits, report);
    Some(partials)
}

/// What the dry-run saw.
#[derive(Default)]
struct DryRun {
    fuel: Vec<u64>,
    micros: Vec<u64>,
    failures: Vec<String>,
    rejected: Vec<String>,
    flush_errors: Vec<String>,
    max_flush: u64,
    peak_memory: u64,
    log_dropped: u64,
    /// Reads after setup: language runtimes (CPython, say) read the environment while
    /// they start, which is not the analysis's doing.
    environment_reads: u64,
    environment_reads_at_start: u64,
}

impl DryRun {
    /// A fresh instance after a failure left the last one unusable; None (and a failed
    /// check) when even a fresh one does not start.
    fn restart(
        &mut self,
        analysis: &LoadedAnalysis,
        options: &ValidateOptions,
        meter: &mut FuelMeter,
        report: &mut ValidationReport,
    ) -> Option<MapperInstance> {
        match MapperInstance::start(analysis, &options.params, meter) {
            Ok(fresh) => {
                self.started(&fresh);
                Some(fresh)
            }
            Err(e) => {
                report.check(
                    "instantiate",
                    false,
                    format!("a fresh instance failed: {e}"),
                );
                None
            }
        }
    }

    /// Notes a freshly started instance.
    fn started(&mut self, mapper: &MapperInstance) {
        self.environment_reads_at_start = mapper.stats().environment_reads;
    }

    fn observe(&mut self, mapper: &MapperInstance) {
        let stats = mapper.stats();
        self.peak_memory = self.peak_memory.max(stats.peak_memory);
        self.log_dropped += stats.log_dropped;
        let reads = stats
            .environment_reads
            .saturating_sub(self.environment_reads_at_start);
        self.environment_reads = self.environment_reads.max(reads);
    }

    /// Flushes into `partials`; false when the flush failed (the instance is then unusable).
    fn flush(
        &mut self,
        mapper: &mut MapperInstance,
        meter: &mut FuelMeter,
        partials: &mut Vec<Vec<u8>>,
    ) -> bool {
        let result = mapper.flush(meter);
        self.observe(mapper);
        match result {
            Ok(partial) => {
                self.max_flush = self.max_flush.max(partial.len() as u64);
                partials.push(partial);
                true
            }
            Err(e) => {
                self.flush_errors.push(e.to_string());
                false
            }
        }
    }

    fn report(self, limits: &crate::sandbox::Limits, report: &mut ValidationReport) {
        report.fuel_per_record = Spread::of(self.fuel);
        report.micros_per_record = Spread::of(self.micros);
        report.peak_memory_bytes = self.peak_memory;
        report.max_flush_bytes = self.max_flush;
        report.check(
            "map",
            self.failures.is_empty(),
            summarise(
                &self.failures,
                "every sample record mapped within the limits",
                "records failed",
            ),
        );
        report.check(
            "records accepted",
            self.rejected.is_empty(),
            summarise(
                &self.rejected,
                "no sample record was rejected",
                "sample records were rejected",
            ),
        );
        report.check(
            "flush",
            self.flush_errors.is_empty(),
            summarise(
                &self.flush_errors,
                &format!(
                    "largest partial {} bytes (cap {})",
                    self.max_flush, limits.max_output_bytes
                ),
                "flushes failed",
            ),
        );
        report.check(
            "logs",
            self.log_dropped == 0,
            if self.log_dropped == 0 {
                "log output within the cap".to_string()
            } else {
                format!(
                    "wrote {} bytes of logs past the {}-byte cap (they are dropped in production: log less)",
                    self.log_dropped, limits.max_log_bytes
                )
            },
        );
        report.check(
            "environment",
            self.environment_reads == 0,
            if self.environment_reads == 0 {
                "does not look for environment variables or arguments".to_string()
            } else {
                format!(
                    "read environment variables, arguments or the working directory {} times: the sandbox \
                     gives none; pass settings as job parameters (--params) instead",
                    self.environment_reads
                )
            },
        );
    }
}

fn summarise(items: &[String], ok: &str, what: &str) -> String {
    if items.is_empty() {
        return ok.to_string();
    }
    let shown: Vec<&str> = items.iter().take(3).map(String::as_str).collect();
    format!("{} {what}; {}", items.len(), shown.join("; "))
}

/// Merges the dry-run's partials in different groupings and orders, then publishes.
fn check_reducer(
    analysis: &LoadedAnalysis,
    partials: &[Vec<u8>],
    options: &ValidateOptions,
    report: &mut ValidationReport,
) {
    if !report.exports_reducer {
        return;
    }
    let mut meter = FuelMeter::new(u64::MAX);
    let mut reducer = match ReducerInstance::start(analysis, &options.params, &mut meter) {
        Ok(reducer) => reducer,
        Err(e) => {
            report.check("merge", false, format!("the reducer did not start: {e}"));
            return;
        }
    };
    let mut parts: Vec<Vec<u8>> = partials.to_vec();
    parts.resize(3, Vec::new());
    let (a, b, c) = (&parts[0], &parts[1], &parts[2]);
    let merged = (|| -> Result<_, CallError> {
        let ab = reducer.merge(&[a.clone(), b.clone()], &mut meter)?;
        let ba = reducer.merge(&[b.clone(), a.clone()], &mut meter)?;
        let bc = reducer.merge(&[b.clone(), c.clone()], &mut meter)?;
        let ab_c = reducer.merge(&[ab.clone(), c.clone()], &mut meter)?;
        let a_bc = reducer.merge(&[a.clone(), bc], &mut meter)?;
        let a_empty = reducer.merge(&[a.clone(), Vec::new()], &mut meter)?;
        let a_alone = reducer.merge(std::slice::from_ref(a), &mut meter)?;
        Ok((ab, ba, ab_c, a_bc, a_empty, a_alone))
    })();
    let (ab, ba, ab_c, a_bc, a_empty, a_alone) = match merged {
        Ok(merged) => merged,
        Err(e) => {
            report.check("merge", false, format!("merge failed: {e}"));
            return;
        }
    };
    report.check("merge", true, "merged the dry-run's partials");
    report.check(
        "merge associative",
        same_partial(&ab_c, &a_bc),
        "merge(merge(a, b), c) and merge(a, merge(b, c)) must be equal",
    );
    report.check(
        "merge commutative",
        same_partial(&ab, &ba),
        "merge(a, b) and merge(b, a) must be equal",
    );
    report.check(
        "empty partial",
        same_partial(&a_empty, &a_alone),
        "the empty partial (empty bytes) must be the identity of merge",
    );
    match reducer.publish(&ab_c, &mut meter) {
        Ok(files) => {
            let bad: Vec<String> = files
                .iter()
                .filter_map(|f| {
                    safe_join(std::path::Path::new("out"), &f.path)
                        .err()
                        .map(|e| e.to_string())
                })
                .collect();
            report.published_files = files.iter().map(|f| f.path.clone()).collect();
            report.check(
                "publish",
                bad.is_empty() && !files.is_empty(),
                if !bad.is_empty() {
                    bad.join("; ")
                } else if files.is_empty() {
                    "publish returned no files".to_string()
                } else {
                    format!(
                        "{} files: {}",
                        files.len(),
                        report.published_files.join(", ")
                    )
                },
            );
        }
        Err(e) => report.check("publish", false, format!("publish failed: {e}")),
    }
}

/// Partials are equal if their bytes are, or if both are JSON and the values are (a
/// language whose maps keep insertion order may serialise equal maps differently).
fn same_partial(x: &[u8], y: &[u8]) -> bool {
    if x == y {
        return true;
    }
    match (
        serde_json::from_slice::<serde_json::Value>(x),
        serde_json::from_slice::<serde_json::Value>(y),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Fuel and CPU time per GB of uncompressed input, from the dry-run's per-record numbers.
fn project_cost(options: &ValidateOptions, report: &mut ValidationReport) {
    if report.record_bytes == 0 {
        return;
    }
    let per_byte = 1e9 / report.record_bytes as f64;
    let fuel: f64 = report.fuel_per_record.p50 as f64 * report.records as f64;
    let micros: f64 = report.micros_per_record.p50 as f64 * report.records as f64;
    report.fuel_per_gb = fuel * per_byte;
    report.cpu_seconds_per_gb = micros / 1e6 * per_byte;
    report.cost_per_gb = report.cpu_seconds_per_gb / 3600.0 * options.cpu_hour_price;
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl std::fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "component  {} ({} bytes, sha256 {})",
            self.component, self.size_bytes, self.sha256
        )?;
        writeln!(
            f,
            "compile    {:.0} ms{}, instantiate {:.2} ms",
            self.compile_ms,
            if self.from_cache { " (from cache)" } else { "" },
            self.instantiate_ms
        )?;
        writeln!(
            f,
            "samples    {} records, {} bytes ({})",
            self.records, self.record_bytes, self.sample_source
        )?;
        writeln!(
            f,
            "per record fuel p50 {} p99 {} max {}; time p50 {} us p99 {} us",
            self.fuel_per_record.p50,
            self.fuel_per_record.p99,
            self.fuel_per_record.max,
            self.micros_per_record.p50,
            self.micros_per_record.p99
        )?;
        writeln!(
            f,
            "memory     peak {:.1} MiB; largest flush {} bytes",
            self.peak_memory_bytes as f64 / (1 << 20) as f64,
            self.max_flush_bytes
        )?;
        writeln!(
            f,
            "projected  {:.3e} fuel/GB, {:.1} CPU-s/GB, {:.5} per GB",
            self.fuel_per_gb, self.cpu_seconds_per_gb, self.cost_per_gb
        )?;
        for check in &self.checks {
            writeln!(
                f,
                "  [{}] {}: {}",
                if check.passed { "pass" } else { "FAIL" },
                check.name,
                check.detail
            )?;
        }
        write!(f, "{}", if self.passed { "valid" } else { "INVALID" })
    }
}
