//! The shared engine ([`Sandbox`]) and a compiled set of scripts ([`Scripts`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rhai::{AST, Engine, OptimizationLevel};

use crate::error::ScriptError;
use crate::limits::Limits;

/// The configuration of a [`Sandbox`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub limits: Limits,
    /// Hosts `ctx.http.request` may reach (`[triggers] http_allow`), exact names.
    pub http_allow: Vec<String>,
}

/// One configured Rhai engine, shared (cheaply cloned) by every compiled script set and every
/// thread that runs hooks.
#[derive(Clone)]
pub struct Sandbox {
    pub(crate) inner: Arc<SandboxInner>,
}

pub(crate) struct SandboxInner {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) http_allow: Arc<[String]>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new(Config::default())
    }
}

impl fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox")
            .field("limits", &self.inner.limits)
            .field("http_allow", &self.inner.http_allow)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    pub fn new(config: Config) -> Self {
        let mut engine = Engine::new();
        // The interner's lock is taken for writing on every property lookup under `sync`,
        // which serialises every thread on one engine (STACK.md §4).
        engine.set_max_strings_interned(0);
        // Module resolution is compiled out (`no_module`), so `import` does not parse;
        // `eval` would compile a string at run time, past plan's checks.
        engine.disable_symbol("eval");
        // A typo in a variable name is a compile error at plan, not a 500 at write time.
        engine.set_strict_variables(true);
        engine.set_optimization_level(OptimizationLevel::Simple);
        config.limits.apply(&mut engine);
        crate::ctx::register(&mut engine);
        Sandbox {
            inner: Arc::new(SandboxInner {
                engine,
                limits: config.limits,
                http_allow: crate::http::normalise_allow(&config.http_allow).into(),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Compiles every script (path → source) once. Errors carry the path, line and column;
    /// all files are compiled, so every broken file is reported.
    ///
    /// Only the `fn` definitions of a file are kept: top-level statements are never run.
    pub fn compile(&self, files: &BTreeMap<String, String>) -> Result<Scripts, Vec<ScriptError>> {
        let mut asts = HashMap::with_capacity(files.len());
        let mut errors = Vec::new();
        for (path, source) in files {
            match self.inner.engine.compile(source) {
                Ok(ast) => {
                    let mut ast = ast.clone_functions_only();
                    ast.set_source(path.as_str());
                    asts.insert(path.clone(), Arc::new(ast));
                }
                Err(e) => errors.push(ScriptError {
                    file: path.clone(),
                    line: e.1.line(),
                    column: e.1.position(),
                    message: e.0.to_string(),
                }),
            }
        }
        if errors.is_empty() {
            Ok(Scripts {
                sandbox: self.clone(),
                asts,
            })
        } else {
            Err(errors)
        }
    }
}

/// A compiled set of scripts: cheap to clone and to share across threads; calling a hook
/// never recompiles.
#[derive(Clone, Debug)]
pub struct Scripts {
    pub(crate) sandbox: Sandbox,
    pub(crate) asts: HashMap<String, Arc<AST>>,
}

impl Scripts {
    /// Compiles `files` with the default [`Config`] (default limits, no HTTP host allowed).
    pub fn compile(files: &BTreeMap<String, String>) -> Result<Scripts, Vec<ScriptError>> {
        Sandbox::default().compile(files)
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The paths of the compiled files.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.asts.keys().map(String::as_str)
    }

    /// Whether `file` defines `fn_name` with `arity` parameters.
    pub fn function_exists(&self, file: &str, fn_name: &str, arity: usize) -> bool {
        self.asts.get(file).is_some_and(|ast| {
            ast.iter_functions()
                .any(|f| f.name == fn_name && f.params.len() == arity)
        })
    }

    /// Checks a reference of a collection or manifest (`"triggers/posts.rhai#before_create"`)
    /// for `ferrobase plan`: the file is compiled and defines the function with `arity`
    /// parameters (2 for record hooks, 1 for crons).
    pub fn check_reference(&self, reference: &str, arity: usize) -> Result<ScriptRef, ScriptError> {
        let hook: ScriptRef = reference.parse()?;
        let missing = |message: String| ScriptError {
            file: hook.file.clone(),
            line: None,
            column: None,
            message,
        };
        let Some(ast) = self.asts.get(&hook.file) else {
            return Err(missing(format!(
                "no such script (referenced as {reference:?})"
            )));
        };
        if self.function_exists(&hook.file, &hook.function, arity) {
            return Ok(hook);
        }
        let other: Vec<usize> = ast
            .iter_functions()
            .filter(|f| f.name == hook.function)
            .map(|f| f.params.len())
            .collect();
        let line = |n: usize| format!("{n} parameter{}", if n == 1 { "" } else { "s" });
        Err(missing(if other.is_empty() {
            format!("function {} is not defined", hook.function)
        } else {
            format!(
                "function {} takes {}, a hook of this kind takes {}",
                hook.function,
                other
                    .iter()
                    .map(|n| line(*n))
                    .collect::<Vec<_>>()
                    .join(" or "),
                line(arity)
            )
        }))
    }
}

/// A parsed hook reference: `file#function`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScriptRef {
    pub file: String,
    pub function: String,
}

impl ScriptRef {
    pub fn new(file: impl Into<String>, function: impl Into<String>) -> Self {
        ScriptRef {
            file: file.into(),
            function: function.into(),
        }
    }
}

impl FromStr for ScriptRef {
    type Err = ScriptError;

    fn from_str(s: &str) -> Result<Self, ScriptError> {
        match s.rsplit_once('#') {
            Some((file, function))
                if !file.is_empty()
                    && !function.is_empty()
                    && function
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(ScriptRef::new(file, function))
            }
            _ => Err(ScriptError {
                file: s.split('#').next().unwrap_or(s).to_string(),
                line: None,
                column: None,
                message: format!("{s:?} is not a hook reference (expected \"file.rhai#function\")"),
            }),
        }
    }
}

impl fmt::Display for ScriptRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file, self.function)
    }
}
