//! Sandbox limits and the wall-time budget.
//!
//! Every limit is set on the one shared [`Engine`]; the wall-time deadline is per call and
//! lives in a thread-local, because Rhai's progress callback is engine-wide and receives only
//! the operation count. A hook runs synchronously on the calling thread, so the thread-local
//! is exactly "the call being evaluated here" (nested calls save and restore it).

use std::cell::Cell;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine};
use serde_json::{Map, Value};

/// Limits of one hook run. One set applies to every script of a [`crate::Sandbox`]; the
/// wall-time budget can be changed per call with [`crate::Call::wall_time`]. As in Rhai, `0`
/// means "no limit" for the counts and sizes (never use it in production).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Operations (statements, expressions, calls) per run: stops `loop {}` and any other
    /// runaway computation deterministically, whatever the machine's speed.
    pub max_operations: u64,
    /// Depth of nested function calls: stops unbounded recursion before it overflows the
    /// native stack of the (blocking) thread.
    pub max_call_levels: usize,
    /// Bytes of one string: stops string doubling from eating the server's memory.
    pub max_string_len: usize,
    /// Items of one array: stops unbounded growth of an array.
    pub max_array_len: usize,
    /// Entries of one object map: stops unbounded growth of a map (and of a returned record).
    pub max_map_len: usize,
    /// Nesting depth of expressions at compile time (inside functions: half of it): a deeply
    /// nested expression would otherwise overflow the stack while parsing or evaluating.
    pub max_expr_depth: usize,
    /// Variables alive at once in a run: bounds the scope's memory.
    pub max_variables: usize,
    /// Functions defined in one script file.
    pub max_functions: usize,
    /// Wall-clock budget of a run, checked every [`PROGRESS_CHECK_EVERY`] operations: a script
    /// that is slow without being long (huge string operations, a slow host call followed by
    /// more work) is stopped within about this time. A host call that blocks is not
    /// interrupted: the host must apply its own timeouts.
    pub wall_time: Duration,
}

impl Default for Limits {
    /// The defaults for before-hooks, which run inside a write: 100 ms of wall time.
    fn default() -> Self {
        Limits {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_string_len: 64 * 1024,
            max_array_len: 10_000,
            max_map_len: 10_000,
            max_expr_depth: 64,
            max_variables: 1_000,
            max_functions: 256,
            wall_time: Duration::from_millis(100),
        }
    }
}

/// The deadline is read every this many operations: `Instant::now()` costs about as much as a
/// few dozen Rhai operations, and 256 operations take a few microseconds.
pub const PROGRESS_CHECK_EVERY: u64 = 256;

/// The termination token of a run that ran out of wall time.
pub(crate) const WALL_TIME_TOKEN: &str = "wall-time budget exceeded";

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl Limits {
    /// Checks a record handed back by a script against the size limits: Rhai measures a map
    /// grown by `m[k] = v` only when it is used again, not when it is returned.
    pub(crate) fn check_record(&self, record: &Map<String, Value>) -> Result<(), String> {
        self.check_object(record, "record")
    }

    fn check_object(&self, map: &Map<String, Value>, path: &str) -> Result<(), String> {
        if self.max_map_len > 0 && map.len() > self.max_map_len {
            return Err(format!(
                "{path} has {} fields (max_map_len {})",
                map.len(),
                self.max_map_len
            ));
        }
        map.iter()
            .try_for_each(|(k, v)| self.check_value(v, &format!("{path}.{k}")))
    }

    fn check_value(&self, value: &Value, path: &str) -> Result<(), String> {
        match value {
            Value::String(s) if self.max_string_len > 0 && s.len() > self.max_string_len => {
                Err(format!(
                    "{path} is {} bytes long (max_string_len {})",
                    s.len(),
                    self.max_string_len
                ))
            }
            Value::Array(items) if self.max_array_len > 0 && items.len() > self.max_array_len => {
                Err(format!(
                    "{path} has {} items (max_array_len {})",
                    items.len(),
                    self.max_array_len
                ))
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| self.check_value(v, &format!("{path}[{i}]"))),
            Value::Object(map) => self.check_object(map, path),
            _ => Ok(()),
        }
    }

    pub(crate) fn apply(&self, engine: &mut Engine) {
        engine
            .set_max_operations(self.max_operations)
            .set_max_call_levels(self.max_call_levels)
            .set_max_string_size(self.max_string_len)
            .set_max_array_size(self.max_array_len)
            .set_max_map_size(self.max_map_len)
            .set_max_expr_depths(self.max_expr_depth, (self.max_expr_depth / 2).max(1))
            .set_max_variables(self.max_variables)
            .set_max_functions(self.max_functions);
        engine.on_progress(|ops| {
            if ops % PROGRESS_CHECK_EVERY != 0 {
                return None;
            }
            let deadline = DEADLINE.with(Cell::get)?;
            (Instant::now() >= deadline).then(|| Dynamic::from(WALL_TIME_TOKEN))
        });
    }
}

/// Sets this thread's deadline for the life of the guard and restores the previous one after
/// (a host call may run another hook on the same thread).
pub(crate) struct DeadlineGuard {
    previous: Option<Instant>,
}

impl DeadlineGuard {
    pub(crate) fn set(budget: Duration) -> Self {
        let deadline = Instant::now().checked_add(budget);
        let previous = DEADLINE.with(|d| d.replace(deadline));
        DeadlineGuard { previous }
    }
}

impl Drop for DeadlineGuard {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous));
    }
}
