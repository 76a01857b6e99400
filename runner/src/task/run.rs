//! Running one task: read, batch, map, checkpoint, recover, merge.

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::logs::{open_decoder, ContainerError, LogItem, RecordReader};
use crate::sandbox::bindings::mapper::Submission;
use crate::sandbox::{
    CallError, FuelMeter, GuestFailure, LoadedAnalysis, MapperInstance, ReducerInstance,
};
use crate::store::{InputFile, InputSource};

use super::batch::{wit_dimensions, Batch, RecordRef, TaskSpec};
use super::report::{FileError, Quarantine, TaskFailure, TaskReport};

/// How records are cut into calls.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    /// Records per `map` call at most.
    pub batch_records: usize,
    /// Bytes of JSON per `map` call at most (a batch holds at least one record).
    pub batch_bytes: usize,
    /// Input bytes between two flushes: the most a failure makes us replay.
    pub checkpoint_bytes: usize,
    /// Longer lines are skipped and counted.
    pub max_line_bytes: usize,
    /// Partials kept before they are merged into one.
    pub merge_fan_in: usize,
    /// The job's parameters (JSON text) for `setup`.
    pub params: String,
}

impl Default for TaskOptions {
    fn default() -> Self {
        TaskOptions {
            batch_records: 64,
            batch_bytes: 4 << 20,
            checkpoint_bytes: 64 << 20,
            max_line_bytes: 8 << 20,
            merge_fan_in: 16,
            params: String::new(),
        }
    }
}

/// Live counters a progress display reads while tasks run; shared by all workers.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_compressed: AtomicU64,
    pub bytes_uncompressed: AtomicU64,
    pub records: AtomicU64,
    pub quarantined: AtomicU64,
}

/// Runs a task to its partial result, or to a failure that says why.
pub fn run_task(
    analysis: &LoadedAnalysis,
    source: &dyn InputSource,
    spec: &TaskSpec,
    options: &TaskOptions,
    counters: &Arc<Counters>,
) -> super::TaskResult {
    let mut run = TaskRun {
        analysis,
        source,
        spec,
        options,
        counters,
        meter: FuelMeter::new(analysis.sandbox.limits().fuel_per_task),
        mapper: None,
        reducer: None,
        window: Vec::new(),
        window_bytes: 0,
        partials: Vec::new(),
        quarantined: HashSet::new(),
        report: TaskReport {
            task: spec.id.clone(),
            task_files: spec.files.iter().map(|f| f.key.clone()).collect(),
            ..TaskReport::default()
        },
    };
    let started = Instant::now();
    let result = run.run();
    let mut report = std::mem::take(&mut run.report);
    report.fuel_used = run.meter.used();
    tracing::debug!(task = %spec.id, elapsed = ?started.elapsed(), "task ended");
    match result {
        Ok(partial) => {
            report.partial = partial;
            Ok(report)
        }
        Err((reason, call)) => Err(Box::new(TaskFailure::new(report, reason, call))),
    }
}

/// Why a task stops: a sentence, and the guest call behind it if any.
type Stop = (String, Option<CallError>);

struct TaskRun<'a> {
    analysis: &'a LoadedAnalysis,
    source: &'a dyn InputSource,
    spec: &'a TaskSpec,
    options: &'a TaskOptions,
    counters: &'a Arc<Counters>,
    meter: FuelMeter,
    mapper: Option<MapperInstance>,
    reducer: Option<ReducerInstance>,
    /// Batches mapped since the last checkpoint, kept for replay.
    window: Vec<Batch>,
    window_bytes: usize,
    partials: Vec<Vec<u8>>,
    /// Records already quarantined, never to be mapped again.
    quarantined: HashSet<RecordRef>,
    report: TaskReport,
}

impl TaskRun<'_> {
    fn run(&mut self) -> Result<Vec<u8>, Stop> {
        for (index, file) in self.spec.files.iter().enumerate() {
            self.read_file(index, file)?;
        }
        self.checkpoint()?;
        self.merge_partials(1)?;
        Ok(self.partials.pop().unwrap_or_default())
    }

    fn read_file(&mut self, index: usize, file: &InputFile) -> Result<(), Stop> {
        self.report.files += 1;
        let mut reader = match open_counted(
            self.source,
            file,
            self.options.max_line_bytes,
            self.counters,
        ) {
            Ok(reader) => reader,
            Err(ContainerError::Empty { .. }) => {
                self.report.empty_files += 1;
                return Ok(());
            }
            Err(e) => {
                self.file_error(file, e.to_string(), 0);
                return Ok(());
            }
        };
        let dimensions = wit_dimensions(&file.dimensions);
        let mut batch = Batch::new();
        let mut records = 0;
        for item in reader.by_ref() {
            match item {
                Ok(LogItem::Record(record)) => {
                    records += 1;
                    let at = RecordRef {
                        file: index,
                        line: record.line,
                    };
                    let submission = Submission {
                        id: record.id,
                        dimensions: dimensions.clone(),
                        json: record.json,
                    };
                    batch.push(submission, at);
                    if batch.len() >= self.options.batch_records
                        || batch.bytes >= self.options.batch_bytes
                    {
                        self.map_batch(std::mem::replace(&mut batch, Batch::new()))?;
                    }
                }
                Ok(LogItem::Skipped(skip)) => self.report.skipped.add(&file.key, &skip),
                Err(e) => {
                    self.file_error(file, e.to_string(), records);
                    break;
                }
            }
        }
        if !batch.is_empty() {
            self.map_batch(batch)?;
        }
        let uncompressed = reader.bytes_read();
        self.report.records += records;
        self.report.bytes_compressed += file.size;
        self.report.bytes_uncompressed += uncompressed;
        self.counters
            .bytes_uncompressed
            .fetch_add(uncompressed, Ordering::Relaxed);
        Ok(())
    }

    fn file_error(&mut self, file: &InputFile, error: String, records_before_error: u64) {
        self.report.file_errors.push(FileError {
            task: self.spec.id.clone(),
            file: file.key.clone(),
            error,
            records_before_error,
        });
    }

    /// Starts a mapper instance if there is none (at the start, and after a failure).
    fn ensure_mapper(&mut self) -> Result<(), Stop> {
        if self.mapper.is_none() {
            let instance =
                MapperInstance::start(self.analysis, &self.options.params, &mut self.meter)
                    .map_err(|e| {
                        (
                            format!("the mapper could not start: {}", e.failure),
                            Some(e),
                        )
                    })?;
            self.report.instances += 1;
            self.mapper = Some(instance);
        }
        Ok(())
    }

    fn map_batch(&mut self, batch: Batch) -> Result<(), Stop> {
        self.counters
            .records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.ensure_mapper()?;
        let mapper = self.mapper.as_mut().expect("ensured above");
        match mapper.map(&batch.records, &mut self.meter) {
            Ok(rejected) => {
                for error in rejected {
                    let index = error.index as usize;
                    self.quarantine(
                        &batch,
                        index,
                        GuestFailure::GuestError {
                            message: error.message,
                        },
                        None,
                    )?;
                }
                self.report.records_mapped +=
                    (batch.len() - self.count_quarantined_in(&batch)) as u64;
                self.window_bytes += batch.bytes;
                self.window.push(batch);
                if self.window_bytes >= self.options.checkpoint_bytes {
                    self.checkpoint()?;
                }
                Ok(())
            }
            Err(error) => {
                self.stop_if_task_budget(&error)?;
                self.mapper = None;
                let mut window = std::mem::take(&mut self.window);
                self.window_bytes = 0;
                // The window's records were counted as mapped; isolation counts them again.
                for earlier in &window {
                    self.report.records_mapped -=
                        (earlier.len() - self.count_quarantined_in(earlier)) as u64;
                }
                window.push(batch);
                self.isolate(window, Some(error))
            }
        }
    }

    fn count_quarantined_in(&self, batch: &Batch) -> usize {
        batch
            .refs
            .iter()
            .filter(|r| self.quarantined.contains(r))
            .count()
    }

    /// Flushes the mapper's state into a partial; on failure, replays the window record by
    /// record so that the record behind it is found and quarantined.
    fn checkpoint(&mut self) -> Result<(), Stop> {
        let Some(mapper) = self.mapper.as_mut() else {
            return Ok(());
        };
        match mapper.flush(&mut self.meter) {
            Ok(partial) => {
                self.window.clear();
                self.window_bytes = 0;
                self.push_partial(partial)
            }
            Err(error) => {
                self.stop_if_task_budget(&error)?;
                self.mapper = None;
                let window = std::mem::take(&mut self.window);
                self.window_bytes = 0;
                for earlier in &window {
                    self.report.records_mapped -=
                        (earlier.len() - self.count_quarantined_in(earlier)) as u64;
                }
                self.isolate(window, None)
            }
        }
    }

    /// Maps each record alone on a clean instance and flushes after it, so each record's
    /// effect lands in exactly one partial and a failing record is identified exactly.
    fn isolate(&mut self, batches: Vec<Batch>, first_error: Option<CallError>) -> Result<(), Stop> {
        tracing::debug!(task = %self.spec.id, error = ?first_error.map(|e| e.failure), "isolating records");
        for batch in batches {
            for (record, at) in batch.records.into_iter().zip(batch.refs) {
                if self.quarantined.contains(&at) {
                    continue;
                }
                let mut single = Batch::new();
                single.push(record, at);
                self.map_alone(single)?;
            }
        }
        Ok(())
    }

    fn map_alone(&mut self, single: Batch) -> Result<(), Stop> {
        self.ensure_mapper()?;
        let mapper = self.mapper.as_mut().expect("ensured above");
        let meter = &mut self.meter;
        let outcome = mapper
            .map(&single.records, meter)
            .and_then(|rejected| Ok((rejected, mapper.flush(meter)?)));
        match outcome {
            Ok((rejected, partial)) => {
                if let Some(error) = rejected.into_iter().next() {
                    self.quarantine(
                        &single,
                        0,
                        GuestFailure::GuestError {
                            message: error.message,
                        },
                        None,
                    )?;
                } else {
                    self.report.records_mapped += 1;
                }
                self.push_partial(partial)
            }
            Err(error) => {
                self.stop_if_task_budget(&error)?;
                // Even a usable instance may hold part of the record's effect: drop it.
                self.mapper = None;
                self.quarantine(&single, 0, error.failure, error.log)
            }
        }
    }

    fn quarantine(
        &mut self,
        batch: &Batch,
        index: usize,
        failure: GuestFailure,
        log: Option<String>,
    ) -> Result<(), Stop> {
        let at = batch.refs[index];
        if !self.quarantined.insert(at) {
            return Ok(());
        }
        self.counters.quarantined.fetch_add(1, Ordering::Relaxed);
        let file = &self.spec.files[at.file];
        self.report.quarantined.push(Quarantine {
            task: self.spec.id.clone(),
            file: file.key.clone(),
            record_id: batch.records[index].id.clone(),
            line: at.line,
            failure,
            log,
        });
        let limit = self.analysis.sandbox.limits().max_bad_records_per_task;
        if self.report.quarantined.len() as u64 > limit {
            let mut kinds: Vec<&str> = self
                .report
                .quarantined
                .iter()
                .map(|q| q.failure.kind())
                .collect();
            kinds.sort_unstable();
            kinds.dedup();
            let first = &self.report.quarantined[0];
            return Err((
                format!(
                    "{} records quarantined, over the limit of {limit} (--max-bad-records); reasons: {}; \
                     first: file {}, line {}, record {}: {}",
                    self.report.quarantined.len(),
                    kinds.join(", "),
                    first.file,
                    first.line,
                    first.record_id,
                    first.failure
                ),
                None,
            ));
        }
        Ok(())
    }

    /// The task's own fuel budget is not a record's fault: the task fails.
    fn stop_if_task_budget(&self, error: &CallError) -> Result<(), Stop> {
        if let GuestFailure::OutOfFuel {
            task_budget: true, ..
        } = error.failure
        {
            return Err((format!("{}", error.failure), Some(error.clone())));
        }
        Ok(())
    }

    fn push_partial(&mut self, partial: Vec<u8>) -> Result<(), Stop> {
        if !partial.is_empty() {
            self.partials.push(partial);
        }
        if self.partials.len() >= self.options.merge_fan_in.max(2) {
            self.merge_partials(1)?;
        }
        Ok(())
    }

    /// Merges the pending partials down to at most `target` with the reducer.
    fn merge_partials(&mut self, target: usize) -> Result<(), Stop> {
        if self.partials.len() <= target {
            return Ok(());
        }
        if self.reducer.is_none() {
            let reducer =
                ReducerInstance::start(self.analysis, &self.options.params, &mut self.meter)
                    .map_err(|e| {
                        (
                            format!("the reducer could not start: {}", e.failure),
                            Some(e),
                        )
                    })?;
            self.reducer = Some(reducer);
        }
        let reducer = self.reducer.as_mut().expect("started above");
        let partials = std::mem::take(&mut self.partials);
        match reducer.merge(&partials, &mut self.meter) {
            Ok(merged) => {
                self.partials.push(merged);
                Ok(())
            }
            Err(e) => {
                self.reducer = None;
                Err((
                    format!("merging {} partials failed: {}", partials.len(), e.failure),
                    Some(e),
                ))
            }
        }
    }
}

/// Counts compressed bytes as the decoder consumes them, for the progress bar.
struct CountingReader<R> {
    inner: R,
    counters: Arc<Counters>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters
            .bytes_compressed
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type CountedReader = RecordReader<BufReader<Box<dyn Read + Send>>>;

fn open_counted(
    source: &dyn InputSource,
    file: &InputFile,
    max_line_bytes: usize,
    counters: &Arc<Counters>,
) -> Result<CountedReader, ContainerError> {
    let handle = source.open(file).map_err(|source| ContainerError::Io {
        name: file.key.clone(),
        source,
    })?;
    let counted = CountingReader {
        inner: handle,
        counters: Arc::clone(counters),
    };
    let decoder = open_decoder(counted, &file.key)?;
    Ok(RecordReader::new(
        BufReader::with_capacity(crate::store::local::INPUT_BUFFER_BYTES, decoder),
        max_line_bytes,
    ))
}
