//! Calling into a guest: every call runs with its own fuel, a deadline and a fresh log
//! capture, and its failure comes back typed ([`GuestFailure`]) with the guest's logs.

use wasmtime::{Store, Trap};

use super::bindings::{mapper, reducer};
use super::engine::{deadline_ticks, LoadedAnalysis};
use super::host_state::{HostState, MemoryCapExceeded};
use super::limits::Limits;
use super::outcome::GuestFailure;

/// A failed call: what went wrong, and what the guest printed during the call.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallError {
    pub failure: GuestFailure,
    /// The guest's stdout and stderr during the call, truncated to the log cap.
    pub log: Option<String>,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.failure)?;
        if let Some(log) = &self.log {
            write!(
                f,
                "\n  guest output:\n    {}",
                log.trim_end().replace('\n', "\n    ")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for CallError {}

/// Fuel left for a task across all its instances.
#[derive(Debug, Clone, Copy)]
pub struct FuelMeter {
    left: u64,
    used: u64,
}

impl FuelMeter {
    pub fn new(budget: u64) -> Self {
        FuelMeter {
            left: budget,
            used: 0,
        }
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    fn charge(&mut self, fuel: u64) {
        self.left = self.left.saturating_sub(fuel);
        self.used += fuel;
    }
}

/// What an instance did besides its results, for `spotmill validate`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct InstanceStats {
    /// Most memory and table bytes held at once.
    pub peak_memory: u64,
    /// Log bytes dropped past the cap during the last call.
    pub log_dropped: u64,
    /// Calls to read environment variables, arguments or the working directory.
    pub environment_reads: u64,
}

/// One store and its limits: the part shared by mapper and reducer instances.
struct Guest {
    store: Store<HostState>,
    limits: Limits,
}

impl Guest {
    /// A store for a mapper (`reducer` false) or a reducer: reducer calls get their own
    /// fuel and deadline, since they work on whole partials.
    fn new(limits: &Limits, engine: &wasmtime::Engine, reducer: bool) -> Self {
        let mut limits = limits.clone();
        if reducer {
            limits.fuel_per_call = limits.fuel_per_reduce_call;
            limits.call_deadline_ms = limits.reduce_deadline_ms;
        }
        let limits = &limits;
        let mut store = Store::new(
            engine,
            HostState::new(limits.memory_bytes, limits.max_log_bytes),
        );
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_trap();
        // wasmtime's own cap on bytes lifted out of the guest in one call: our output cap,
        // plus room for the list and string headers around the bytes.
        store.set_hostcall_fuel(
            usize::try_from(limits.max_output_bytes.saturating_add(1 << 20)).unwrap_or(usize::MAX),
        );
        // Instantiation runs guest code (start functions): give it a call's worth.
        let _ = store.set_fuel(limits.fuel_per_call);
        store.set_epoch_deadline(deadline_ticks(limits.call_deadline_ms));
        Guest {
            store,
            limits: limits.clone(),
        }
    }

    /// Runs one guest call under the limits, charging its fuel to `meter`.
    fn call<R>(
        &mut self,
        meter: &mut FuelMeter,
        f: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let task_budget = meter.left < self.limits.fuel_per_call;
        let fuel = meter.left.min(self.limits.fuel_per_call);
        if fuel == 0 {
            return Err(CallError {
                failure: GuestFailure::OutOfFuel {
                    limit: self.limits.fuel_per_task,
                    task_budget: true,
                },
                log: None,
            });
        }
        self.store.data().log.clear();
        self.store
            .set_fuel(fuel)
            .expect("fuel is enabled on the engine");
        self.store
            .set_epoch_deadline(deadline_ticks(self.limits.call_deadline_ms));
        let result = f(&mut self.store);
        let left = self.store.get_fuel().unwrap_or(0);
        meter.charge(fuel - left);
        result.map_err(|error| CallError {
            failure: classify(&error, &self.limits, task_budget),
            log: self.store.data().log.text(),
        })
    }

    /// A call's returned size against the output cap.
    fn check_output(&self, bytes: u64) -> Result<(), CallError> {
        if bytes > self.limits.max_output_bytes {
            return Err(CallError {
                failure: GuestFailure::OutputCap {
                    bytes: Some(bytes),
                    limit: self.limits.max_output_bytes,
                },
                log: self.store.data().log.text(),
            });
        }
        Ok(())
    }

    fn stats(&self) -> InstanceStats {
        let state = self.store.data();
        InstanceStats {
            peak_memory: state.memory.peak(),
            log_dropped: state.log.dropped(),
            environment_reads: state.environment_reads,
        }
    }

    fn guest_error(&self, message: String) -> CallError {
        CallError {
            failure: GuestFailure::GuestError { message },
            log: self.store.data().log.text(),
        }
    }
}

/// Maps a wasmtime error to the limit or fault behind it.
pub fn classify(error: &wasmtime::Error, limits: &Limits, task_budget: bool) -> GuestFailure {
    if let Some(cap) = error.downcast_ref::<MemoryCapExceeded>() {
        return GuestFailure::MemoryCap {
            requested: cap.requested,
            limit: cap.limit,
        };
    }
    if is_hostcall_copy_cap(error) {
        return GuestFailure::OutputCap {
            bytes: None,
            limit: limits.max_output_bytes,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => GuestFailure::OutOfFuel {
            limit: if task_budget {
                limits.fuel_per_task
            } else {
                limits.fuel_per_call
            },
            task_budget,
        },
        Some(Trap::Interrupt) => GuestFailure::Deadline {
            limit_ms: limits.call_deadline_ms,
        },
        _ => GuestFailure::Trap {
            message: trap_message(error),
        },
    }
}

/// wasmtime stops a copy out of the guest past the store's hostcall fuel with a private
/// error type, so it is recognised by its message.
fn is_hostcall_copy_cap(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
    })
}

/// What trapped, with the named frames of the wasm backtrace (stripped guests have
/// none; their panic message is in the captured log instead).
fn trap_message(error: &wasmtime::Error) -> String {
    const MAX_FRAMES: usize = 8;
    // Rust keeps its stack in linear memory: unbounded recursion runs it below address 0
    // and wasmtime sees an out-of-bounds access, not a stack overflow. wasmtime captures
    // only the innermost frames, so recursion shows as the same function over and over.
    const RECURSION_FRAMES: usize = 16;
    let trap = error.downcast_ref::<Trap>();
    let what = match trap {
        Some(trap) => trap
            .to_string()
            .trim_start_matches("wasm trap: ")
            .to_string(),
        None => error.root_cause().to_string(),
    };
    let backtrace = error.downcast_ref::<wasmtime::WasmBacktrace>();
    let recursing = backtrace.is_some_and(|bt| {
        let frames = bt.frames();
        frames.len() >= RECURSION_FRAMES
            && frames[1..]
                .iter()
                .all(|f| f.func_index() == frames[1].func_index())
    });
    let what = if trap == Some(&Trap::MemoryOutOfBounds) && recursing {
        format!("{what} (likely a stack overflow: the same function calls itself without end)")
    } else {
        what
    };
    let frames: Vec<&str> = backtrace
        .map(|bt| {
            bt.frames()
                .iter()
                .filter_map(|f| f.func_name())
                .take(MAX_FRAMES)
                .collect()
        })
        .unwrap_or_default();
    if frames.is_empty() {
        what
    } else {
        format!("{what} (in {})", frames.join(" <- "))
    }
}

/// Instantiates one half of the analysis (`role`: "mapper" or "reducer") in a fresh store
/// and calls its `setup`, each under the call limits.
fn start_guest<P, B>(
    analysis: &LoadedAnalysis,
    pre: Option<&P>,
    role: &str,
    meter: &mut FuelMeter,
    instantiate: impl FnOnce(&P, &mut Store<HostState>) -> wasmtime::Result<B>,
    setup: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<Result<(), String>>,
) -> Result<(Guest, B), CallError> {
    let pre = pre.ok_or_else(|| CallError {
        failure: GuestFailure::GuestError {
            message: format!("{} does not export the {role} interface", analysis.name),
        },
        log: None,
    })?;
    let limits = analysis.sandbox.limits();
    let mut guest = Guest::new(limits, analysis.sandbox.engine(), role == "reducer");
    let bindings = guest.call(meter, |store| instantiate(pre, store))?;
    let result = guest.call(meter, |store| setup(&bindings, store))?;
    result.map_err(|message| guest.guest_error(format!("{role} setup failed: {message}")))?;
    Ok((guest, bindings))
}

/// A mapper instance: `setup` done, ready for batches.
pub struct MapperInstance {
    guest: Guest,
    bindings: mapper::MapOnly,
}

impl MapperInstance {
    /// Instantiates the mapper and calls `setup(params)`.
    pub fn start(
        analysis: &LoadedAnalysis,
        params: &str,
        meter: &mut FuelMeter,
    ) -> Result<Self, CallError> {
        let (guest, bindings) = start_guest(
            analysis,
            analysis.mapper.as_ref(),
            "mapper",
            meter,
            |pre, store| pre.instantiate(store),
            |bindings, store| {
                bindings
                    .spotmill_analysis_mapper()
                    .call_setup(store, params)
            },
        )?;
        Ok(MapperInstance { guest, bindings })
    }

    /// Maps a batch; returns the records the guest rejected, checked and sorted by index.
    pub fn map(
        &mut self,
        batch: &[mapper::Submission],
        meter: &mut FuelMeter,
    ) -> Result<Vec<mapper::RecordError>, CallError> {
        let bindings = &self.bindings;
        let mut errors = self.guest.call(meter, |store| {
            bindings.spotmill_analysis_mapper().call_map(store, batch)
        })?;
        let bytes: u64 = errors.iter().map(|e| e.message.len() as u64 + 4).sum();
        self.guest.check_output(bytes)?;
        errors.sort_by_key(|e| e.index);
        errors.dedup_by_key(|e| e.index);
        if let Some(bad) = errors.iter().find(|e| e.index as usize >= batch.len()) {
            return Err(self.guest.guest_error(format!(
                "map reported an error for record index {} but the batch has {} records",
                bad.index,
                batch.len()
            )));
        }
        Ok(errors)
    }

    pub fn stats(&self) -> InstanceStats {
        self.guest.stats()
    }

    /// Takes the partial accumulated since the previous flush.
    pub fn flush(&mut self, meter: &mut FuelMeter) -> Result<Vec<u8>, CallError> {
        let bindings = &self.bindings;
        let result = self.guest.call(meter, |store| {
            bindings.spotmill_analysis_mapper().call_flush(store)
        })?;
        let partial =
            result.map_err(|message| self.guest.guest_error(format!("flush failed: {message}")))?;
        self.guest.check_output(partial.len() as u64)?;
        Ok(partial)
    }
}

/// A reducer instance: `setup` done, ready to merge and publish.
pub struct ReducerInstance {
    guest: Guest,
    bindings: reducer::ReduceOnly,
}

impl ReducerInstance {
    /// Instantiates the reducer and calls `setup(params)`.
    pub fn start(
        analysis: &LoadedAnalysis,
        params: &str,
        meter: &mut FuelMeter,
    ) -> Result<Self, CallError> {
        let (guest, bindings) = start_guest(
            analysis,
            analysis.reducer.as_ref(),
            "reducer",
            meter,
            |pre, store| pre.instantiate(store),
            |bindings, store| {
                bindings
                    .spotmill_analysis_reducer()
                    .call_setup(store, params)
            },
        )?;
        Ok(ReducerInstance { guest, bindings })
    }

    pub fn stats(&self) -> InstanceStats {
        self.guest.stats()
    }

    /// Merges partials into one.
    pub fn merge(
        &mut self,
        partials: &[Vec<u8>],
        meter: &mut FuelMeter,
    ) -> Result<Vec<u8>, CallError> {
        let bindings = &self.bindings;
        let result = self.guest.call(meter, |store| {
            bindings
                .spotmill_analysis_reducer()
                .call_merge(store, partials)
        })?;
        let merged =
            result.map_err(|message| self.guest.guest_error(format!("merge failed: {message}")))?;
        self.guest.check_output(merged.len() as u64)?;
        Ok(merged)
    }

    /// Turns the final partial into files.
    pub fn publish(
        &mut self,
        partial: &[u8],
        meter: &mut FuelMeter,
    ) -> Result<Vec<reducer::OutputFile>, CallError> {
        let bindings = &self.bindings;
        let result = self.guest.call(meter, |store| {
            bindings
                .spotmill_analysis_reducer()
                .call_publish(store, partial)
        })?;
        let files = result
            .map_err(|message| self.guest.guest_error(format!("publish failed: {message}")))?;
        let bytes: u64 = files
            .iter()
            .map(|f| (f.path.len() + f.contents.len()) as u64)
            .sum();
        self.guest.check_output(bytes)?;
        Ok(files)
    }
}
