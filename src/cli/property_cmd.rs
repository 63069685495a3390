//! `reroot property list|get|set|unset`: the global property files (`properties.d/*.yaml`,
//! then `properties.yaml` in `~/.config/reroot`, then `--properties FILE`), as lxops's
//! `property` command has them. The rules live in `config::properties`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, Global};
use crate::config;

/// `reroot property ...`.
#[derive(Debug, Subcommand)]
pub enum PropertyCommand {
    /// Every global property in effect: its value and the file it comes from.
    List {
        /// Also this property file, winning over the others (as `--properties` of `rebuild`).
        #[arg(long = "properties", value_name = "FILE")]
        properties_file: Option<PathBuf>,
    },
    /// The value of one global property (exit status 1 when it has none).
    Get {
        /// The property's name, as configs write it between parentheses (without them).
        name: String,
        /// Also this property file, winning over the others (as `--properties` of `rebuild`).
        #[arg(long = "properties", value_name = "FILE")]
        properties_file: Option<PathBuf>,
    },
    /// Set a property in a property file (default: ~/.config/reroot/properties.yaml).
    Set {
        /// The property's name: not empty, no parentheses, `=` or surrounding spaces.
        name: String,
        /// Its value, taken as it is.
        value: String,
        /// The file to write.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Remove a property from a property file (default: ~/.config/reroot/properties.yaml).
    Unset {
        /// The property's name.
        name: String,
        /// The file to remove it from.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

fn errors(errors: Vec<config::ConfigError>) -> CliError {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
        .into()
}

fn default_file() -> Result<PathBuf, CliError> {
    config::default_config_dir()
        .map(|d| d.join("properties.yaml"))
        .ok_or_else(|| "no HOME or XDG_CONFIG_HOME: pass --file".into())
}

/// Runs `reroot property ...`.
pub fn run(command: PropertyCommand, global: &Global) -> Result<ExitCode, CliError> {
    let dir = config::default_config_dir();
    match command {
        PropertyCommand::List { properties_file } => {
            let list = config::global_properties(dir.as_deref(), properties_file.as_deref())
                .map_err(errors)?;
            if global.json {
                let doc =
                    serde_json::json!({ "schema": "reroot.properties/1", "properties": list });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else if list.is_empty() {
                println!("no global properties");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.value.clone(),
                            p.file.display().to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    crate::report::table(&["NAME", "VALUE", "FILE"], &rows)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PropertyCommand::Get {
            name,
            properties_file,
        } => {
            let list = config::global_properties(dir.as_deref(), properties_file.as_deref())
                .map_err(errors)?;
            match list.into_iter().find(|p| p.name == name) {
                Some(p) => {
                    println!("{}", p.value);
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("reroot: no global property {name}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        PropertyCommand::Set { name, value, file } => {
            let file = file.map_or_else(default_file, Ok)?;
            let changed = config::set_property(&file, &name, Some(&value)).map_err(errors)?;
            eprintln!(
                "reroot: {name} {} in {}",
                if changed { "set" } else { "unchanged" },
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PropertyCommand::Unset { name, file } => {
            let file = file.map_or_else(default_file, Ok)?;
            let changed = config::set_property(&file, &name, None).map_err(errors)?;
            eprintln!(
                "reroot: {name} {} {}",
                if changed {
                    "removed from"
                } else {
                    "was not in"
                },
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
