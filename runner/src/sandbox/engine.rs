//! One wasmtime engine per process, its linker, the epoch ticker that enforces
//! deadlines, and loading components (through the artifact cache).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{mapper, reducer, PACKAGE};
use super::cache::{component_hash, ArtifactCache};
use super::host_state::HostState;
use super::limits::Limits;

/// How often the epoch advances; deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engine, shared by every worker of the process.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    limits: Limits,
    cache: Option<ArtifactCache>,
}

/// A component compiled for this engine and checked against the contract, ready to be
/// instantiated once per task.
#[derive(Clone)]
pub struct LoadedAnalysis {
    pub name: String,
    pub hash: String,
    pub size: usize,
    pub compile_time: Duration,
    pub from_cache: bool,
    pub component: Component,
    pub(crate) mapper: Option<mapper::MapOnlyPre<HostState>>,
    pub(crate) reducer: Option<reducer::ReduceOnlyPre<HostState>>,
    pub(crate) sandbox: Sandbox,
}

impl Sandbox {
    /// Builds the engine (fuel and epoch interruption on), links WASI p2, and starts the
    /// epoch ticker. `cache` is where compiled artifacts are kept (None: compile every time).
    pub fn new(limits: Limits, cache: Option<ArtifactCache>) -> anyhow::Result<Self> {
        limits.validate().map_err(|e| anyhow!(e))?;
        let mut config = Config::new();
        config.consume_fuel(true);
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine =
            Engine::new(&config).map_err(|e| anyhow!("cannot create the wasm engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow!("cannot link WASI: {e}"))?;
        start_epoch_ticker(&engine);
        Ok(Sandbox {
            engine,
            linker: Arc::new(linker),
            limits,
            cache,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A short hex digest of everything about the engine that makes a compiled artifact
    /// usable (wasmtime version, target, fuel and epoch settings...).
    pub fn engine_hash(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// Compiles (or loads from the cache) and checks a component: it must be a component,
    /// import nothing beyond WASI, and export the mapper, the reducer or both.
    pub fn load(&self, name: &str, bytes: &[u8]) -> anyhow::Result<LoadedAnalysis> {
        check_is_component(name, bytes)?;
        let hash = component_hash(bytes);
        let started = Instant::now();
        let (component, from_cache) = self.compile(name, &hash, bytes)?;
        let compile_time = started.elapsed();
        self.check_imports(name, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{name}: cannot link the component: {e:#}"))?;
        let mapper = mapper::MapOnlyPre::new(pre.clone()).ok();
        let reducer = reducer::ReduceOnlyPre::new(pre).ok();
        if mapper.is_none() && reducer.is_none() {
            bail!(
                "{name}: the component exports neither `{PACKAGE}/mapper` nor `{PACKAGE}/reducer` \
                 (version {}); build it against wit/analysis.wit",
                super::bindings::VERSION
            );
        }
        Ok(LoadedAnalysis {
            name: name.to_string(),
            hash,
            size: bytes.len(),
            compile_time,
            from_cache,
            component,
            mapper,
            reducer,
            sandbox: self.clone(),
        })
    }

    fn compile(&self, name: &str, hash: &str, bytes: &[u8]) -> anyhow::Result<(Component, bool)> {
        let engine_hash = self.engine_hash();
        if let Some(cache) = &self.cache {
            if let Some(artifact) = cache.load(hash, &engine_hash) {
                // SAFETY: the cache only returns bytes sealed with this runner's own key,
                // i.e. bytes that `precompile_component` produced (see cache.rs).
                if let Ok(component) = unsafe { Component::deserialize(&self.engine, &artifact) } {
                    return Ok((component, true));
                }
            }
        }
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| anyhow!("{name}: not a valid WebAssembly component: {e:#}"))?;
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.store(hash, &engine_hash, &artifact) {
                tracing::warn!("could not store the compiled {name} in the cache: {e}");
            }
        }
        // SAFETY: `artifact` was produced just above by this engine.
        let component = unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| anyhow!("{name}: cannot load the compiled component: {e:#}"))?;
        Ok((component, false))
    }

    /// Names every import the sandbox does not provide, so the analyst sees all of them
    /// at once instead of wasmtime's first link error.
    fn check_imports(&self, name: &str, component: &Component) -> anyhow::Result<()> {
        let ty = component.component_type();
        let offending: Vec<String> = ty
            .imports(&self.engine)
            .map(|(import, _)| import.to_string())
            .filter(|import| !import_is_provided(import))
            .collect();
        if offending.is_empty() {
            return Ok(());
        }
        bail!(
            "{name}: the component imports what the sandbox does not provide: {}. \
             Only WASI p2 (wasi:*) and {PACKAGE}/types are linked; remove these imports \
             (for JavaScript, disable componentize-js's `http` and `fetch-event` features)",
            offending.join(", ")
        )
    }
}

/// Whether the sandbox links an import of this name.
pub fn import_is_provided(import: &str) -> bool {
    import.starts_with("wasi:") || import.starts_with(&format!("{PACKAGE}/types"))
}

/// Components start with `\0asm`, version 0x0d, layer 1; a core module has layer 0.
fn check_is_component(name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!("{name}: not a WebAssembly file (it does not start with \\0asm)");
    }
    if bytes[6..8] == [0, 0] {
        bail!(
            "{name}: a core WebAssembly module, not a component; build for wasm32-wasip2 \
             or wrap it with `wasm-tools component new` and the WASI adapter"
        );
    }
    Ok(())
}

/// Advances the engine's epoch every tick until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("spotmill-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("cannot start the epoch thread");
}

/// Ticks for a deadline, rounded up, at least one.
pub fn deadline_ticks(limit_ms: u64) -> u64 {
    let tick = EPOCH_TICK.as_millis() as u64;
    limit_ms.div_ceil(tick).max(1)
}

impl LoadedAnalysis {
    /// Ok when the component has both halves, as `spotmill run` needs.
    pub fn component_exports_mapper_and_reducer(&self) -> Result<(), String> {
        match (self.mapper.is_some(), self.reducer.is_some()) {
            (true, true) => Ok(()),
            (false, _) => Err(format!("{} does not export the mapper", self.name)),
            (_, false) => Err(format!("{} does not export the reducer", self.name)),
        }
    }

    /// Which halves of the contract the component implements.
    pub fn exports(&self) -> (bool, bool) {
        (self.mapper.is_some(), self.reducer.is_some())
    }
}
