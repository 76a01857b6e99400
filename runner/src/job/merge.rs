//! Merging partials with the reducer, in groups as they arrive, then publishing.

use crate::sandbox::{CallError, FuelMeter, LoadedAnalysis, ReducerInstance};

/// Merges partials in groups as they come, so memory holds at most `fan_in` of them.
pub struct Merger<'a> {
    analysis: &'a LoadedAnalysis,
    params: &'a str,
    fan_in: usize,
    pending: Vec<Vec<u8>>,
    reducer: Option<ReducerInstance>,
    meter: FuelMeter,
    error: Option<String>,
}

impl<'a> Merger<'a> {
    pub fn new(analysis: &'a LoadedAnalysis, params: &'a str, fan_in: usize) -> Self {
        Merger {
            analysis,
            params,
            fan_in: fan_in.max(2),
            pending: Vec::new(),
            reducer: None,
            // The reduce side of a job gets one task's budget.
            meter: FuelMeter::new(analysis.sandbox.limits().fuel_per_task),
            error: None,
        }
    }

    /// Adds a partial (empty ones are skipped); merges when `fan_in` are pending.
    pub fn add(&mut self, partial: Vec<u8>) {
        if partial.is_empty() || self.error.is_some() {
            return;
        }
        self.pending.push(partial);
        if self.pending.len() >= self.fan_in {
            if let Err(e) = self.merge_pending() {
                self.error = Some(e);
            }
        }
    }

    /// Fuel burned by merges and publish so far.
    pub fn fuel_used(&self) -> u64 {
        self.meter.used()
    }

    /// Merges what is pending and returns the single merged partial (empty: nothing yet).
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.merge_pending()?;
        Ok(self.pending.pop().unwrap_or_default())
    }

    fn reducer(&mut self) -> Result<&mut ReducerInstance, String> {
        if self.reducer.is_none() {
            let reducer = ReducerInstance::start(self.analysis, self.params, &mut self.meter)
                .map_err(|e| describe("starting the reducer", &e))?;
            self.reducer = Some(reducer);
        }
        Ok(self.reducer.as_mut().expect("started above"))
    }

    /// Merges everything pending into one partial.
    pub fn merge_pending(&mut self) -> Result<(), String> {
        if self.pending.len() < 2 {
            return Ok(());
        }
        let partials = std::mem::take(&mut self.pending);
        let mut meter = self.meter;
        let result = self.reducer()?.merge(&partials, &mut meter);
        self.meter = meter;
        let merged = result.map_err(|e| {
            self.reducer = None;
            describe(&format!("merging {} task partials", partials.len()), &e)
        })?;
        self.pending.push(merged);
        Ok(())
    }

    /// Merges what is pending and publishes it: (path, contents) of each file.
    pub fn finish_and_publish(&mut self) -> Result<Vec<(String, Vec<u8>)>, String> {
        let last = self.finish()?;
        self.publish(&last)
    }

    /// Publishes a merged partial: (path, contents) of each file.
    pub fn publish(&mut self, partial: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
        let mut meter = self.meter;
        let result = self.reducer()?.publish(partial, &mut meter);
        self.meter = meter;
        let files = result.map_err(|e| describe("publishing the result", &e))?;
        Ok(files.into_iter().map(|f| (f.path, f.contents)).collect())
    }
}

fn describe(what: &str, error: &CallError) -> String {
    format!("{what} failed: {error}")
}
