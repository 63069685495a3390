//! `reroot cloudconfig print FILE...` and `reroot cloudconfig apply INSTANCE FILE...`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{CliError, Global};
use crate::cloudconfig::{self, LxdGuest, OsType};

#[derive(Debug, Subcommand)]
pub enum CloudConfigCommand {
    /// Print the ordered plan of actions (commands and files) of cloud-config files.
    Print {
        /// OS type: alpine, debian, ubuntu, busybox or openwrt (needed for packages and users).
        #[arg(long)]
        ostype: Option<String>,
        /// `#cloud-config` files, applied in this order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Apply cloud-config files to a running instance through the LXD API.
    Apply {
        /// OS type; default: detected from the container's /etc/os-release.
        #[arg(long)]
        ostype: Option<String>,
        /// The instance (in --project).
        instance: String,
        /// `#cloud-config` files, applied in this order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_os(s: &Option<String>) -> Result<Option<OsType>, CliError> {
    s.as_deref()
        .map(|s| {
            s.parse::<OsType>()
                .map_err(|e| format!("--ostype: {e}").into())
        })
        .transpose()
}

/// The `--json` schemas of `cloudconfig print` and `cloudconfig apply` (docs/json.md).
pub const CLOUDCONFIG_PLAN: &str = "reroot.cloudconfig-plan/1";
pub const CLOUDCONFIG_APPLY: &str = "reroot.cloudconfig-apply/1";

pub async fn run(command: CloudConfigCommand, global: &Global) -> Result<ExitCode, CliError> {
    match command {
        CloudConfigCommand::Print { ostype, files } => {
            let os = parse_os(&ostype)?;
            let configs = cloudconfig::parse_files(&files)?;
            let plan = cloudconfig::plan(&configs, os)?;
            if global.json {
                let doc = serde_json::json!({ "schema": CLOUDCONFIG_PLAN, "plan": plan });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{plan}");
            }
            Ok(ExitCode::SUCCESS)
        }
        CloudConfigCommand::Apply {
            ostype,
            instance,
            files,
        } => {
            let os = parse_os(&ostype)?;
            // Parse everything before connecting: bad files change nothing.
            cloudconfig::parse_files(&files)?;
            let client = super::connect(global).await?;
            let guest = LxdGuest::new(&client, instance);
            let outcomes = cloudconfig::apply_files(&guest, &files, os).await?;
            if global.json {
                let doc = serde_json::json!({ "schema": CLOUDCONFIG_APPLY, "outcomes": outcomes });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                for o in &outcomes {
                    let mark = if o.changed { "changed" } else { "ok" };
                    println!("{}: {}: {mark}", o.file.display(), o.what);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
