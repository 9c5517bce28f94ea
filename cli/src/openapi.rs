//! `ferrobase openapi`: prints the OpenAPI 3.1 document. Without `--project` it is the generic
//! contract (the content of `sdk-spec/openapi.json`); with `--project DIR` it adds that
//! project's collections as concrete paths and typed schemas (`PostsRecord`, `PostsCreate`, …),
//! the same document a server with those collections serves at `GET /v1/openapi.json`.

use std::path::PathBuf;

use crate::Failure;

#[derive(clap::Args)]
pub struct OpenapiArgs {
    /// Project folder whose collections to include (default: none, the generic document).
    #[arg(long)]
    pub project: Option<PathBuf>,
}

pub fn run(args: OpenapiArgs) -> Result<(), Failure> {
    let text = match args.project {
        None => ferrobase_server::openapi::generic_json(),
        Some(dir) => {
            let project = ferrobase_schema::load_project(&dir).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
                Failure::usage(format!(
                    "the project in {} is invalid:\n{}",
                    dir.display(),
                    lines.join("\n")
                ))
            })?;
            let doc = ferrobase_server::openapi::for_collections(&project.collections);
            let mut s = serde_json::to_string_pretty(&doc)
                .map_err(|e| Failure::runtime(format!("cannot print the document: {e}")))?;
            s.push('\n');
            s
        }
    };
    print!("{text}");
    Ok(())
}
