use std::process::ExitCode;

fn main() -> ExitCode {
    reroot::cli::main()
}
