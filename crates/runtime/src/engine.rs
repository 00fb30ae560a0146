//! The wasmtime engine, configured for a fresh instance per request.
//!
//! Per-request cost is decided here (BENCHMARKS.md, "Engine settings"):
//! the pooling allocator recycles instance slots instead of mapping memory
//! for every request, copy-on-write memory images make instantiation cheap,
//! and the pool resets only the pages a request dirtied. Epoch interruption
//! bounds how long a guest can run without yielding to other requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A running guest yields to the scheduler at
/// least this often, and request deadlines are checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The most elements one table may hold, pooled or not.
pub(crate) const TABLE_ELEMENTS: usize = 200_000;
/// The most tables and memories one instance's store may hold (each
/// memory is bounded by the instance's memory limit, all together; each
/// table by [`TABLE_ELEMENTS`]). Far above what componentize-py's many
/// modules need; a bound without the pool's own.
pub(crate) const MAX_TABLES: usize = 100;
pub(crate) const MAX_MEMORIES: usize = 100;

/// Engine-wide settings (per-component limits live in the store).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The largest linear memory any component may grow to; the pool's slots
    /// are sized for it.
    pub max_memory: u64,
    /// How many instances may be alive at once across all components.
    pub max_instances: u32,
    /// Instances come from the preallocated pool (the default), or, when
    /// false, each maps its own memory (`--disable-pooling`: slower per
    /// request, no address space reserved up front, no instance limit).
    pub pooling: bool,
    /// Where a component's `files` are copied to be mounted [default: the
    /// system's temporary directory] (`--temp`).
    pub staging_dir: Option<std::path::PathBuf>,
    /// Mount every `{ source, destination }` directory in place, uncopied,
    /// when a component's `files` are only such and it excludes nothing
    /// (`--direct-mounts`).
    pub direct_mounts: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_memory: 128 << 20,
            max_instances: 1000,
            pooling: true,
            staging_dir: None,
            direct_mounts: false,
        }
    }
}

/// `concurrency` turns on the component-model concurrency that WASI 0.3
/// guests need. WASI 0.2 guests do not need it, and it costs ~10 µs per
/// request (and a backtrace capture per store drop when RUST_BACKTRACE is
/// set), so they run on an engine without it.
pub(crate) fn build_engine(options: &EngineOptions, concurrency: bool) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.concurrency_support(concurrency);
    config.memory_init_cow(true);
    config.max_wasm_stack(1 << 20);
    config.async_stack_size(2 << 20);
    // Address maps translate native code offsets back to Wasm offsets for
    // trap backtraces; Ferry logs a trap's cause, not its backtrace, and
    // without them each compiled component is ~10% smaller, which is memory
    // resident per loaded component (BENCHMARKS.md, 1,000 components).
    config.generate_address_map(false);

    if !options.pooling {
        return Ok(Engine::new(&config)?);
    }
    let instances = options.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        // A component holds several core instances (the Rust adapter adds a
        // few, componentize-js and -py more), each with its memory and table.
        .total_core_instances(instances.saturating_mul(8))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_tables_per_module(8)
        .table_elements(TABLE_ELEMENTS)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20)
        .max_memory_size(
            usize::try_from(options.max_memory).context("max memory does not fit in usize")?,
        )
        // Keep the first MiB of each memory mapped and reset only the pages a
        // request dirtied, instead of faulting them back in every time.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(1 << 16)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread
/// until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
