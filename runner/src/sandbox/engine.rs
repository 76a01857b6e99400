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

/// A component compiled for this engine, not yet linked.
pub struct CompiledComponent {
    pub name: String,
    pub hash: String,
    pub size: usize,
    pub compile_time: Duration,
    pub from_cache: bool,
    pub component: Component,
    pub imports: Vec<String>,
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
    /// Everything the component imports, by name.
    pub imports: Vec<String>,
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
        count_environment_reads(&mut linker).map_err(|e| anyhow!("cannot link WASI: {e}"))?;
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
        let compiled = self.compile_checked(name, bytes)?;
        let offending: Vec<&String> = compiled
            .imports
            .iter()
            .filter(|i| !import_is_provided(i))
            .collect();
        if !offending.is_empty() {
            bail!(
                "{name}: the component imports what the sandbox does not provide: {}. \
                 Only WASI p2 (wasi:*) and {PACKAGE}/types are linked; remove these imports \
                 (for JavaScript, disable componentize-js's `http` and `fetch-event` features)",
                offending
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        self.link(compiled)
    }

    /// Checks the header and compiles (or loads from the cache), timing it.
    pub fn compile_checked(&self, name: &str, bytes: &[u8]) -> anyhow::Result<CompiledComponent> {
        check_is_component(name, bytes)?;
        let hash = component_hash(bytes);
        let started = Instant::now();
        let (component, from_cache) = self.compile(name, &hash, bytes)?;
        let compile_time = started.elapsed();
        let imports = component
            .component_type()
            .imports(&self.engine)
            .map(|(import, _)| import.to_string())
            .collect();
        Ok(CompiledComponent {
            name: name.to_string(),
            hash,
            size: bytes.len(),
            compile_time,
            from_cache,
            component,
            imports,
        })
    }

    /// Links a compiled component against WASI and finds which halves of the contract it
    /// exports.
    pub fn link(&self, compiled: CompiledComponent) -> anyhow::Result<LoadedAnalysis> {
        let name = &compiled.name;
        let pre = self
            .linker
            .instantiate_pre(&compiled.component)
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
            name: compiled.name,
            hash: compiled.hash,
            size: compiled.size,
            compile_time: compiled.compile_time,
            from_cache: compiled.from_cache,
            component: compiled.component,
            imports: compiled.imports,
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

/// Replaces `wasi:cli/environment` with the same answers nothing-granted WASI gives (no
/// variables, no arguments, no working directory), counting each call.
fn count_environment_reads(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut env = linker.instance(ENVIRONMENT_INTERFACE)?;
    env.func_wrap("get-environment", |mut store, (): ()| {
        store.data_mut().environment_reads += 1;
        Ok((Vec::<(String, String)>::new(),))
    })?;
    env.func_wrap("get-arguments", |mut store, (): ()| {
        store.data_mut().environment_reads += 1;
        Ok((Vec::<String>::new(),))
    })?;
    env.func_wrap("initial-cwd", |mut store, (): ()| {
        store.data_mut().environment_reads += 1;
        Ok((None::<String>,))
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The environment interface as wasmtime-wasi 48 defines it (guests importing any
/// semver-compatible 0.2.x version resolve to it).
const ENVIRONMENT_INTERFACE: &str = "wasi:cli/environment@0.2.12";

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
