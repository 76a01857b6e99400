//! The limits every guest call runs under, with defaults sized for telemetry payloads
//! (tens of KB of JSON per submission, batches of a few MB).

use serde::{Deserialize, Serialize};

/// Resource limits for one analysis. Every field can be set from the CLI and from the
/// `[limits]` table of a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Fuel (roughly, wasm instructions) one guest call may burn: one `map` of a batch,
    /// one `flush`, one `merge`, one `publish`.
    pub fuel_per_call: u64,
    /// Fuel one task may burn over all its calls; past it the task fails as a whole.
    pub fuel_per_task: u64,
    /// Fuel one reducer call (`merge`, `publish`) may burn: these work on whole partials,
    /// whose size grows with the data, not with a batch.
    pub fuel_per_reduce_call: u64,
    /// Linear memory and tables of one instance, added up over all its memories.
    pub memory_bytes: u64,
    /// Wall-clock time one mapper call may take before it is interrupted.
    pub call_deadline_ms: u64,
    /// Wall-clock time one reducer call may take before it is interrupted.
    pub reduce_deadline_ms: u64,
    /// Bytes one call may hand back to the host: a flushed or merged partial, the files
    /// of `publish` together, the record errors of a `map`.
    pub max_output_bytes: u64,
    /// Bytes of stdout and stderr kept per instance; the rest is dropped and counted
    /// (a chatty guest is truncated, not failed).
    pub max_log_bytes: u64,
    /// Records a task may quarantine before it fails as a whole.
    pub max_bad_records_per_task: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: 20_000_000_000,
            fuel_per_task: 20_000_000_000_000,
            fuel_per_reduce_call: 1_000_000_000_000,
            memory_bytes: 512 << 20,
            call_deadline_ms: 60_000,
            reduce_deadline_ms: 600_000,
            max_output_bytes: 256 << 20,
            max_log_bytes: 64 << 10,
            max_bad_records_per_task: 100,
        }
    }
}

impl Limits {
    /// Checks that the limits can be applied at all (zero would make every call fail).
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("fuel_per_call", self.fuel_per_call),
            ("fuel_per_task", self.fuel_per_task),
            ("fuel_per_reduce_call", self.fuel_per_reduce_call),
            ("reduce_deadline_ms", self.reduce_deadline_ms),
            ("memory_bytes", self.memory_bytes),
            ("call_deadline_ms", self.call_deadline_ms),
            ("max_output_bytes", self.max_output_bytes),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!(
                    "limit `{name}` is 0: every guest call would fail; give it a positive value"
                ));
            }
        }
        Ok(())
    }
}
