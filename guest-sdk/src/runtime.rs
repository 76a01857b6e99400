//! The WIT functions, implemented for any [`Analysis`]. Public (hidden) so that the
//! exported macro can name [`Exported`], and so that tests can drive an analysis without a
//! component host.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

use crate::bindings::exports::spotmill::analysis::{mapper, reducer};
use crate::{Analysis, OutputFile, RecordError, Submission};

/// The type handed to wit-bindgen's `export!`: implements the generated `Guest` traits by
/// forwarding to the functions below.
pub struct Exported<A>(PhantomData<A>);

struct MapperState<A: Analysis> {
    analysis: A,
    partial: A::Partial,
    /// Whether a submission was mapped since the last flush (else flush returns `b""`).
    dirty: bool,
}

struct ReducerState<A: Analysis> {
    analysis: A,
}

/// A side's state: `None` before `setup`, `Err` after a failed `setup` (every later call
/// fails with that error), else the `MapperState<A>` or `ReducerState<A>`.
type Slot = Option<Result<Box<dyn Any>, String>>;

// The guest is single-threaded; on the host (tests) every thread gets its own state.
thread_local! {
    static MAPPER: RefCell<Slot> = const { RefCell::new(None) };
    static REDUCER: RefCell<Slot> = const { RefCell::new(None) };
}

fn parse_params(params: &str) -> Result<serde_json::Value, String> {
    if params.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(params).map_err(|e| format!("the job's params are not valid JSON: {e}"))
}

fn new_analysis<A: Analysis>(params: &str) -> Result<A, String> {
    let params = parse_params(params)?;
    let mut analysis = A::default();
    analysis.setup(&params)?;
    Ok(analysis)
}

/// Runs `f` on a side's state, doing an implicit `setup("")` if there was no `setup`.
fn with_state<S: 'static, R>(
    slot: &'static std::thread::LocalKey<RefCell<Slot>>,
    make: impl FnOnce(&str) -> Result<S, String>,
    f: impl FnOnce(&mut S) -> R,
) -> Result<R, String> {
    slot.with(|cell| {
        let mut slot = cell.borrow_mut();
        let state = slot.get_or_insert_with(|| {
            make("")
                .map(|s| Box::new(s) as Box<dyn Any>)
                .map_err(|e| format!("implicit setup(\"\") failed: {e}"))
        });
        match state {
            Ok(state) => Ok(f(state
                .downcast_mut::<S>()
                .expect("one analysis type per component"))),
            Err(e) => Err(format!("setup failed: {e}")),
        }
    })
}

fn new_mapper<A: Analysis>(params: &str) -> Result<MapperState<A>, String> {
    Ok(MapperState {
        analysis: new_analysis::<A>(params)?,
        partial: A::Partial::default(),
        dirty: false,
    })
}

fn new_reducer<A: Analysis>(params: &str) -> Result<ReducerState<A>, String> {
    Ok(ReducerState {
        analysis: new_analysis::<A>(params)?,
    })
}

fn with_mapper<A: Analysis, R>(f: impl FnOnce(&mut MapperState<A>) -> R) -> Result<R, String> {
    with_state(&MAPPER, new_mapper::<A>, f)
}

fn with_reducer<A: Analysis, R>(f: impl FnOnce(&mut ReducerState<A>) -> R) -> Result<R, String> {
    with_state(&REDUCER, new_reducer::<A>, f)
}

fn setup<S: 'static>(
    slot: &'static std::thread::LocalKey<RefCell<Slot>>,
    state: Result<S, String>,
) -> Result<(), String> {
    let (stored, result) = match state {
        Ok(s) => (Ok(Box::new(s) as Box<dyn Any>), Ok(())),
        Err(e) => (Err(e.clone()), Err(e)),
    };
    slot.with(|cell| *cell.borrow_mut() = Some(stored));
    result
}

/// `mapper.setup`: a fresh analysis and an empty partial.
pub fn mapper_setup<A: Analysis>(params: &str) -> Result<(), String> {
    setup(&MAPPER, new_mapper::<A>(params))
}

/// `mapper.map`.
pub fn mapper_map<A: Analysis>(batch: &[Submission]) -> Vec<RecordError> {
    let result = with_mapper::<A, _>(|state| {
        let errors = state.analysis.map_batch(batch, &mut state.partial);
        // Dirty unless every submission of the batch failed.
        let mut failed = vec![false; batch.len()];
        for e in &errors {
            if let Some(f) = failed.get_mut(e.index as usize) {
                *f = true;
            }
        }
        if failed.contains(&false) {
            state.dirty = true;
        }
        errors
    });
    match result {
        Ok(errors) => errors,
        // Setup failed: nothing can be mapped.
        Err(message) => (0..batch.len())
            .map(|index| RecordError {
                index: index as u32,
                message: message.clone(),
            })
            .collect(),
    }
}

/// `mapper.flush`.
pub fn mapper_flush<A: Analysis>() -> Result<Vec<u8>, String> {
    with_mapper::<A, _>(|state| {
        if !state.dirty {
            state.partial = A::Partial::default();
            return Ok(Vec::new());
        }
        let bytes = A::encode_partial(&state.partial)?;
        state.partial = A::Partial::default();
        state.dirty = false;
        Ok(bytes)
    })?
}

/// `reducer.setup`.
pub fn reducer_setup<A: Analysis>(params: &str) -> Result<(), String> {
    setup(&REDUCER, new_reducer::<A>(params))
}

fn decode<A: Analysis>(bytes: &[u8]) -> Result<A::Partial, String> {
    if bytes.is_empty() {
        Ok(A::Partial::default())
    } else {
        A::decode_partial(bytes)
    }
}

/// `reducer.merge`.
pub fn reducer_merge<A: Analysis>(partials: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    with_reducer::<A, _>(|_| ())?;
    if partials.iter().all(|p| p.is_empty()) {
        return Ok(Vec::new());
    }
    let count = partials.len();
    let mut acc = A::Partial::default();
    for (index, bytes) in partials.iter().enumerate() {
        let partial =
            decode::<A>(bytes).map_err(|e| format!("partial {index} (of {count}): {e}"))?;
        A::merge(&mut acc, partial);
    }
    A::encode_partial(&acc)
}

/// `reducer.publish`.
pub fn reducer_publish<A: Analysis>(partial: &[u8]) -> Result<Vec<OutputFile>, String> {
    let partial = decode::<A>(partial).map_err(|e| format!("the final partial: {e}"))?;
    let files = with_reducer::<A, _>(|state| state.analysis.publish(partial))??;
    for file in &files {
        check_output_path(&file.path)?;
    }
    Ok(files)
}

/// Output paths are relative, `/`-separated, without empty, `.` or `..` segments.
pub fn check_output_path(path: &str) -> Result<(), String> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        Err(format!(
            "invalid output path {path:?}: must be relative, `/`-separated, without empty, `.` or `..` segments"
        ))
    } else {
        Ok(())
    }
}

impl<A: Analysis> mapper::Guest for Exported<A> {
    fn setup(params: String) -> Result<(), String> {
        mapper_setup::<A>(&params)
    }
    fn map(batch: Vec<Submission>) -> Vec<RecordError> {
        mapper_map::<A>(&batch)
    }
    fn flush() -> Result<Vec<u8>, String> {
        mapper_flush::<A>()
    }
}

impl<A: Analysis> reducer::Guest for Exported<A> {
    fn setup(params: String) -> Result<(), String> {
        reducer_setup::<A>(&params)
    }
    fn merge(partials: Vec<Vec<u8>>) -> Result<Vec<u8>, String> {
        reducer_merge::<A>(&partials)
    }
    fn publish(partial: Vec<u8>) -> Result<Vec<OutputFile>, String> {
        reducer_publish::<A>(&partial)
    }
}
