//! Running hooks: arguments in, outcome out, every error mapped to a [`BeforeOutcome`] or a
//! [`RunError`].

use rhai::{CallFnOptions, Dynamic, EvalAltResult, Map as RhaiMap, Scope};
use serde_json::{Map, Value};

use crate::convert::{map_to_json, map_to_rhai, to_dynamic};
use crate::ctx::{Ctx, CtxFailure, LogGuard};
use crate::error::{FailureKind, RunError};
use crate::host::Call;
use crate::limits::{DeadlineGuard, WALL_TIME_TOKEN};
use crate::scripts::{ScriptRef, Scripts};

/// The outcome of a before-hook that ran to its end or threw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeforeOutcome {
    /// Write this record: the hook's return value, or the input record unchanged when the
    /// hook returned `()` (Rhai passes arguments by value: changes to `record` inside the
    /// function count only when it is returned).
    Write(Map<String, Value>),
    /// The hook called `throw`: the server answers 422 `trigger_rejected` with this message as
    /// `detail`. A thrown non-string is its string form; a bare `throw;` is "rejected".
    Rejected(String),
}

/// How a run ended when it did not return.
enum Stop {
    Thrown(String),
    Failed(RunError),
}

/// The record a before-hook is given: it must be a JSON object.
fn object(hook: &ScriptRef, record: Value) -> Result<serde_json::Map<String, Value>, RunError> {
    match record {
        Value::Object(record) => Ok(record),
        _ => Err(failed(
            hook,
            None,
            FailureKind::Conversion,
            "the record is not a JSON object",
        )),
    }
}

impl Scripts {
    /// Runs `before_create(record, ctx)` or `before_update(record, ctx)` (with
    /// [`Call::previous`] set to the stored record). `record` must be a JSON object.
    pub fn before(
        &self,
        hook: &ScriptRef,
        record: Value,
        call: Call,
    ) -> Result<BeforeOutcome, RunError> {
        let record = object(hook, record)?;
        match self.invoke(hook, vec![Dynamic::from_map(map_to_rhai(&record))], &call) {
            Ok(value) if value.is_unit() => Ok(BeforeOutcome::Write(record)),
            Ok(value) => match value.read_lock::<RhaiMap>() {
                Some(map) => {
                    let record = map_to_json(&map, "record")
                        .map_err(|e| failed(hook, None, FailureKind::Conversion, e.to_string()))?;
                    self.sandbox
                        .inner
                        .limits
                        .check_record(&record)
                        .map_err(|e| {
                            failed(hook, None, FailureKind::Limit, format!("stopped: {e}"))
                        })?;
                    Ok(BeforeOutcome::Write(record))
                }
                None => Err(failed(
                    hook,
                    None,
                    FailureKind::Conversion,
                    format!(
                        "returned a value of type {}: return the record (a map) or ()",
                        value.type_name()
                    ),
                )),
            },
            Err(Stop::Thrown(message)) => Ok(BeforeOutcome::Rejected(message)),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// Runs `before_delete(record, ctx)`: it may only throw; what it returns is ignored, so
    /// the outcome is `Write(record)` unchanged or `Rejected`.
    pub fn before_delete(
        &self,
        hook: &ScriptRef,
        record: Value,
        call: Call,
    ) -> Result<BeforeOutcome, RunError> {
        let record = object(hook, record)?;
        match self.invoke(hook, vec![Dynamic::from_map(map_to_rhai(&record))], &call) {
            Ok(_) => Ok(BeforeOutcome::Write(record)),
            Err(Stop::Thrown(message)) => Ok(BeforeOutcome::Rejected(message)),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// Runs `after_*(change, ctx)` with `change` = `{op, record, previous}`. Its return value
    /// is ignored; a `throw` is a failure of kind [`FailureKind::Thrown`].
    pub fn after(&self, hook: &ScriptRef, change: Value, call: Call) -> Result<(), RunError> {
        self.run_background(hook, vec![to_dynamic(&change)], &call)
    }

    /// Runs a cron's `fn name(ctx)`.
    pub fn cron(&self, hook: &ScriptRef, call: Call) -> Result<(), RunError> {
        self.run_background(hook, Vec::new(), &call)
    }

    fn run_background(
        &self,
        hook: &ScriptRef,
        args: Vec<Dynamic>,
        call: &Call,
    ) -> Result<(), RunError> {
        match self.invoke(hook, args, call) {
            Ok(_) => Ok(()),
            Err(Stop::Thrown(message)) => Err(failed(
                hook,
                None,
                FailureKind::Thrown,
                format!("threw: {message}"),
            )),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// Calls `hook` with `args` followed by `ctx`, within the limits and the wall-time budget.
    fn invoke(
        &self,
        hook: &ScriptRef,
        mut args: Vec<Dynamic>,
        call: &Call,
    ) -> Result<Dynamic, Stop> {
        let Some(ast) = self.asts.get(&hook.file) else {
            return Err(Stop::Failed(failed(
                hook,
                None,
                FailureKind::NotFound,
                "no such script",
            )));
        };
        let sandbox = &self.sandbox.inner;
        let budget = call.wall_time.unwrap_or(sandbox.limits.wall_time);
        args.push(Dynamic::from(Ctx::new(call, sandbox.http_allow.clone())));

        let _deadline = DeadlineGuard::set(budget);
        let _log = LogGuard::set(call.host.clone());
        let mut scope = Scope::new();
        // The AST holds only functions; nothing at the top level is run.
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(false);
        sandbox
            .engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, ast, &hook.function, args)
            .map_err(|e| classify(hook, &e, budget))
    }
}

fn failed(
    hook: &ScriptRef,
    line: Option<usize>,
    kind: FailureKind,
    message: impl Into<String>,
) -> RunError {
    RunError::Failed {
        file: hook.file.clone(),
        function: hook.function.clone(),
        line,
        kind,
        message: message.into(),
    }
}

fn classify(hook: &ScriptRef, err: &EvalAltResult, budget: std::time::Duration) -> Stop {
    use EvalAltResult as E;
    let inner = err.unwrap_inner();
    let line = inner.position().line();
    let (kind, message) = match inner {
        E::ErrorRuntime(value, _) => return Stop::Thrown(thrown_message(value)),
        E::ErrorSystem(_, source) => match source.downcast_ref::<CtxFailure>() {
            Some(f) => return Stop::Failed(failed(hook, f.line, FailureKind::Host, &f.message)),
            None => (FailureKind::Runtime, err.to_string()),
        },
        E::ErrorTerminated(token, _)
            if token.clone().into_immutable_string().ok().as_deref() == Some(WALL_TIME_TOKEN) =>
        {
            (
                FailureKind::WallTime,
                format!("stopped: wall-time budget of {budget:?} exceeded"),
            )
        }
        E::ErrorTooManyOperations(_) => (
            FailureKind::Limit,
            "stopped: too many operations (max_operations)".to_string(),
        ),
        E::ErrorStackOverflow(_) => (
            FailureKind::Limit,
            "stopped: functions nested too deep (max_call_levels)".to_string(),
        ),
        E::ErrorDataTooLarge(what, _) => (
            FailureKind::Limit,
            format!("stopped: {what} too large (max_string_len, max_array_len, max_map_len)"),
        ),
        E::ErrorTooManyVariables(_) => (
            FailureKind::Limit,
            "stopped: too many variables (max_variables)".to_string(),
        ),
        E::ErrorFunctionNotFound(name, pos) if pos.is_none() && *name == hook.function => (
            FailureKind::NotFound,
            format!("function {name} is not defined with the parameters of this hook"),
        ),
        _ => (FailureKind::Runtime, err.to_string()),
    };
    Stop::Failed(failed(hook, line, kind, message))
}

fn thrown_message(value: &Dynamic) -> String {
    if value.is_unit() {
        "rejected".to_string()
    } else {
        // Strings as they are; anything else in its string form.
        value.to_string()
    }
}
