//! What a store holds for one guest instance: WASI with nothing granted, the captured
//! logs, and the store-wide memory cap.

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::guest_log::GuestLog;

/// The error a refused memory growth traps with; found again by [`super::classify`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("memory cap: asked for {requested} bytes, cap is {limit}")]
pub struct MemoryCapExceeded {
    pub requested: u64,
    pub limit: u64,
}

/// A cap on all linear memories and tables of a store together.
///
/// wasmtime's `StoreLimits` caps each memory on its own; a component can have several,
/// so the sum is tracked here.
#[derive(Debug)]
pub struct StoreMemoryCap {
    limit: u64,
    memories: u64,
    tables: u64,
    peak: u64,
}

impl StoreMemoryCap {
    pub fn new(limit: u64) -> Self {
        StoreMemoryCap {
            limit,
            memories: 0,
            tables: 0,
            peak: 0,
        }
    }

    fn grow(&mut self, tables: bool, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let requested = self.memories + self.tables + growth;
        if requested > self.limit {
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                requested,
                limit: self.limit,
            }));
        }
        if tables {
            self.tables += growth;
        } else {
            self.memories += growth;
        }
        self.peak = self.peak.max(requested);
        Ok(true)
    }
}

impl StoreMemoryCap {
    /// The most memory and table bytes the store has held at once.
    pub fn peak(&self) -> u64 {
        self.peak
    }
}

impl ResourceLimiter for StoreMemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(false, current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element costs a pointer on the host.
        let unit = std::mem::size_of::<usize>();
        self.grow(true, current * unit, desired * unit)
    }
}

/// The data of one store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub memory: StoreMemoryCap,
    pub log: GuestLog,
    /// Calls to `wasi:cli/environment` (environment, arguments, cwd): always answered
    /// with nothing, counted so `spotmill validate` can tell an analyst their code
    /// looks for configuration it will never get.
    pub environment_reads: u64,
}

impl HostState {
    /// WASI p2 with nothing granted: no preopened directories, no environment, no
    /// arguments, no sockets or name lookups, stdin closed; stdout and stderr go to one
    /// truncating capture.
    pub fn new(memory_limit: u64, log_limit: u64) -> Self {
        let log = GuestLog::new(log_limit);
        let wasi = WasiCtx::builder()
            .stdout(log.clone())
            .stderr(log.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            memory: StoreMemoryCap::new(memory_limit),
            log,
            environment_reads: 0,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_cap_counts_every_memory_of_the_store() {
        let mut cap = StoreMemoryCap::new(100);
        assert!(cap.memory_growing(0, 60, None).unwrap());
        // A second memory: 60 + 50 passes the cap although each is under it.
        let err = cap.memory_growing(0, 50, None).unwrap_err();
        let cap_err = err.downcast_ref::<MemoryCapExceeded>().unwrap();
        assert_eq!((cap_err.requested, cap_err.limit), (110, 100));
        // Up to the cap exactly is fine; one byte more is not.
        assert!(cap.memory_growing(60, 100, None).unwrap());
        assert!(cap
            .memory_growing(100, 101, None)
            .unwrap_err()
            .is::<MemoryCapExceeded>());
    }
}
