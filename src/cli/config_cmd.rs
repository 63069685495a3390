//! `reroot config {print|properties|verify} CONFIG...`: show and check instance config files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{CliError, Global};
use crate::config::{self, LoadOptions};

/// The flags every command that reads instance configs takes.
#[derive(Debug, Clone, Args)]
pub struct ConfigFileArgs {
    /// Instance name (only with a single config file); default: the file name without extension.
    #[arg(long)]
    pub name: Option<String>,
    /// Set a property: -P key=value (repeatable; wins over config and global properties).
    #[arg(short = 'P', value_name = "KEY=VALUE")]
    pub property: Vec<String>,
    /// A global property file that wins over ~/.config/reroot/properties.yaml and properties.d/.
    #[arg(long = "properties", value_name = "FILE")]
    pub properties_file: Option<PathBuf>,
    /// Instance config files (`#lxdops` or `#lxops-v1` YAML).
    #[arg(required = true, value_name = "CONFIG")]
    pub files: Vec<PathBuf>,
}

impl ConfigFileArgs {
    /// Load options from these flags and the global ones (`--project`).
    pub fn load_options(&self, global: &Global) -> Result<LoadOptions, config::ConfigError> {
        let properties = self
            .property
            .iter()
            .map(|p| config::parse_property_arg(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LoadOptions {
            name: self.name.clone(),
            properties,
            properties_file: self.properties_file.clone(),
            project: global.project.clone(),
            config_dir: config::default_config_dir(),
            cloud_config_check: Some(crate::cloudconfig::check_files),
        })
    }
}

/// The `--json` schemas of `config print`, `config properties` and `config verify`
/// (docs/json.md).
pub const CONFIG_PRINT: &str = "reroot.config-print/1";
pub const CONFIG_PROPERTIES: &str = "reroot.config-properties/1";
pub const CONFIG_VERIFY: &str = "reroot.config-verify/1";

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print each resolved instance: includes merged, properties substituted (YAML, or JSON with --json).
    Print(ConfigFileArgs),
    /// Print each instance's properties, their values and where they come from.
    Properties(ConfigFileArgs),
    /// Check config files (and their cloud-config files); print every problem.
    Verify(ConfigFileArgs),
}

pub fn run(command: ConfigCommand, global: &Global) -> Result<ExitCode, CliError> {
    match command {
        ConfigCommand::Print(args) => {
            let instances = config::load(&args.files, &args.load_options(global)?)?;
            if global.json {
                let doc = serde_json::json!({ "schema": CONFIG_PRINT, "instances": instances });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", serde_yaml::to_string(&instances)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Properties(args) => {
            let list = config::properties(&args.files, &args.load_options(global)?)?;
            if global.json {
                let doc = serde_json::json!({ "schema": CONFIG_PROPERTIES, "instances": list });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                for inst in &list {
                    println!("{} ({}):", inst.instance, inst.config_file.display());
                    let width = inst
                        .properties
                        .iter()
                        .map(|p| p.name.len())
                        .max()
                        .unwrap_or(0);
                    for p in &inst.properties {
                        println!("  {:width$}  {:?}  ({})", p.name, p.value, p.source);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Verify(args) => {
            let problems = config::verify(&args.files, &args.load_options(global)?);
            if global.json {
                let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
                let doc = serde_json::json!({
                    "schema": CONFIG_VERIFY,
                    "files": args.files.len(),
                    "problems": lines,
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                for p in &problems {
                    println!("{p}");
                }
                if problems.is_empty() {
                    println!("ok: {} config file(s)", args.files.len());
                }
            }
            if problems.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} problem(s)", problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
